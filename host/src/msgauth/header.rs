//! The `Authentication-Results:` header field (RFC 8601): written from the relay's findings,
//! and removed where a message from outside carries one that claims to be ours.
//!
//! Everything that ends up in the header is either fixed vocabulary (methods, results,
//! reasons) or a property value that passed [`pvalue`]: a token, or a quoted string with no
//! control characters, at most [`MAX_PVALUE`] bytes. A hostile DKIM signature or sender
//! address can therefore neither break out of the field nor make a line longer than SMTP allows.

use std::fmt::Write;

use wasmrelay_codec::message::header_end;

use super::Finding;

/// The longest property value written (a domain is at most 253 octets, a path 256).
pub const MAX_PVALUE: usize = 256;

/// The field name, as written and as matched (case-insensitively).
pub const FIELD: &str = "Authentication-Results";

/// Renders the field, CRLF-terminated, with one result per folded line.
pub fn render(authserv_id: &str, findings: &[Finding]) -> String {
    let mut out = format!("{FIELD}: {}", pvalue(authserv_id).unwrap_or_default());
    if findings.is_empty() {
        out.push_str("; none");
    }
    for finding in findings {
        out.push_str(";\r\n\t");
        out.push_str(&finding.resinfo());
    }
    out.push_str("\r\n");
    out
}

/// `method=result (reason) ptype.property=value ...`, with values that cannot be written
/// safely left out.
pub(super) fn resinfo(
    method: &str,
    result: &str,
    reason: Option<&str>,
    props: &[(&str, String)],
) -> String {
    let mut out = format!("{method}={result}");
    if let Some(reason) = reason {
        let _ = write!(out, " ({reason})");
    }
    for (name, value) in props {
        if let Some(v) = pvalue(value) {
            let _ = write!(out, " {name}={v}");
        }
    }
    out
}

/// A property value as RFC 8601 §2.2 allows it: as is when it is a token or an addr-spec
/// made of atoms, otherwise a quoted string. `None` when it is empty, too long or holds
/// control characters: such a value is left out rather than mangled.
pub fn pvalue(value: &str) -> Option<String> {
    if value.is_empty()
        || value.len() > MAX_PVALUE
        || value.chars().any(|c| c.is_control() || c == '\u{7f}')
    {
        return None;
    }
    let token = |s: &str| !s.is_empty() && s.bytes().all(is_token_byte);
    let bare = match value.rsplit_once('@') {
        Some((local, domain)) => {
            (local.is_empty() || local.split('.').all(token)) && domain.split('.').all(token)
        }
        None => token(value),
    };
    if bare {
        return Some(value.to_string());
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Some(quoted)
}

/// RFC 2045 token characters: printable ASCII except SPACE and tspecials.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// Removes every `Authentication-Results` field in `message[from..]`'s header section whose
/// authserv-id is `authserv_id` (RFC 8601 §5: a field claiming to be ours that arrived from
/// outside is a forgery). Others' fields stay. Returns how many were removed.
pub fn remove_ours(message: &mut Vec<u8>, from: usize, authserv_id: &str) -> usize {
    let Some(rest) = message.get(from..) else {
        return 0;
    };
    let end = from + header_end(rest).map_or(rest.len(), |h| h.fields);
    let mut doomed = Vec::new();
    let mut at = from;
    while at < end {
        let len = field_len(&message[at..end]);
        let field = &message[at..at + len];
        if let Some(value) = value_of(field, FIELD) {
            if authserv_id_of(value).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id)) {
                doomed.push(at..at + len);
            }
        }
        at += len;
    }
    if doomed.is_empty() {
        return 0;
    }
    let mut kept = Vec::with_capacity(message.len());
    let mut last = 0;
    for range in &doomed {
        kept.extend_from_slice(&message[last..range.start]);
        last = range.end;
    }
    kept.extend_from_slice(&message[last..]);
    *message = kept;
    doomed.len()
}

/// Length of the header field at the start of `headers`, continuation lines included.
pub fn field_len(headers: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match memchr::memchr(b'\n', &headers[at..]) {
            None => return headers.len(),
            Some(nl) => at += nl + 1,
        }
        if !matches!(headers.get(at), Some(b' ' | b'\t')) {
            return at;
        }
    }
}

/// The value of `field` when its name is `name` (case-insensitive; whitespace before the
/// colon tolerated, as RFC 5322's obsolete syntax allows and some readers accept).
fn value_of<'a>(field: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let colon = memchr::memchr(b':', field)?;
    let field_name = field[..colon].trim_ascii_end();
    field_name
        .eq_ignore_ascii_case(name.as_bytes())
        .then(|| &field[colon + 1..])
}

/// The authserv-id of an `Authentication-Results` value: the first token or quoted string
/// after any comments and folding whitespace. `None` when there is none.
pub fn authserv_id_of(value: &[u8]) -> Option<String> {
    let mut i = skip_cfws(value, 0);
    if value.get(i) == Some(&b'"') {
        let mut id = Vec::new();
        i += 1;
        while let Some(&b) = value.get(i) {
            match b {
                b'"' => return String::from_utf8(id).ok(),
                b'\\' => {
                    id.extend(value.get(i + 1));
                    i += 2;
                }
                b'\r' | b'\n' => i += 1,
                _ => {
                    id.push(b);
                    i += 1;
                }
            }
        }
        return None;
    }
    let start = i;
    while value
        .get(i)
        .is_some_and(|&b| !b.is_ascii_whitespace() && !b"();\"".contains(&b))
    {
        i += 1;
    }
    (i > start)
        .then(|| String::from_utf8_lossy(&value[start..i]).into_owned())
        .filter(|id| !id.is_empty())
}

/// Skips whitespace, line breaks and (nested, escaped) comments.
fn skip_cfws(value: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&b) = value.get(i) {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => return i,
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_values_are_tokens_addresses_or_quoted() {
        let cases: &[(&str, Option<&str>)] = &[
            ("example.org", Some("example.org")),
            ("user@example.org", Some("user@example.org")),
            (
                "first.last@sub.example.org",
                Some("first.last@sub.example.org"),
            ),
            ("@example.org", Some("@example.org")),
            ("[192.0.2.1]", Some("\"[192.0.2.1]\"")),
            ("a b", Some("\"a b\"")),
            (
                "\"quoted\"@example.org",
                Some("\"\\\"quoted\\\"@example.org\""),
            ),
            ("x;y=z", Some("\"x;y=z\"")),
            ("back\\slash", Some("\"back\\\\slash\"")),
            ("AbC+/dEf", Some("\"AbC+/dEf\"")),
            ("bücher.example", Some("\"bücher.example\"")),
            ("", None),
            ("evil\r\nX-Injected: yes", None),
            ("nul\0", None),
        ];
        for (input, want) in cases {
            assert_eq!(pvalue(input).as_deref(), *want, "{input:?}");
        }
        assert_eq!(pvalue(&"a".repeat(MAX_PVALUE)).map(|v| v.len()), Some(256));
        assert_eq!(pvalue(&"a".repeat(MAX_PVALUE + 1)), None);
    }

    #[test]
    fn authserv_ids_are_found_behind_comments_and_in_quotes() {
        let cases: &[(&str, Option<&str>)] = &[
            (" relay.test; spf=pass", Some("relay.test")),
            (" relay.test 1; spf=pass", Some("relay.test")),
            ("relay.test;spf=pass", Some("relay.test")),
            (
                " (a comment (nested) \\) still) relay.test; none",
                Some("relay.test"),
            ),
            ("\r\n\t RELAY.TEST;\r\n\tdkim=pass", Some("RELAY.TEST")),
            (" \"relay.test\"; none", Some("relay.test")),
            (" \"re\\lay.test\"; none", Some("relay.test")),
            (" ; none", None),
            ("   ", None),
            (" (unterminated", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                authserv_id_of(value.as_bytes()).as_deref(),
                *want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn only_our_fields_are_removed_and_only_from_the_header() {
        let ours = "Received: from x\r\n\tby relay.test; Sun, 1 Jan 2026\r\n";
        let message = format!(
            "{ours}\
             Authentication-Results: relay.test; dkim=pass header.d=bank.example\r\n\
             From: a@example.org\r\n\
             authentication-results : (forged)\r\n\tRelay.Test;\r\n\tspf=pass\r\n\
             Authentication-Results: mx.other.example; spf=pass\r\n\
             Authentication-Results: relay.test.evil; spf=pass\r\n\
             Subject: hi\r\n\
             \r\n\
             Authentication-Results: relay.test; in the body, untouched\r\n"
        );
        let mut bytes = message.clone().into_bytes();
        let removed = remove_ours(&mut bytes, ours.len(), "relay.test");
        assert_eq!(removed, 2);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!(
                "{ours}\
                 From: a@example.org\r\n\
                 Authentication-Results: mx.other.example; spf=pass\r\n\
                 Authentication-Results: relay.test.evil; spf=pass\r\n\
                 Subject: hi\r\n\
                 \r\n\
                 Authentication-Results: relay.test; in the body, untouched\r\n"
            )
        );
    }

    #[test]
    fn the_skipped_prefix_is_never_touched() {
        // Our own field at the top (e.g. written by us before) is before `from`: kept.
        let prefix = "Authentication-Results: relay.test; none\r\n";
        let mut bytes = format!("{prefix}Authentication-Results: relay.test; spf=pass\r\n\r\nbody")
            .into_bytes();
        assert_eq!(remove_ours(&mut bytes, prefix.len(), "relay.test"), 1);
        assert_eq!(bytes, format!("{prefix}\r\nbody").into_bytes());
        // Nothing to do: no copy, no change.
        let mut plain = b"Subject: x\r\n\r\nAuthentication-Results: relay.test; x\r\n".to_vec();
        let before = plain.clone();
        assert_eq!(remove_ours(&mut plain, 0, "relay.test"), 0);
        assert_eq!(plain, before);
        // A message with no body and no empty line, and an offset past the end.
        let mut headers_only = b"Authentication-Results: relay.test; x\r\n".to_vec();
        assert_eq!(remove_ours(&mut headers_only, 0, "relay.test"), 1);
        assert!(headers_only.is_empty());
        assert_eq!(remove_ours(&mut headers_only, 10, "relay.test"), 0);
    }

    #[test]
    fn field_lengths_include_continuation_lines() {
        assert_eq!(field_len(b"A: 1\r\n\t2\r\nB: 3\r\n"), 10);
        assert_eq!(field_len(b"A: 1\r\nB: 3\r\n"), 6);
        assert_eq!(field_len(b"A: 1"), 4);
        assert_eq!(field_len(b"A: 1\r\n 2"), 8);
    }

    #[test]
    fn renders_one_result_per_line() {
        let findings = vec![
            Finding::new(
                "spf",
                "pass",
                "example.org",
                None,
                vec![("smtp.mailfrom", "a@example.org".into())],
            ),
            Finding::new(
                "dkim",
                "fail",
                "example.org",
                Some("body hash did not verify"),
                vec![
                    ("header.d", "example.org".into()),
                    ("header.s", "sel\r\nX: y".into()),
                ],
            ),
        ];
        assert_eq!(
            render("relay.test", &findings),
            "Authentication-Results: relay.test;\r\n\
             \tspf=pass smtp.mailfrom=a@example.org;\r\n\
             \tdkim=fail (body hash did not verify) header.d=example.org\r\n"
        );
        assert_eq!(
            render("relay.test", &[]),
            "Authentication-Results: relay.test; none\r\n"
        );
    }
}
