/*! Chunking by the embedding model's tokens.

[`Chunker`] takes [`Segment`]s (a line, a PDF line, a JSON string field) in order and cuts them
into chunks of at most `size` tokens, each starting with about `overlap` tokens of the previous
chunk's end. Segments are whole units where they fit; a segment longer than `size` is split at
token boundaries. The chunk's span names the units it covers (`lines 3-9`, `pages 2-3`,
`$.items[0].text`). Deterministic for the same input and settings, which is what lets an
interrupted load resume by skipping the chunks already committed.
*/

use std::collections::VecDeque;

/// One unit of extracted text.
#[derive(Debug, Clone)]
pub struct Segment {
    pub text: String,
    /// Line or page number (1-based) the segment comes from.
    pub unit: u64,
    /// A name for the unit where numbers mean nothing (JSON field paths), else empty.
    pub label: String,
}

/// A finished chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub text: String,
    pub span: String,
    pub tokens: usize,
}

struct Piece {
    text: String,
    tokens: usize,
    unit: u64,
    label: String,
}

/// Cuts segments into overlapping chunks; see the module docs.
pub struct Chunker {
    size: usize,
    overlap: usize,
    /// `lines` or `pages`: the word for the unit in spans.
    unit_name: &'static str,
    buf: VecDeque<Piece>,
    total: usize,
    /// Whether `buf` holds a piece no emitted chunk contains yet.
    fresh: bool,
}

impl Chunker {
    pub fn new(size: usize, overlap: usize, unit_name: &'static str) -> Self {
        let size = size.max(8);
        Self { size, overlap: overlap.min(size / 2), unit_name, buf: VecDeque::new(), total: 0, fresh: false }
    }

    /// Add a segment whose token byte ranges are `spans`; finished chunks go to `out`.
    pub fn push(&mut self, seg: Segment, spans: &[(usize, usize)], out: &mut Vec<Chunk>) {
        if seg.text.trim().is_empty() || spans.is_empty() {
            return;
        }
        if spans.len() <= self.size {
            self.add(Piece { text: seg.text, tokens: spans.len(), unit: seg.unit, label: seg.label }, out);
            return;
        }
        for w in spans.chunks(self.size - self.overlap.min(self.size - 1)) {
            let (a, b) = (w[0].0, w[w.len() - 1].1);
            let text = seg.text.get(a..b).unwrap_or_default().to_string();
            self.add(Piece { text, tokens: w.len(), unit: seg.unit, label: seg.label.clone() }, out);
        }
    }

    fn add(&mut self, p: Piece, out: &mut Vec<Chunk>) {
        if self.total + p.tokens > self.size && self.fresh {
            out.push(self.emit());
            while self.total > self.overlap || self.total + p.tokens > self.size {
                let Some(old) = self.buf.pop_front() else { break };
                self.total -= old.tokens;
            }
        }
        self.total += p.tokens;
        self.buf.push_back(p);
        self.fresh = true;
    }

    fn emit(&mut self) -> Chunk {
        self.fresh = false;
        let text = self.buf.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join("\n");
        let (first, last) = (self.buf.front().expect("non-empty"), self.buf.back().expect("non-empty"));
        let span = if !first.label.is_empty() {
            if first.label == last.label {
                first.label.clone()
            } else {
                format!("{} .. {}", first.label, last.label)
            }
        } else if first.unit == last.unit {
            format!("{} {}", self.unit_name.trim_end_matches('s'), first.unit)
        } else {
            format!("{} {}-{}", self.unit_name, first.unit, last.unit)
        };
        Chunk { text, span, tokens: self.total }
    }

    /// Emit what is left.
    pub fn finish(&mut self, out: &mut Vec<Chunk>) {
        if self.fresh {
            out.push(self.emit());
        }
        self.buf.clear();
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per whitespace-separated word: a fake tokenizer.
    fn words(s: &str) -> Vec<(usize, usize)> {
        let mut out = vec![];
        let mut start = None;
        for (i, c) in s.char_indices().chain([(s.len(), ' ')]) {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(a)) => {
                    out.push((a, i));
                    start = None
                }
                _ => {}
            }
        }
        out
    }

    fn run(lines: &[&str], size: usize, overlap: usize) -> Vec<Chunk> {
        let mut c = Chunker::new(size, overlap, "lines");
        let mut out = vec![];
        for (i, l) in lines.iter().enumerate() {
            c.push(Segment { text: l.to_string(), unit: i as u64 + 1, label: String::new() }, &words(l), &mut out);
        }
        c.finish(&mut out);
        out
    }

    #[test]
    fn chunks_respect_the_size_and_overlap_and_cover_every_line() {
        let lines: Vec<String> = (1..=40).map(|i| format!("w{i}a w{i}b w{i}c")).collect();
        let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
        let out = run(&refs, 12, 3);
        assert!(out.iter().all(|c| c.tokens <= 12), "{out:?}");
        for l in &lines {
            assert!(out.iter().any(|c| c.text.contains(l.as_str())), "{l} lost");
        }
        // Consecutive chunks share their boundary line (overlap 3 = one 3-word line).
        for w in out.windows(2) {
            let last = w[0].text.lines().last().unwrap();
            assert!(w[1].text.starts_with(last), "{w:?}");
        }
        assert_eq!(out[0].span, "lines 1-4");
    }

    #[test]
    fn a_long_line_is_split_at_token_boundaries() {
        let long: String = (0..50).map(|i| format!("t{i} ")).collect();
        let out = run(&[&long], 20, 0);
        assert!(out.len() >= 3);
        assert!(out.iter().all(|c| c.tokens <= 20 && c.span == "line 1"));
        let joined: Vec<String> = out.iter().flat_map(|c| c.text.split_whitespace().map(String::from)).collect();
        assert_eq!(joined.len(), 50);
        assert_eq!(joined[49], "t49");
    }

    #[test]
    fn blank_segments_are_ignored_and_chunking_is_deterministic() {
        let out = run(&["a b", "", "   ", "c d"], 10, 2);
        assert_eq!(out, vec![Chunk { text: "a b\nc d".into(), span: "lines 1-4".into(), tokens: 4 }]);
        assert_eq!(run(&["a b", "c d"], 3, 1), run(&["a b", "c d"], 3, 1));
    }
}
