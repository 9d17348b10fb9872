//! Message traits a plugin may limit its `data` hook to (`host.want-messages-with`, WIT
//! 0.2.8): the hook is called only for a message with at least one of those it declared.
//! Traits are names in the WIT, so that a later one is no break; an older relay refuses a
//! name it does not know and the plugin is then called for every message, as it expects.

use std::fmt;

/// Most traits one plugin may declare for a hook.
pub(crate) const MAX_TRAITS: usize = 16;
/// Longest header field name in `header:NAME`, as in `host.want-headers`.
const MAX_HEADER_NAME: usize = 128;

/// One trait a message may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MessageTrait {
    /// A part that is not a plain text body (see [`is_attachment`]).
    Attachment,
    /// The relay checked SPF, DKIM or DMARC for it: there are results for the hook.
    AuthResults,
    /// The client may not relay (its `trusted` attribute is not `yes`).
    UntrustedClient,
    /// More than this many bytes, as `message.size` counts them.
    LargerThan(u64),
    /// A header field of this name (lower case).
    Header(String),
}

impl MessageTrait {
    /// Reads one trait as the WIT spells it, or says why it is not one.
    pub(crate) fn parse(text: &str) -> Result<MessageTrait, String> {
        let shown = || text.chars().take(40).collect::<String>();
        match text.split_once(':') {
            None => match text {
                "attachment" => Ok(MessageTrait::Attachment),
                "auth-results" => Ok(MessageTrait::AuthResults),
                "untrusted-client" => Ok(MessageTrait::UntrustedClient),
                _ => Err(format!(
                    "{:?} is not a message trait this relay knows (attachment, auth-results, \
                     untrusted-client, larger-than:N, header:NAME)",
                    shown()
                )),
            },
            Some(("larger-than", n)) => n
                .parse()
                .map(MessageTrait::LargerThan)
                .map_err(|_| format!("{:?}: larger-than takes a byte count", shown())),
            Some(("header", name)) => {
                // RFC 5322 §3.6.8: printable ASCII but `:`.
                let field_name = (1..=MAX_HEADER_NAME).contains(&name.len())
                    && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
                if field_name {
                    Ok(MessageTrait::Header(name.to_ascii_lowercase()))
                } else {
                    Err(format!("{:?} does not name a header field", shown()))
                }
            }
            Some(_) => Err(format!(
                "{:?} is not a message trait this relay knows",
                shown()
            )),
        }
    }
}

impl fmt::Display for MessageTrait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageTrait::Attachment => f.write_str("attachment"),
            MessageTrait::AuthResults => f.write_str("auth-results"),
            MessageTrait::UntrustedClient => f.write_str("untrusted-client"),
            MessageTrait::LargerThan(n) => write!(f, "larger-than:{n}"),
            MessageTrait::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// Whether a MIME part makes its message have an `attachment`: a file name or an
/// `attachment` disposition on any part (a multipart included, since a reader may still
/// offer it as a file), or a leaf part of any type but the two plain body types. What a
/// plugin blocking attachments by file name or type can match, for every type it could name
/// other than those two.
pub(crate) fn is_attachment(
    content_type: &str,
    filename: Option<&str>,
    disposition: Option<&str>,
    leaf: bool,
) -> bool {
    filename.is_some()
        || disposition == Some("attachment")
        || (leaf && !matches!(content_type, "text/plain" | "text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traits_read_as_the_wit_spells_them() {
        let cases = [
            ("attachment", MessageTrait::Attachment),
            ("auth-results", MessageTrait::AuthResults),
            ("untrusted-client", MessageTrait::UntrustedClient),
            ("larger-than:1048576", MessageTrait::LargerThan(1 << 20)),
            (
                "header:X-Campaign",
                MessageTrait::Header("x-campaign".into()),
            ),
        ];
        for (text, expected) in cases {
            let parsed = MessageTrait::parse(text).unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(
                MessageTrait::parse(&parsed.to_string()).unwrap(),
                expected,
                "{text} shown as it is read"
            );
        }
        for bad in [
            "",
            "Attachment",
            "attachments",
            "larger-than:",
            "larger-than:-1",
            "larger-than:1k",
            "header:",
            "header:a:b",
            "header:with space",
            "size:10",
        ] {
            let err = MessageTrait::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn only_plain_bodies_without_names_are_no_attachment() {
        assert!(!is_attachment("text/plain", None, None, true));
        assert!(!is_attachment("text/html", None, Some("inline"), true));
        assert!(!is_attachment("multipart/mixed", None, None, false));
        assert!(is_attachment("text/plain", Some("notes.txt"), None, true));
        assert!(is_attachment("text/plain", None, Some("attachment"), true));
        assert!(is_attachment("multipart/mixed", Some("a.exe"), None, false));
        assert!(is_attachment("application/pdf", None, Some("inline"), true));
        assert!(is_attachment("message/rfc822", None, None, true));
        assert!(
            is_attachment("multipart/mixed", None, None, true),
            "not split"
        );
        assert!(is_attachment("text/calendar", None, None, true));
    }
}
