//! RFC 3464 delivery status notifications: bounces (`Action: failed`) and delay notices
//! (`Action: delayed`), as `multipart/report; report-type=delivery-status` with a readable
//! part, the `message/delivery-status` part and the original (headers only for RET=HDRS).
//!
//! A DSN is sent from the null sender `<>` so it can never cause another DSN, and never to a
//! null sender (RFC 5321 §6.1, RFC 3461 §6.2).

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use wasmrelay_codec::data::is_eight_bit;
use wasmrelay_codec::dsn::{self as codec, render, Report, ReportRecipient};

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
/// a null sender. `will_retry_until` is the expiry, reported in delay notices. Mail that an
/// unauthenticated outsider sent gets its headers only back unless `full_for_outsiders`:
/// a forged sender must not turn the relay into a reflector of whole messages (backscatter).
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
    full_for_outsiders: bool,
) -> Option<(Envelope, Vec<u8>)> {
    let sender = original.mail_from.as_deref().filter(|s| !s.is_empty())?;
    if recipients.is_empty() {
        return None;
    }
    let entries: Vec<ReportRecipient> = recipients
        .iter()
        .map(|r| ReportRecipient {
            address: r.address.clone(),
            orcpt: r.orcpt.clone(),
            status: r.failure.status.to_string(),
            remote_mta: r
                .failure
                .remote
                .as_deref()
                .map(|remote| remote.split('[').next().unwrap_or(remote).to_string()),
            diagnostic: r.failure.diagnostic_code(),
            summary: r.failure.summary(),
            last_attempt: rfc5322_date(r.last_attempt),
        })
        .collect();
    let outsider = original.client.origin == Origin::Outsider;
    let id = dsn_id.to_string();
    let original_id = original.id.to_string();
    let (date, arrival, until) = (
        rfc5322_date(now),
        rfc5322_date(original.received_at),
        rfc5322_date(will_retry_until),
    );
    let rendered = render(&Report {
        hostname,
        sender,
        id: &id,
        original_id: &original_id,
        action: match action {
            Action::Failed => codec::Action::Failed,
            Action::Delayed => codec::Action::Delayed,
        },
        date: &date,
        arrival_date: &arrival,
        will_retry_until: &until,
        envid: original.envid.as_deref(),
        recipients: &entries,
        message,
        headers_only: original.ret_headers_only || (outsider && !full_for_outsiders),
    });
    let eight_bit = is_eight_bit(&rendered.bytes[rendered.attached.clone()]);
    let out = rendered.bytes;
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
        eight_bit,
        smtputf8: original.smtputf8,
        ret_headers_only: false,
        envid: None,
        size: out.len() as u64,
        listener: String::new(),
        annotations: Vec::new(),
        held: false,
        // The bounce continues the trace of the message it reports on.
        trace: original.trace.clone(),
    };
    Some((envelope, out))
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
        let mut env = Envelope {
            received_at: 1_795_000_000,
            mail_from: from.map(String::from),
            ret_headers_only,
            envid: Some("E1".into()),
            size: 10,
            ..crate::delivery::test_envelope(&["bob@x.test"])
        };
        env.client.origin = Origin::Authenticated;
        env
    }

    #[test]
    fn an_outsiders_bounce_carries_headers_only_unless_configured() {
        let msg = b"Subject: hi\r\n\r\nsecret body\r\n";
        let mut env = envelope(Some("forged@victim.test"), false);
        env.client.origin = Origin::Outsider;
        let bounce = |full| {
            let (_, dsn) = build(
                "relay.test",
                MessageId("d1".into()),
                &env,
                msg,
                &[rcpt()],
                Action::Failed,
                1,
                2,
                full,
            )
            .unwrap();
            String::from_utf8(dsn).unwrap()
        };
        let text = bounce(false);
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\n\r\n"));
        assert!(!text.contains("secret body"));
        assert!(bounce(true).contains("secret body"));
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
            false,
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
            false,
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
            2,
            false
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
