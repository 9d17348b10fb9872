//! RFC 3464 delivery status notifications: bounces (`Action: failed`) and delay notices
//! (`Action: delayed`), as `multipart/report; report-type=delivery-status` with a readable
//! part, the `message/delivery-status` part and the original (headers only for RET=HDRS).
//!
//! A DSN is sent from the null sender `<>` so it can never cause another DSN, and never to a
//! null sender (RFC 5321 §6.1, RFC 3461 §6.2).

use std::fmt::Write as _;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use wasmrelay_codec::data::is_eight_bit;
use wasmrelay_codec::message::header_end;

use super::Failure;
use crate::spool::{ClientInfo, Envelope, Origin, Recipient};

/// What happened to a recipient, as the DSN reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
}

/// One recipient line group in the report.
#[derive(Debug, Clone)]
pub struct DsnRecipient {
    pub address: String,
    pub orcpt: Option<String>,
    pub failure: Failure,
    /// Unix seconds.
    pub last_attempt: u64,
}

/// Whether the recipient's NOTIFY asks for this kind of notice: FAILURE is the default,
/// DELAY only when listed or when NOTIFY was not given at all.
pub fn wants(recipient: &Recipient, action: Action) -> bool {
    let has = |k: &str| recipient.notify.iter().any(|n| n.eq_ignore_ascii_case(k));
    if has("NEVER") {
        return false;
    }
    match action {
        Action::Failed => recipient.notify.is_empty() || has("FAILURE"),
        Action::Delayed => recipient.notify.is_empty() || has("DELAY"),
    }
}

/// Builds the DSN message and its envelope (from `<>` to the original sender), or `None` for
/// a null sender. `will_retry_until` is the expiry, reported in delay notices.
#[allow(clippy::too_many_arguments)]
pub fn build(
    hostname: &str,
    dsn_id: crate::spool::MessageId,
    original: &Envelope,
    message: &[u8],
    recipients: &[DsnRecipient],
    action: Action,
    now: u64,
    will_retry_until: u64,
) -> Option<(Envelope, Vec<u8>)> {
    let sender = original.mail_from.as_deref().filter(|s| !s.is_empty())?;
    if recipients.is_empty() {
        return None;
    }
    let boundary = format!("{}/{}", original.id, hostname);
    let mut m = String::with_capacity(2048);
    let subject = match action {
        Action::Failed => "Undelivered Mail Returned to Sender",
        Action::Delayed => "Delayed Mail (still being retried)",
    };
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {}\r\n\
         Message-ID: <{}@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n",
        rfc5322_date(now),
        dsn_id,
    );
    match action {
        Action::Failed => {
            let _ = write!(
                m,
                "This is the mail system at host {hostname}.\r\n\r\n\
                 Your message could not be delivered to one or more recipients.\r\n\
                 It is attached below.\r\n\r\n"
            );
        }
        Action::Delayed => {
            let _ = write!(
                m,
                "This is the mail system at host {hostname}.\r\n\r\n\
                 Your message has not been delivered yet to the recipients below.\r\n\
                 It will be retried until {}.\r\n\
                 No action is required on your part.\r\n\r\n",
                rfc5322_date(will_retry_until)
            );
        }
    }
    for r in recipients {
        let _ = write!(m, "<{}>: {}\r\n", r.address, one_line(&r.failure.summary()));
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n"
    );
    if let Some(envid) = &original.envid {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", one_line(envid));
    }
    let _ = write!(
        m,
        "Arrival-Date: {}\r\n",
        rfc5322_date(original.received_at)
    );
    for r in recipients {
        let _ = write!(m, "\r\nFinal-Recipient: rfc822; {}\r\n", r.address);
        if let Some(o) = &r.orcpt {
            let o = if o.contains(';') {
                o.clone()
            } else {
                format!("rfc822; {o}")
            };
            let _ = write!(m, "Original-Recipient: {}\r\n", one_line(&o));
        }
        let action_word = match action {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        };
        let _ = write!(
            m,
            "Action: {action_word}\r\nStatus: {}\r\n",
            r.failure.status
        );
        if let Some(remote) = &r.failure.remote {
            let host = remote.split('[').next().unwrap_or(remote);
            let _ = write!(m, "Remote-MTA: dns; {host}\r\n");
        }
        let _ = write!(
            m,
            "Diagnostic-Code: {}\r\nLast-Attempt-Date: {}\r\n",
            one_line(&r.failure.diagnostic_code()),
            rfc5322_date(r.last_attempt)
        );
        if action == Action::Delayed {
            let _ = write!(
                m,
                "Will-Retry-Until: {}\r\n",
                rfc5322_date(will_retry_until)
            );
        }
    }
    let headers_only = original.ret_headers_only;
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: {}\r\n\
         Content-Type: {}\r\n\
         \r\n",
        if headers_only {
            "Undelivered Message Headers"
        } else {
            "Undelivered Message"
        },
        if headers_only {
            "text/rfc822-headers"
        } else {
            "message/rfc822"
        },
    );
    let mut out = m.into_bytes();
    let attached = if headers_only {
        header_block(message)
    } else {
        message
    };
    out.extend_from_slice(attached);
    if !attached.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    let envelope = Envelope {
        id: dsn_id,
        received_at: now,
        mail_from: None,
        recipients: vec![Recipient::pending(sender.to_string())],
        client: ClientInfo {
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            helo: hostname.to_string(),
            auth_user: None,
            tls: false,
            origin: Origin::Local,
        },
        eight_bit: is_eight_bit(attached),
        smtputf8: original.smtputf8,
        ret_headers_only: false,
        envid: None,
        size: out.len() as u64,
        listener: String::new(),
        annotations: Vec::new(),
    };
    Some((envelope, out))
}

/// The header section of a message, including the blank line that ends it.
fn header_block(message: &[u8]) -> &[u8] {
    &message[..header_end(message).map_or(message.len(), |end| end.body)]
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `Sun, 22 Nov 2026 13:24:01 +0000` for unix seconds (RFC 5322 §3.3, in UTC). A time past
/// what `time` represents (the year 9999) is written as its last second.
pub fn rfc5322_date(unix: u64) -> String {
    const FORMAT: &[BorrowedFormatItem<'static>] = format_description!(
        "[weekday repr:short], [day padding:none] [month repr:short] [year] [hour]:[minute]:[second] +0000"
    );
    let at = i64::try_from(unix)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_utc());
    at.format(FORMAT).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use wasmrelay_codec::reply::{Enhanced, Reply};

    use super::*;
    use crate::spool::MessageId;

    fn envelope(from: Option<&str>, ret_headers_only: bool) -> Envelope {
        Envelope {
            received_at: 1_795_000_000,
            mail_from: from.map(String::from),
            ret_headers_only,
            envid: Some("E1".into()),
            size: 10,
            ..crate::delivery::test_envelope(&["bob@x.test"])
        }
    }

    fn rcpt() -> DsnRecipient {
        DsnRecipient {
            address: "bob@x.test".into(),
            orcpt: Some("rfc822;bob@x.test".into()),
            failure: Failure::remote_reply(
                "mx.x.test[127.0.0.1]:25",
                &Reply::new(550, Enhanced(5, 1, 1), "no such user"),
            ),
            last_attempt: 1_795_000_100,
        }
    }

    #[test]
    fn dates_format() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_000_000),
            "Wed, 18 Nov 2026 11:06:40 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
    }

    #[test]
    fn bounce_has_report_parts() {
        let msg = b"Subject: hi\r\nFrom: a@y.test\r\n\r\nsecret body\r\n";
        let (env, dsn) = build(
            "relay.test",
            MessageId("d1".into()),
            &envelope(Some("a@y.test"), false),
            msg,
            &[rcpt()],
            Action::Failed,
            1_795_000_200,
            0,
        )
        .unwrap();
        let text = String::from_utf8(dsn).unwrap();
        assert_eq!(env.mail_from, None);
        assert_eq!(env.recipients[0].address, "a@y.test");
        for needle in [
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Reporting-MTA: dns; relay.test\r\n",
            "Original-Envelope-Id: E1\r\n",
            "Final-Recipient: rfc822; bob@x.test\r\n",
            "Original-Recipient: rfc822;bob@x.test\r\n",
            "Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.x.test\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n",
            "Content-Type: message/rfc822\r\n\r\nSubject: hi",
            "secret body",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(text.ends_with("--m1/relay.test--\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn headers_only_and_null_sender() {
        let msg = b"Subject: hi\r\n\r\nsecret body\r\n";
        let (_, dsn) = build(
            "relay.test",
            MessageId("d1".into()),
            &envelope(Some("a@y.test"), true),
            msg,
            &[rcpt()],
            Action::Delayed,
            1,
            2,
        )
        .unwrap();
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\n\r\n"));
        assert!(text.contains("Action: delayed\r\n"));
        assert!(!text.contains("secret body"));
        assert!(build(
            "r",
            MessageId("d".into()),
            &envelope(None, false),
            msg,
            &[rcpt()],
            Action::Failed,
            1,
            2
        )
        .is_none());
    }

    #[test]
    fn notify_controls_notices() {
        let mut r = Recipient::pending("a@b".into());
        assert!(wants(&r, Action::Failed));
        r.notify = vec!["NEVER".into()];
        assert!(!wants(&r, Action::Failed));
        r.notify = vec!["SUCCESS".into()];
        assert!(!wants(&r, Action::Failed));
        assert!(!wants(&r, Action::Delayed));
        r.notify = vec!["FAILURE".into(), "DELAY".into()];
        assert!(wants(&r, Action::Delayed));
    }
}
