//! Reading returned mail: an RFC 3464 delivery status notification or an RFC 5965 (ARF)
//! feedback report, and the identity of the original message inside it.
//!
//! Both are `multipart/report` (RFC 6522) with a machine-readable part of header-like field
//! groups (`message/delivery-status`, `message/feedback-report`) and the original message
//! or its headers (`message/rfc822`, `text/rfc822-headers`). What identifies the original
//! is our own `Received:` header in it (`by HOST (wasmrelay) with ESMTP id QUEUEID`), which
//! every message we relay carries; the caller decides whether that id and the recipient
//! name a delivery we really made (see `super::sent`).
//!
//! Everything here reads untrusted input: fields are bounded in number and length, and
//! anything malformed is skipped, never trusted.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use wasmrelay_codec::reply::Enhanced;

/// Most recipients taken from one report; the rest are ignored.
pub const MAX_RECIPIENTS: usize = 100;
/// Most fields read from a report part.
const MAX_FIELDS: usize = 1000;
/// Longest value kept (diagnostics, user agents).
const MAX_VALUE: usize = 1000;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A delivery status notification: one entry per recipient with `Action: failed`.
    Dsn {
        failed: Vec<DsnFailure>,
        original: Original,
    },
    /// A feedback report (complaint).
    Arf { arf: Arf, original: Original },
}

/// One failed recipient of a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnFailure {
    /// `Final-Recipient` (or `Original-Recipient`), lower-cased.
    pub recipient: String,
    /// `Status`, when it parses.
    pub status: Option<Enhanced>,
    /// `Diagnostic-Code` without its type (`550 5.1.1 user unknown`).
    pub diagnostic: String,
    /// `Remote-MTA` without its type, or the `Reporting-MTA`.
    pub remote: String,
}

/// The fields of a feedback report that matter to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arf {
    /// `abuse`, `fraud`, `virus`, `not-spam`, `other` ... (lower-cased).
    pub feedback_type: String,
    pub user_agent: String,
    /// `Original-Rcpt-To`, lower-cased.
    pub recipients: Vec<String>,
}

/// What identifies the original message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    /// Queue ids from our `Received:` headers, newest first.
    pub queue_ids: Vec<String>,
    /// Recipients named by the original: `for <...>` of our `Received:` and its `To:`.
    pub recipients: Vec<String>,
    pub message_id: Option<String>,
}

/// The report in `message`, or `None` when it is not one we understand.
pub fn parse(message: &[u8]) -> Option<Report> {
    let msg = MessageParser::default().parse(message)?;
    let ct = msg.content_type()?;
    if !ct.ctype().eq_ignore_ascii_case("multipart")
        || !ct
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    {
        return None;
    }
    let report_type = ct.attribute("report-type")?.to_ascii_lowercase();
    let mut status_part = None;
    let mut original = Original::default();
    for part in msg.parts.iter().skip(1) {
        let Some(pct) = part.content_type() else {
            continue;
        };
        let kind = (
            pct.ctype().to_ascii_lowercase(),
            pct.subtype().unwrap_or("").to_ascii_lowercase(),
        );
        match (kind.0.as_str(), kind.1.as_str()) {
            ("message", "delivery-status" | "global-delivery-status" | "feedback-report") => {
                status_part.get_or_insert_with(|| part.contents().to_vec());
            }
            ("message", "rfc822" | "global") => {
                if let PartType::Message(m) = &part.body {
                    original = original_of(m);
                }
            }
            ("text", "rfc822-headers") => {
                if let Some(m) = MessageParser::default().parse_headers(part.contents()) {
                    original = original_of(&m);
                }
            }
            _ => {}
        }
    }
    let groups = field_groups(&status_part?);
    match report_type.as_str() {
        "delivery-status" => {
            let reporting = groups
                .first()
                .and_then(|g| get(g, "reporting-mta"))
                .map(typed_value)
                .unwrap_or_default();
            let failed = groups
                .iter()
                .skip(1)
                .filter(|g| get(g, "action").is_some_and(|a| a.eq_ignore_ascii_case("failed")))
                .filter_map(|g| {
                    let rcpt =
                        get(g, "final-recipient").or_else(|| get(g, "original-recipient"))?;
                    let recipient = address(&typed_value(rcpt))?;
                    Some(DsnFailure {
                        recipient,
                        status: get(g, "status").and_then(parse_status),
                        diagnostic: get(g, "diagnostic-code")
                            .map(typed_value)
                            .unwrap_or_default(),
                        remote: get(g, "remote-mta")
                            .map(typed_value)
                            .unwrap_or_else(|| reporting.clone()),
                    })
                })
                .take(MAX_RECIPIENTS)
                .collect();
            Some(Report::Dsn { failed, original })
        }
        "feedback-report" => {
            let fields: Vec<(String, String)> = groups.into_iter().flatten().collect();
            let arf = Arf {
                feedback_type: get(&fields, "feedback-type")?.to_ascii_lowercase(),
                user_agent: get(&fields, "user-agent").unwrap_or("").to_string(),
                recipients: fields
                    .iter()
                    .filter(|(k, _)| k == "original-rcpt-to")
                    .filter_map(|(_, v)| address(v))
                    .take(MAX_RECIPIENTS)
                    .collect(),
            };
            Some(Report::Arf { arf, original })
        }
        _ => None,
    }
}

/// The queue ids, recipients and Message-ID of the original's headers.
fn original_of(m: &Message<'_>) -> Original {
    let mut o = Original {
        message_id: m.message_id().map(str::to_string),
        ..Original::default()
    };
    for (name, value) in m.headers_raw() {
        if name.eq_ignore_ascii_case("received") {
            if let Some((id, rcpt)) = our_received(value) {
                if !o.queue_ids.contains(&id) && o.queue_ids.len() < 8 {
                    o.queue_ids.push(id);
                }
                o.recipients.extend(rcpt);
            }
        } else if name.eq_ignore_ascii_case("to") {
            o.recipients.extend(
                value
                    .split(',')
                    .filter_map(|a| {
                        let a = a.rsplit_once('<').map_or(a, |(_, r)| r);
                        address(a.split('>').next().unwrap_or(""))
                    })
                    .take(MAX_RECIPIENTS),
            );
        }
    }
    o.recipients.dedup();
    o.recipients.truncate(MAX_RECIPIENTS);
    o
}

/// The queue id (and `for <...>` recipient) of a `Received:` header value our relay wrote.
fn our_received(value: &str) -> Option<(String, Option<String>)> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if !words.contains(&"(wasmrelay)") {
        return None;
    }
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .map(|w| w.trim_end_matches(';'))
    };
    let id = after("id")?;
    let valid = id.len() == 21 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !valid {
        return None;
    }
    let rcpt = after("for").and_then(|w| address(w.trim_matches(['<', '>'])));
    Some((id.to_string(), rcpt))
}

/// Groups of `name: value` fields separated by blank lines, names lower-cased, continuation
/// lines unfolded.
fn field_groups(text: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(text);
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    let mut count = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.last_mut() {
                if v.len() < MAX_VALUE {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            }
            continue;
        }
        count += 1;
        if count > MAX_FIELDS {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let mut value = value.trim().to_string();
            value.truncate(value.floor_char_boundary(MAX_VALUE));
            current.push((name.trim().to_ascii_lowercase(), value));
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn get<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `rfc822; a@b` → `a@b`; `smtp; 550 ...` → `550 ...`.
fn typed_value(v: &str) -> String {
    v.split_once(';')
        .map_or(v, |(_, rest)| rest)
        .trim()
        .to_string()
}

/// An address as lists keep it: trimmed, no angle brackets, lower-cased; `None` unless it
/// looks like `local@domain`.
fn address(v: &str) -> Option<String> {
    let a = v
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let (local, domain) = a.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && a.len() <= crate::state::MAX_LIST_MEMBER
        && !a
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    ok.then(|| a.to_ascii_lowercase())
}

/// `5.1.1` (possibly followed by a comment) as an enhanced code.
fn parse_status(v: &str) -> Option<Enhanced> {
    let code = v.split_whitespace().next()?;
    let mut parts = code.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    (matches!(class, 2 | 4 | 5) && parts.next().is_none())
        .then_some(Enhanced(class, subject, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QID: &str = "0K3ZQ7W8X0000ABCDEFGH";

    fn received() -> String {
        format!(
            "Received: from client.test ([127.0.0.1])\r\n\tby relay.test (wasmrelay) with ESMTP id {QID}\r\n\tfor <Alice@Example.net>;\r\n\tMon, 1 Dec 2026 10:00:00 +0000\r\n"
        )
    }

    fn dsn() -> String {
        format!(
            "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@example.com\r\nSubject: Undelivered\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\
             --b1\r\nContent-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; mx.example.net\r\n\r\n\
             Final-Recipient: rfc822; Alice@Example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <alice@example.net>:\r\n  user unknown\r\n\r\n\
             Final-Recipient: rfc822; bob@example.net\r\nAction: delayed\r\nStatus: 4.2.2\r\n\r\n\
             --b1\r\nContent-Type: text/rfc822-headers\r\n\r\n{}From: news@example.com\r\nTo: alice@example.net\r\nMessage-ID: <m1@example.com>\r\nSubject: hi\r\n\r\n\
             --b1--\r\n",
            received()
        )
    }

    #[test]
    fn a_dsn_gives_its_failed_recipients_and_our_queue_id() {
        let Some(Report::Dsn { failed, original }) = parse(dsn().as_bytes()) else {
            panic!("not read as a DSN");
        };
        assert_eq!(
            failed,
            [DsnFailure {
                recipient: "alice@example.net".into(),
                status: Some(Enhanced(5, 1, 1)),
                diagnostic: "550 5.1.1 <alice@example.net>: user unknown".into(),
                remote: "mx.example.net".into(),
            }]
        );
        assert_eq!(original.queue_ids, [QID]);
        assert_eq!(original.recipients, ["alice@example.net"]);
        assert_eq!(original.message_id.as_deref(), Some("m1@example.com"));
    }

    #[test]
    fn an_arf_report_gives_its_type_and_recipient() {
        let arf = format!(
            "From: fbl@isp.example\r\nTo: bounces@example.com\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"b2\"\r\n\r\n\
             --b2\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\
             --b2\r\nContent-Type: message/feedback-report\r\n\r\n\
             Feedback-Type: Abuse\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: <Carol@Example.org>\r\n\r\n\
             --b2\r\nContent-Type: message/rfc822\r\n\r\n{}From: news@example.com\r\nTo: carol@example.org\r\nSubject: hi\r\n\r\nbody\r\n\
             --b2--\r\n",
            received()
        );
        let Some(Report::Arf { arf, original }) = parse(arf.as_bytes()) else {
            panic!("not read as ARF");
        };
        assert_eq!(arf.feedback_type, "abuse");
        assert_eq!(arf.user_agent, "ISP-FBL/1.0");
        assert_eq!(arf.recipients, ["carol@example.org"]);
        assert_eq!(original.queue_ids, [QID]);
    }

    #[test]
    fn other_mail_and_malformed_fields_are_not_reports() {
        assert_eq!(parse(b"Subject: hi\r\n\r\nhello\r\n"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(
            our_received("from x by y (wasmrelay) with ESMTP id ../../etc;"),
            None
        );
        assert_eq!(
            our_received("from x by y (postfix) with ESMTP id 0K3ZQ7W8X0000ABCDEFGH;"),
            None
        );
        assert_eq!(address("no at sign"), None);
        assert_eq!(address("a b@c"), None);
        assert_eq!(
            parse_status("5.1.1 (user unknown)"),
            Some(Enhanced(5, 1, 1))
        );
        assert_eq!(parse_status("9.1.1"), None);
        assert_eq!(parse_status("5.1"), None);
    }
}
