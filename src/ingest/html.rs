/*! Text of an HTML document: tags dropped, `<script>`/`<style>` content and comments skipped,
block elements turned into line breaks, character references decoded. Each output line keeps the
source line it starts on, for citation spans. Tolerant of broken markup: anything that is not a
well-formed tag is kept as text.
*/

const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "td",
    "th",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "title",
    "section",
    "article",
    "header",
    "footer",
    "pre",
    "blockquote",
    "table",
    "hr",
    "dt",
    "dd",
];

/// (source line, text line) pairs of the visible text of `html`.
pub fn html_lines(html: &str) -> Vec<(u64, String)> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut cur_line = 1u64;
    let mut line = 1u64;
    let mut rest = html;
    let flush = |cur: &mut String, cur_line: u64, out: &mut Vec<(u64, String)>| {
        // Entities first: a character reference to a newline or a control character is
        // whitespace in the text, as a browser shows it (a segment stays one line).
        let decoded = decode_entities(cur);
        let t = decoded
            .split(|c: char| c.is_whitespace() || c.is_control())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !t.is_empty() {
            out.push((cur_line, t));
        }
        cur.clear();
    };
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if cur.trim().is_empty() {
                cur_line = line;
            }
            cur.push_str(rest);
            break;
        };
        let text = &rest[..lt];
        if !text.trim().is_empty() && cur.trim().is_empty() {
            cur_line = line + text[..text.find(|c: char| !c.is_whitespace()).unwrap_or(0)].matches('\n').count() as u64;
        }
        cur.push_str(text);
        line += text.matches('\n').count() as u64;
        rest = &rest[lt..];
        // Comments, then tags.
        if let Some(body) = rest.strip_prefix("<!--") {
            let end = body.find("-->").map(|i| i + 3).unwrap_or(body.len());
            line += body[..end].matches('\n').count() as u64;
            rest = &body[end..];
            continue;
        }
        // Not a tag ("a < b", "<3"): keep the '<' as text without looking for a '>' (a search
        // per stray '<' made a file of "< " repeated quadratic).
        if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?') {
            cur.push('<');
            rest = &rest[1..];
            continue;
        }
        let Some(gt) = rest.find('>') else {
            cur.push_str(rest);
            break;
        };
        let tag = &rest[1..gt];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() && !tag.starts_with('!') && !tag.starts_with('/') {
            // Not a tag ("a < b"): keep the '<' as text.
            cur.push('<');
            rest = &rest[1..];
            continue;
        }
        line += tag.matches('\n').count() as u64;
        rest = &rest[gt + 1..];
        if (name == "script" || name == "style") && !tag.starts_with('/') {
            let end = find_ignore_case(rest, &format!("</{name}")).unwrap_or(rest.len());
            line += rest[..end].matches('\n').count() as u64;
            rest = &rest[end..];
            continue;
        }
        if BLOCKS.contains(&name.as_str()) {
            flush(&mut cur, cur_line, &mut out);
        } else {
            cur.push(' ');
        }
    }
    flush(&mut cur, cur_line, &mut out);
    out
}

/// Byte offset of the first ASCII-case-insensitive occurrence of `needle` (ASCII) in `hay`,
/// without copying `hay` (lowercasing the rest of the document at each `<script>` was quadratic).
fn find_ignore_case(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i].eq_ignore_ascii_case(&n[0]) && h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Decode `&amp;`-style named references (the common ones) and numeric references.
pub fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..].find(|c: char| c == ';' || c.is_whitespace() || c == '&').map(|j| j + 1);
        let decoded = match end {
            Some(j) if rest.as_bytes()[j] == b';' => {
                let name = &rest[1..j];
                let c = match name {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "nbsp" => Some(' '),
                    "mdash" => Some('—'),
                    "ndash" => Some('–'),
                    "hellip" => Some('…'),
                    "copy" => Some('©'),
                    _ => name
                        .strip_prefix("#x")
                        .or_else(|| name.strip_prefix("#X"))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                c.map(|c| (c, j + 1))
            }
            _ => None,
        };
        match decoded {
            Some((c, n)) => {
                out.push(c);
                rest = &rest[n..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_text_with_source_lines() {
        let html = "<html><head><title>T &amp; Q</title>\n<style>p { x: 1 }</style>\n<script>if (a < b) {}</script></head>\n<body>\n<p>First <b>bold</b> line</p>\n<!-- hidden\ncomment -->\n<div>5 &lt; 6 &#x263A; &#65;</div>\n</body></html>";
        let got = html_lines(html);
        assert_eq!(got, vec![(1, "T & Q".into()), (5, "First bold line".into()), (8, "5 < 6 ☺ A".into())]);
    }

    #[test]
    fn broken_markup_is_text_not_a_panic() {
        assert_eq!(html_lines("a < b and c"), vec![(1, "a < b and c".into())]);
        assert_eq!(html_lines("x <unclosed"), vec![(1, "x <unclosed".into())]);
        assert_eq!(decode_entities("&bogus; & &#xZZ; &#128512;"), "&bogus; & &#xZZ; 😀");
        assert!(html_lines("").is_empty());
        assert_eq!(html_lines("<3 and <= and </>"), vec![(1, "<3 and <= and".into())]);
        assert_eq!(html_lines("<SCRIPT>x</Script>shown"), vec![(1, "shown".into())]);
    }

    #[test]
    fn hostile_markup_is_read_in_linear_time() {
        // 8 MiB of "< " (a search for '>' per '<' was quadratic: >300 s), then one '>' at the end.
        let stray = "< ".repeat(4 << 20) + ">";
        let t = std::time::Instant::now();
        let got = html_lines(&stray);
        assert_eq!(got.len(), 1);
        assert!(got[0].1.starts_with("< < <") && got[0].1.len() > (8 << 20) - 8);
        // 100k unclosed-looking script tags (each lowercased the rest of the document).
        let scripts = "<script>a</script>b".repeat(100_000);
        assert_eq!(html_lines(&scripts)[0].1.matches('b').count(), 100_000);
        // A generous bound so a regression fails instead of hanging the test run.
        assert!(t.elapsed().as_secs() < 60, "{:?}", t.elapsed());
    }
}
