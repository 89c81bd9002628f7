/*! Text extraction per file kind, streamed as [`Segment`]s.

Plain text, Markdown and JSONL are read line by line (a line longer than [`MAX_LINE`] bytes is cut
at a character boundary), so memory stays bounded however large the file. HTML, PDF and JSON need
the whole document and are refused above [`MAX_WHOLE`] bytes. Invalid UTF-8 is decoded lossily and
reported; a NUL byte in the first 8 KiB marks a binary file, which is skipped.
*/

use super::chunk::Segment;
use super::html::html_lines;
use super::pdf::pdf_pages;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Longest line read at once, in bytes.
pub const MAX_LINE: usize = 64 * 1024;
/// Largest HTML, PDF or JSON file read whole, in bytes.
pub const MAX_WHOLE: u64 = 256 * 1024 * 1024;

/// The kinds of file `load` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Markdown,
    Html,
    Pdf,
    Json,
    Jsonl,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 6] = [Kind::Text, Kind::Markdown, Kind::Html, Kind::Pdf, Kind::Json, Kind::Jsonl];

    /// The usual file extension of this kind ([`Kind::of`] maps it back).
    pub fn extension(self) -> &'static str {
        match self {
            Kind::Text => "txt",
            Kind::Markdown => "md",
            Kind::Html => "html",
            Kind::Pdf => "pdf",
            Kind::Json => "json",
            Kind::Jsonl => "jsonl",
        }
    }

    /// From the file extension; `None` for files `load` skips.
    pub fn of(path: &Path) -> Option<Kind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" | "text" | "log" | "rst" | "csv" | "tsv" | "org" | "tex" => Kind::Text,
            "md" | "markdown" | "mdx" => Kind::Markdown,
            "html" | "htm" | "xhtml" => Kind::Html,
            "pdf" => Kind::Pdf,
            "json" => Kind::Json,
            "jsonl" | "ndjson" => Kind::Jsonl,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Markdown => "markdown",
            Kind::Html => "html",
            Kind::Pdf => "pdf",
            Kind::Json => "json",
            Kind::Jsonl => "jsonl",
        }
    }

    /// The unit spans are counted in.
    pub fn unit(self) -> &'static str {
        if self == Kind::Pdf {
            "pages"
        } else {
            "lines"
        }
    }
}

/// Why a file was skipped (shown to the user).
#[derive(Debug, Clone, PartialEq)]
pub struct Skip(pub String);

/// What extraction noticed besides the text.
#[derive(Debug, Default)]
pub struct Notes {
    /// Some bytes were not UTF-8 and were replaced.
    pub lossy: bool,
    /// JSONL lines that did not parse.
    pub bad_records: u64,
}

fn io_skip(e: std::io::Error) -> Skip {
    Skip(format!("cannot read: {e}"))
}

/// Decode bytes, noting lossy decoding.
fn decode(bytes: &[u8], notes: &mut Notes) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            notes.lossy = true;
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
}

/// Read `path` as `kind`, calling `seg` for each segment in order, and `pos` with the bytes read
/// so far. `seg` returns `false` to stop early (interrupted).
pub fn extract(
    path: &Path,
    kind: Kind,
    seg: &mut dyn FnMut(Segment) -> bool,
    pos: &mut dyn FnMut(u64),
) -> Result<Notes, Skip> {
    let mut notes = Notes::default();
    let mut f = std::fs::File::open(path).map_err(io_skip)?;
    let size = f.metadata().map_err(io_skip)?.len();
    let mut head = vec![0u8; 8192.min(size as usize)];
    f.read_exact(&mut head).map_err(io_skip)?;
    if kind == Kind::Pdf {
        if !head.starts_with(b"%PDF") {
            return Err(Skip("not a PDF file (no %PDF header)".into()));
        }
    } else if head.contains(&0) {
        return Err(Skip("binary file (contains NUL bytes)".into()));
    }
    drop(f);
    match kind {
        Kind::Text | Kind::Markdown | Kind::Jsonl => {
            let mut r = BufReader::with_capacity(1 << 16, std::fs::File::open(path).map_err(io_skip)?);
            let mut buf = Vec::new();
            let mut line_no = 0u64;
            let mut read = 0u64;
            loop {
                buf.clear();
                let n = read_line_bounded(&mut r, &mut buf).map_err(io_skip)?;
                if n == 0 {
                    break;
                }
                read += n as u64;
                line_no += 1;
                let text = decode(&buf, &mut notes);
                let text = text.trim_end_matches(['\n', '\r']);
                let text = if kind == Kind::Jsonl {
                    if text.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<serde_json::Value>(text) {
                        Ok(v) => strings(&v, "$").into_iter().map(|(_, s)| s).collect::<Vec<_>>().join("\n"),
                        Err(_) => {
                            notes.bad_records += 1;
                            continue;
                        }
                    }
                } else {
                    text.to_string()
                };
                if !seg(Segment { text, unit: line_no, label: String::new() }) {
                    return Ok(notes);
                }
                pos(read);
            }
        }
        Kind::Html | Kind::Pdf | Kind::Json => {
            if size > MAX_WHOLE {
                return Err(Skip(format!(
                    "{} files over {} MiB are not supported (convert it to text first)",
                    kind.as_str(),
                    MAX_WHOLE >> 20
                )));
            }
            let bytes = std::fs::read(path).map_err(io_skip)?;
            let segs: Vec<Segment> = match kind {
                Kind::Html => html_lines(&decode(&bytes, &mut notes))
                    .into_iter()
                    .map(|(unit, text)| Segment { text, unit, label: String::new() })
                    .collect(),
                Kind::Json => {
                    let text = decode(&bytes, &mut notes);
                    let v: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| Skip(format!("invalid JSON: {e}")))?;
                    strings(&v, "$").into_iter().map(|(label, text)| Segment { text, unit: 0, label }).collect()
                }
                _ => pdf_pages(&bytes)?
                    .into_iter()
                    .enumerate()
                    .flat_map(|(i, page)| {
                        page.lines()
                            .map(|l| Segment { text: l.trim().to_string(), unit: i as u64 + 1, label: String::new() })
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            };
            for s in segs {
                if !seg(s) {
                    return Ok(notes);
                }
            }
            pos(size);
        }
    }
    Ok(notes)
}

/// Read one line, at most [`MAX_LINE`] bytes, cut at a UTF-8 character boundary.
fn read_line_bounded(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(out.len());
        }
        let room = MAX_LINE - out.len();
        let take = avail.len().min(room);
        if let Some(i) = avail[..take].iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&avail[..=i]);
            r.consume(i + 1);
            return Ok(out.len());
        }
        if take < room {
            out.extend_from_slice(avail);
            let n = avail.len();
            r.consume(n);
            continue;
        }
        // Line too long: if the last character is incomplete, stop before its lead byte.
        let mut cut = take;
        if let Some(p) = (take.saturating_sub(4)..take).rev().find(|&i| avail[i] & 0xC0 != 0x80) {
            let need = avail[p].leading_ones() as usize;
            if need >= 2 && take - p < need {
                cut = p;
            }
        }
        let cut = if cut == 0 { take } else { cut };
        out.extend_from_slice(&avail[..cut]);
        r.consume(cut);
        return Ok(out.len());
    }
}

/// Every string in a JSON value with its path (`$.a[0].b`), in document order.
pub fn strings(v: &serde_json::Value, path: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => out.push((path.to_string(), s.clone())),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                out.extend(strings(x, &format!("{path}[{i}]")));
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                out.extend(strings(x, &format!("{path}.{k}")));
            }
        }
        _ => {}
    }
    out
}
