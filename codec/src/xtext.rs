//! RFC 3461 §4 xtext, the encoding of the DSN parameters `ENVID` and `ORCPT`: printable ASCII
//! except `+` and `=` stands for itself, every other octet is `+` and two hex digits.

/// Encodes `s` for an `ENVID=` or `ORCPT=` parameter of an outgoing command. The result is
/// printable ASCII without spaces, so it can never break the command line it is put in.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Decodes a received xtext value. `None` if it is malformed (a bare `=`, a space, a control
/// or non-ASCII octet, a `+` without two hex digits) or if the result is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c @ 33..=126 if c != b'=' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `s` is valid, non-empty xtext: printable ASCII except `+` and `=`, and `+XX` hex
/// escapes (RFC 3461 §4 says upper case; lower case is taken, as the receiving side does).
pub fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |c: Option<&u8>| c.is_some_and(u8::is_ascii_hexdigit);
                if !(hex(b.get(i + 1)) && hex(b.get(i + 2))) {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            c if (b'!'..=b'~').contains(&c) => i += 1,
            _ => return false,
        }
    }
    !b.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        for (plain, want) in [
            ("rfc822;a+b=c@d é", "rfc822;a+2Bb+3Dc@d+20+C3+A9"),
            ("", ""),
            ("a\r\nb", "a+0D+0Ab"),
            ("~!", "~!"),
        ] {
            assert_eq!(encode(plain), want, "{plain:?}");
        }
    }

    #[test]
    fn validates() {
        assert!(is_valid("a+2Bb+3dc@d"));
        for bad in ["", "a+2", "a+2G", "a=b", "a b", "é"] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn decodes() {
        assert_eq!(decode("abc"), Some("abc".into()));
        assert_eq!(decode("a+2Bb+3dc"), Some("a+b=c".into()));
        assert_eq!(decode(""), Some(String::new()));
        for bad in ["+", "+4", "+G0", "a=b", "a b", "é", "+FF"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn decode_inverts_encode() {
        for s in [
            "",
            "a",
            "+",
            "=",
            " ",
            "a+b=c d",
            "ré@例え.jp",
            "\u{0}\u{7f}",
            "+2B",
        ] {
            let e = encode(s);
            assert!(e.bytes().all(|b| (b'!'..=b'~').contains(&b)), "{e:?}");
            assert_eq!(decode(&e).as_deref(), Some(s), "{s:?}");
        }
    }
}
