//! Just enough of an HTML tokenizer to find links: the `href` of `<a>` and `<area>` start
//! tags, skipping comments, declarations, end tags and the raw text of `<script>`, `<style>`,
//! `<textarea>`, `<title>` and `<xmp>` (where `<a href>` is text, not a link), and the
//! position of the last `</body>` end tag. Everything else is copied byte for byte.

/// Where edits go, found in one pass.
#[derive(Debug, Default, PartialEq)]
pub struct Scan {
    /// Each link: the byte range of its attribute value (quotes included) and the value
    /// with character references decoded and surrounding whitespace trimmed.
    pub links: Vec<(std::ops::Range<usize>, String)>,
    /// Byte offset of the last `</body` end tag.
    pub body_end: Option<usize>,
}

const RAW_TEXT: &[&str] = &["script", "style", "textarea", "title", "xmp"];

pub fn scan(html: &str) -> Scan {
    let b = html.as_bytes();
    let mut out = Scan::default();
    let mut i = 0;
    while let Some(off) = memchr(b'<', &b[i..]) {
        let lt = i + off;
        let rest = &b[lt + 1..];
        if rest.starts_with(b"!--") {
            i = find(b, lt + 4, b"-->").map_or(b.len(), |e| e + 3);
        } else if rest.first().is_some_and(|c| *c == b'!' || *c == b'?') {
            i = memchr(b'>', rest).map_or(b.len(), |e| lt + 1 + e + 1);
        } else if rest.first() == Some(&b'/') {
            if starts_with_tag(&rest[1..], b"body") {
                out.body_end = Some(lt);
            }
            i = memchr(b'>', rest).map_or(b.len(), |e| lt + 1 + e + 1);
        } else if rest.first().is_some_and(u8::is_ascii_alphabetic) {
            let tag = start_tag(html, lt + 1);
            let name = tag.name.to_ascii_lowercase();
            if name == "a" || name == "area" {
                if let Some(range) = tag.href {
                    let raw = &html[range.clone()];
                    let value = raw.trim_matches(|c| c == '"' || c == '\'');
                    let decoded = decode_entities(value);
                    let trimmed = decoded.trim_matches(|c: char| c.is_ascii_whitespace());
                    out.links.push((range, trimmed.to_string()));
                }
            }
            i = tag.end;
            if !tag.self_closing && RAW_TEXT.contains(&name.as_str()) {
                i = raw_text_end(b, i, name.as_bytes());
            }
        } else {
            i = lt + 1;
        }
    }
    out
}

/// A start tag read from just after its `<`.
struct StartTag<'a> {
    name: &'a str,
    /// The first `href` attribute's value range, quotes included.
    href: Option<std::ops::Range<usize>>,
    self_closing: bool,
    /// Just after the closing `>` (or the end of input).
    end: usize,
}

fn start_tag(html: &str, from: usize) -> StartTag<'_> {
    let b = html.as_bytes();
    let mut i = from;
    while i < b.len() && !is_space(b[i]) && b[i] != b'/' && b[i] != b'>' {
        i += 1;
    }
    let name = &html[from..i];
    let mut href = None;
    let mut self_closing = false;
    loop {
        while i < b.len() && (is_space(b[i]) || b[i] == b'/') {
            self_closing = b[i] == b'/';
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'>' {
            i += 1;
            break;
        }
        self_closing = false;
        let name_start = i;
        // The first character may be `=` (it is then part of the name, per HTML).
        i += 1;
        while i < b.len() && !is_space(b[i]) && !matches!(b[i], b'/' | b'>' | b'=') {
            i += 1;
        }
        let attr = &html[name_start..i];
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        let value_start = i;
        match b.get(i) {
            Some(&q) if q == b'"' || q == b'\'' => {
                i = memchr(q, &b[i + 1..]).map_or(b.len(), |e| i + 1 + e + 1);
            }
            _ => {
                while i < b.len() && !is_space(b[i]) && b[i] != b'>' {
                    i += 1;
                }
            }
        }
        if href.is_none() && attr.eq_ignore_ascii_case("href") && i > value_start {
            let quoted = matches!(b[value_start], b'"' | b'\'');
            // An unterminated quote runs to the end of input: not a link worth touching.
            if !quoted || (i - value_start >= 2 && b[i - 1] == b[value_start]) {
                href = Some(value_start..i);
            }
        }
    }
    StartTag {
        name,
        href,
        self_closing,
        end: i.min(b.len()),
    }
}

/// Just after the `</name ...>` that closes a raw text element (or the end of input).
fn raw_text_end(b: &[u8], mut i: usize, name: &[u8]) -> usize {
    while let Some(off) = find(b, i, b"</") {
        let at = off + 2;
        if starts_with_tag(&b[at..], name) {
            return memchr(b'>', &b[at..]).map_or(b.len(), |e| at + e + 1);
        }
        i = at;
    }
    b.len()
}

/// Whether `b` starts with tag name `name` (ASCII case-insensitive) followed by a
/// delimiter.
fn starts_with_tag(b: &[u8], name: &[u8]) -> bool {
    b.len() >= name.len()
        && b[..name.len()].eq_ignore_ascii_case(name)
        && b.get(name.len())
            .is_none_or(|c| is_space(*c) || *c == b'>' || *c == b'/')
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|c| *c == needle)
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Decodes the character references a URL in an attribute may hold: `&amp;` `&lt;` `&gt;`
/// `&quot;` `&apos;` `&#NN;` `&#xHH;`. Anything else stays as written (in attributes, HTML
/// leaves `&copy=2` alone, which is what query strings need).
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest[1..].find(';').map(|p| p + 1).filter(|p| *p <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..semi];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name.strip_prefix('#').and_then(|num| {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse().ok(),
                };
                code.and_then(char::from_u32).filter(|c| *c != '\0')
            }),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
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

    fn hrefs(html: &str) -> Vec<String> {
        scan(html).links.into_iter().map(|(_, v)| v).collect()
    }

    #[test]
    fn finds_hrefs_of_links_only() {
        let html = r##"<html><body>
<p>Visit https://example.com/text or <a class=x HREF="https://example.com/a?x=1&amp;y=2">here</a>
<a href='https://example.com/b' title="a > b">b</a> <a href=https://example.com/c>c</a>
<area shape=rect href="https://example.com/d"><link href="https://example.com/style.css">
<img src="https://example.com/i.png"> <a name=top>top</a> <a data-href="https://x/" href="#top">
<!-- <a href="https://example.com/comment"> -->
<script>var s = '<a href="https://example.com/script">';</script>
<style>a { background: url("https://example.com/bg") }</style>
<A
 href = " https://example.com/e&#x26;f "
>e</A>
</body></html>"##;
        assert_eq!(
            hrefs(html),
            [
                "https://example.com/a?x=1&y=2",
                "https://example.com/b",
                "https://example.com/c",
                "https://example.com/d",
                "#top",
                "https://example.com/e&f",
            ]
        );
        let s = scan(html);
        assert_eq!(&html[s.body_end.unwrap()..], "</body></html>");
        // The range covers the value with its quotes.
        assert_eq!(&html[s.links[1].0.clone()], "'https://example.com/b'");
        assert_eq!(&html[s.links[2].0.clone()], "https://example.com/c");
    }

    #[test]
    fn malformed_markup_never_panics_or_invents_links() {
        for html in [
            "<",
            "<a",
            "<a href",
            "<a href=",
            "<a href=\"https://unterminated",
            "<!--",
            "<script>",
            "</",
            "<a href='x'",
            "<\u{e9}a href=\"https://e/\">",
            "<a h\u{e9}ref=\"https://e/\" href=\u{e9}>",
            "<title><a href=\"https://e/\"></title>",
        ] {
            let s = scan(html);
            for (r, _) in &s.links {
                assert!(html.get(r.clone()).is_some(), "{html}");
            }
            assert!(
                s.links.iter().all(|(_, v)| v != "https://unterminated"),
                "{html}"
            );
        }
        assert_eq!(
            hrefs("<title><a href=\"https://e/\"></title>"),
            Vec::<String>::new()
        );
        assert_eq!(hrefs("<a href='x'"), ["x"]);
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a&amp;b&lt;&#65;&#x42;&copy=2&"),
            "a&b<AB&copy=2&"
        );
        assert_eq!(decode_entities("&#0;&#xD800;&;"), "&#0;&#xD800;&;");
        assert_eq!(
            wasmrelay_tracking_token::html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
