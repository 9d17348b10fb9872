//! RFC 3464 delivery status notifications rendered from plain values: a
//! `multipart/report; report-type=delivery-status` with a readable part, the
//! `message/delivery-status` part and the original message (or only its header section).
//!
//! Everything that varies comes from outside: addresses and ORCPT from clients, diagnostic
//! text from remote servers, the attached message from anyone. The renderer therefore keeps
//! its own promises whatever it is given: every line it writes ends in CRLF, has no control
//! characters and stays under [`MAX_FIELD`] octets, and the MIME boundary never occurs in the
//! attached content, so a message cannot forge parts of its own bounce.

use std::fmt::Write as _;

use crate::message::header_end;

/// Longest field value written (octets); longer values are cut at a character boundary and
/// end with `...`. Keeps every line well under RFC 5322's 998.
pub const MAX_FIELD: usize = 900;

/// What the report says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
}

/// One recipient's entry, with every value already formatted by the caller.
#[derive(Debug, Clone, Default)]
pub struct ReportRecipient {
    pub address: String,
    /// ORCPT as given (`rfc822;a@b`), or a bare address.
    pub orcpt: Option<String>,
    /// Enhanced status, e.g. `5.1.1`.
    pub status: String,
    /// The remote MTA's host name, when one answered.
    pub remote_mta: Option<String>,
    /// `smtp; 550 5.1.1 ...` or `X-wasmrelay; ...`.
    pub diagnostic: String,
    /// One line for people: who said what.
    pub summary: String,
    /// RFC 5322 date.
    pub last_attempt: String,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    pub hostname: &'a str,
    /// The original sender, to whom the report goes.
    pub sender: &'a str,
    /// A unique token for the boundary and Message-ID (e.g. the report's queue id).
    pub id: &'a str,
    /// The original message's queue id, part of the boundary.
    pub original_id: &'a str,
    pub action: Action,
    /// RFC 5322 dates.
    pub date: &'a str,
    pub arrival_date: &'a str,
    pub will_retry_until: &'a str,
    pub envid: Option<&'a str>,
    pub recipients: &'a [ReportRecipient],
    /// The original message as spooled.
    pub message: &'a [u8],
    /// Attach the header section only (RET=HDRS, or the relay's choice for outsiders).
    pub headers_only: bool,
}

/// A rendered report: the message, and where in it the attached original lies.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub attached: std::ops::Range<usize>,
}

/// Renders the report.
pub fn render(r: &Report<'_>) -> Rendered {
    let hostname = one_line(r.hostname);
    let attached = if r.headers_only {
        &r.message[..header_end(r.message).map_or(r.message.len(), |end| end.body)]
    } else {
        r.message
    };
    let boundary = boundary_for(&format!("{}/{hostname}", one_line(r.original_id)), attached);
    let subject = match r.action {
        Action::Failed => "Undelivered Mail Returned to Sender",
        Action::Delayed => "Delayed Mail (still being retried)",
    };
    let mut m = String::with_capacity(2048);
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{}>\r\n\
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
         \r\n\
         This is the mail system at host {hostname}.\r\n\r\n",
        one_line(r.sender),
        one_line(r.date),
        one_line(r.id),
    );
    match r.action {
        Action::Failed => m.push_str(
            "Your message could not be delivered to one or more recipients.\r\n\
             It is attached below.\r\n\r\n",
        ),
        Action::Delayed => {
            let _ = write!(
                m,
                "Your message has not been delivered yet to the recipients below.\r\n\
                 It will be retried until {}.\r\n\
                 No action is required on your part.\r\n\r\n",
                one_line(r.will_retry_until)
            );
        }
    }
    for rcpt in r.recipients {
        let line = format!("<{}>: {}", rcpt.address, rcpt.summary);
        let _ = write!(m, "{}\r\n", one_line(&line));
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n"
    );
    if let Some(envid) = r.envid {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", one_line(envid));
    }
    let _ = write!(m, "Arrival-Date: {}\r\n", one_line(r.arrival_date));
    for rcpt in r.recipients {
        let _ = write!(
            m,
            "\r\nFinal-Recipient: rfc822; {}\r\n",
            one_line(&rcpt.address)
        );
        if let Some(o) = &rcpt.orcpt {
            let o = if o.contains(';') {
                o.clone()
            } else {
                format!("rfc822; {o}")
            };
            let _ = write!(m, "Original-Recipient: {}\r\n", one_line(&o));
        }
        let action_word = match r.action {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        };
        let _ = write!(
            m,
            "Action: {action_word}\r\nStatus: {}\r\n",
            one_line(&rcpt.status)
        );
        if let Some(host) = &rcpt.remote_mta {
            let _ = write!(m, "Remote-MTA: dns; {}\r\n", one_line(host));
        }
        let _ = write!(
            m,
            "Diagnostic-Code: {}\r\nLast-Attempt-Date: {}\r\n",
            one_line(&rcpt.diagnostic),
            one_line(&rcpt.last_attempt)
        );
        if r.action == Action::Delayed {
            let _ = write!(m, "Will-Retry-Until: {}\r\n", one_line(r.will_retry_until));
        }
    }
    let (description, content_type) = if r.headers_only {
        ("Undelivered Message Headers", "text/rfc822-headers")
    } else {
        ("Undelivered Message", "message/rfc822")
    };
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: {description}\r\n\
         Content-Type: {content_type}\r\n\
         \r\n"
    );
    let mut out = m.into_bytes();
    let start = out.len();
    out.extend_from_slice(attached);
    let attached = start..out.len();
    if !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Rendered {
        bytes: out,
        attached,
    }
}

/// `base`, made longer until no line of `content` could be read as a delimiter for it.
fn boundary_for(base: &str, content: &[u8]) -> String {
    // RFC 2046 boundaries: at most 70 characters from a restricted set.
    let mut stem: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "'()+_,-./:=?".contains(*c))
        .take(60)
        .collect();
    if stem.is_empty() {
        stem.push_str("report");
    }
    let mut boundary = stem.clone();
    let mut n: u32 = 0;
    while contains(content, format!("--{boundary}").as_bytes()) {
        n += 1;
        boundary = format!("{stem}={n:x}");
    }
    boundary
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// One line of at most [`MAX_FIELD`] octets: control characters become spaces (no CR/LF can
/// end a field early) and a long value is cut at a character boundary.
pub fn one_line(s: &str) -> String {
    let cut = s.len() > MAX_FIELD;
    let mut out = String::with_capacity(s.len().min(MAX_FIELD));
    for c in s.chars() {
        if cut && out.len() + c.len_utf8() > MAX_FIELD - 3 {
            out.push_str("...");
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// Checks the renderer's promises on its output (for tests and the fuzz target): the text
/// around the attached original has CRLF line ends only and no line over 998 octets, the
/// boundary occurs nowhere in the attached content, and the report has exactly its three
/// parts and a closing delimiter.
pub fn check_rendered(r: &Rendered) -> Result<(), String> {
    let out = &r.bytes;
    let (prefix, attached, suffix) = (
        &out[..r.attached.start],
        &out[r.attached.clone()],
        &out[r.attached.end..],
    );
    for text in [prefix, suffix] {
        check_lines(text)?;
    }
    let header = std::str::from_utf8(prefix).map_err(|e| e.to_string())?;
    let boundary = header
        .split_once("\r\n\tboundary=\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .ok_or("no boundary")?;
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(format!("bad boundary {boundary:?}"));
    }
    let delimiter = format!("--{boundary}");
    if contains(attached, delimiter.as_bytes()) {
        return Err("the boundary occurs in the attached content".into());
    }
    let parts = header.matches(&format!("\r\n{delimiter}\r\n")).count();
    if parts != 3 {
        return Err(format!("{parts} part delimiters before the original"));
    }
    let closing = format!("\r\n{delimiter}--\r\n");
    if !suffix.ends_with(closing.as_bytes())
        || contains(
            &suffix[..suffix.len() - closing.len()],
            delimiter.as_bytes(),
        )
    {
        return Err("no single closing delimiter after the original".into());
    }
    Ok(())
}

/// Every line of `text` ends in CRLF (a line may be cut by the start of `text`), with no
/// other CR and at most 998 octets.
fn check_lines(text: &[u8]) -> Result<(), String> {
    let mut lines = text.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let body = match line.strip_suffix(b"\r") {
            Some(body) => body,
            None if last => line,
            None => {
                return Err(format!(
                    "a line without CRLF: {:?}",
                    String::from_utf8_lossy(line)
                ))
            }
        };
        if body.contains(&b'\r') {
            return Err("a bare CR".into());
        }
        if body.len() > 998 {
            return Err(format!("a line of {} octets", body.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
