//! The DSN renderer on arbitrary values (recipient addresses and ORCPT from clients,
//! diagnostic text from remote servers, the original message from anyone). Checks the
//! renderer's promises with `check_rendered`: CRLF-only lines under 998 octets around the
//! original, a boundary that never occurs in it, exactly three parts.
//!
//! Input layout: [flags, then fields separated by 0xff: hostname, original id, envid,
//! address, orcpt, diagnostic, summary, message].
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmrelay_codec::dsn::{check_rendered, render, Action, Report, ReportRecipient};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|&b| b == 0xff);
    let mut next = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (hostname, original_id, envid) = (next(), next(), next());
    let recipient = ReportRecipient {
        address: next(),
        orcpt: Some(next()).filter(|_| flags & 1 != 0),
        status: "5.1.1".into(),
        remote_mta: Some("mx.example".into()).filter(|_| flags & 2 != 0),
        diagnostic: next(),
        summary: next(),
        last_attempt: "Wed, 18 Nov 2026 11:06:40 +0000".into(),
    };
    let message = next();
    let recipients = vec![recipient; 1 + usize::from(flags >> 6)];
    let rendered = render(&Report {
        hostname: &hostname,
        sender: "sender@example.org",
        id: "dsn1",
        original_id: &original_id,
        action: if flags & 4 != 0 {
            Action::Delayed
        } else {
            Action::Failed
        },
        date: "Wed, 18 Nov 2026 11:10:00 +0000",
        arrival_date: "Wed, 18 Nov 2026 11:00:00 +0000",
        will_retry_until: "Thu, 19 Nov 2026 11:00:00 +0000",
        envid: Some(envid.as_str()).filter(|_| flags & 8 != 0),
        recipients: &recipients,
        message: message.as_bytes(),
        headers_only: flags & 16 != 0,
    });
    if let Err(e) = check_rendered(&rendered) {
        panic!("{e}");
    }
});
