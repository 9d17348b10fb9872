//! SMTP command codec: line framing and command parsing, with no I/O and no tokio.
//!
//! [`LineReader`] cuts command lines out of a byte buffer (need-more-data is `Ok(None)`),
//! [`parse_command`] turns one line into a [`Command`] or a [`CommandError`] that knows its reply.

use bytes::BytesMut;

use self::address::{is_atext, parse_domain, parse_path};
use crate::reply::{Enhanced, Reply};
use crate::xtext;

/// A mailbox `local@domain` as given on the wire (source route removed, quotes kept in `local`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

impl Address {
    /// The domain, lower-cased, for comparisons and routing.
    pub fn domain_lower(&self) -> String {
        self.domain.to_ascii_lowercase()
    }

    /// True when the local part carries `%`, `!` or a quoted `@`: the %-hack, bang paths and
    /// quoted-@ tricks that ask the next hop to relay again. Refuse them from unauthorized clients.
    pub fn has_routing_chars(&self) -> bool {
        self.local.contains(['%', '!', '@'])
    }

    /// `local@domain` in one allocation (`to_string` grows its buffer as it writes each part,
    /// and a session writes every sender and recipient more than once).
    pub fn mailbox(&self) -> String {
        let mut text = String::with_capacity(self.local.len() + 1 + self.domain.len());
        text.push_str(&self.local);
        text.push('@');
        text.push_str(&self.domain);
        text
    }

    /// True when both parts are ASCII; otherwise the transaction needs SMTPUTF8 (RFC 6531).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// `MAIL FROM:` path: the null sender `<>` (bounces) or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    Null,
    Mailbox(Address),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

/// RFC 3461 `RET=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnReturn {
    Full,
    Headers,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    pub ret: Option<DsnReturn>,
    pub envid: Option<String>,
    /// RFC 4954 `AUTH=` (accepted and ignored unless the session is trusted).
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// RFC 3461 `NOTIFY=` values, upper-cased (`NEVER`, `SUCCESS`, `FAILURE`, `DELAY`).
    pub notify: Option<Vec<String>>,
    pub orcpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo {
        domain: String,
    },
    Helo {
        domain: String,
    },
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: Address,
        params: RcptParams,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy {
        arg: String,
    },
    Expn {
        arg: String,
    },
    Help,
    StartTls,
    Auth {
        mechanism: String,
        initial_response: Option<String>,
    },
}

/// Why a command line could not be parsed; each maps to its RFC 5321 reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command not recognized")]
    Unrecognized,
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    #[error("bad address: {0}")]
    BadAddress(&'static str),
    #[error("unsupported parameter: {0}")]
    UnsupportedParameter(String),
    #[error("invalid parameter value: {0}")]
    BadParameterValue(String),
}

impl CommandError {
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unrecognized => {
                Reply::new(500, Enhanced(5, 5, 1), "Command not recognized")
            }
            CommandError::Syntax(why) => {
                Reply::new(501, Enhanced(5, 5, 4), format!("Syntax error: {why}"))
            }
            CommandError::BadAddress(why) => {
                Reply::new(553, Enhanced(5, 1, 3), format!("Bad address syntax: {why}"))
            }
            CommandError::UnsupportedParameter(p) => {
                Reply::new(555, Enhanced(5, 5, 4), format!("Unsupported parameter {p}"))
            }
            CommandError::BadParameterValue(p) => {
                Reply::new(501, Enhanced(5, 5, 4), format!("Invalid value for {p}"))
            }
        }
    }
}

/// Errors while framing command lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("command line longer than {0} octets")]
    TooLong(usize),
    #[error("bare LF in command line")]
    BareLf,
}

impl LineError {
    pub fn reply(&self) -> Reply {
        match self {
            LineError::TooLong(_) => Reply::new(500, Enhanced(5, 5, 2), "Line too long"),
            LineError::BareLf => {
                Reply::new(500, Enhanced(5, 5, 2), "Bare LF not allowed, use CRLF")
            }
        }
    }
}

/// Cuts CRLF-terminated command lines out of a buffer.
///
/// Every LF ends a line: a CRLF line is a command, a bare LF line is refused with
/// [`LineError::BareLf`] (or accepted as if it were CRLF when `allow_bare_lf`). An overlong line
/// is never buffered: once more than `max_len` octets have arrived without a line end, the reader
/// drops them as they come, and returns [`LineError::TooLong`] exactly once, when the line's end
/// has been consumed. The session therefore answers an overlong line once, in order with any
/// pipelined commands, and the next call starts on the following line.
#[derive(Debug)]
pub struct LineReader {
    max_len: usize,
    allow_bare_lf: bool,
    /// Inside an overlong line whose bytes are being thrown away up to its LF.
    discarding: bool,
}

impl LineReader {
    /// `max_len` counts the CRLF (RFC 5321 §4.5.3.1.4: at least 512).
    pub fn new(max_len: usize, allow_bare_lf: bool) -> Self {
        LineReader {
            max_len,
            allow_bare_lf,
            discarding: false,
        }
    }

    /// Forgets a partly discarded overlong line; for STARTTLS, where the buffer is dropped too.
    pub fn reset(&mut self) {
        self.discarding = false;
    }

    /// Takes one line (without its line ending) off the front of `buf`; `Ok(None)` means more
    /// bytes are needed. After `TooLong` the reader has consumed the overlong line through its end,
    /// or keeps discarding until it sees one.
    pub fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, LineError> {
        let Some(lf) = memchr::memchr(b'\n', buf) else {
            // No line end yet. A line of `len` octets so far ends, at the earliest, with the LF
            // right after them (if the last octet is its CR): `len + 1` octets in all.
            if self.discarding || buf.len() >= self.max_len {
                self.discarding = true;
                buf.clear();
            }
            return Ok(None);
        };
        let crlf = lf > 0 && buf[lf - 1] == b'\r';
        let content = if crlf { lf - 1 } else { lf };
        let mut line = buf.split_to(lf + 1);
        if std::mem::take(&mut self.discarding) || content + 2 > self.max_len {
            return Err(LineError::TooLong(self.max_len));
        }
        if !crlf && !self.allow_bare_lf {
            return Err(LineError::BareLf);
        }
        line.truncate(content);
        Ok(Some(line))
    }
}

/// RFC 5321 §4.5.3.1: local part, domain and path (with its brackets) limits, in octets.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;
const MAX_PATH: usize = 256;
/// RFC 3461 §4.4 and §4.2.
const MAX_ENVID: usize = 100;
const MAX_ORCPT: usize = 500;

/// Parses one command line (without CRLF).
///
/// Verbs are case-insensitive; trailing blanks are ignored. Lines with NUL, CR or LF, or that are
/// not UTF-8, are syntax errors.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if memchr::memchr3(0, b'\r', b'\n', line).is_some() {
        return Err(CommandError::Syntax("control character in command line"));
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Syntax("invalid UTF-8"))?;
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_start_matches(' ')),
        None => (line, ""),
    };
    let is = |name: &str| verb.eq_ignore_ascii_case(name);
    if is("EHLO") || is("HELO") {
        let domain = parse_helo_domain(rest)?;
        return Ok(if is("EHLO") {
            Command::Ehlo { domain }
        } else {
            Command::Helo { domain }
        });
    }
    if is("MAIL") {
        return parse_mail(rest);
    }
    if is("RCPT") {
        return parse_rcpt(rest);
    }
    if is("BDAT") {
        return parse_bdat(rest);
    }
    if is("AUTH") {
        return parse_auth(rest);
    }
    if is("VRFY") || is("EXPN") {
        if rest.is_empty() {
            return Err(CommandError::Syntax("argument required"));
        }
        let arg = rest.to_string();
        return Ok(if is("VRFY") {
            Command::Vrfy { arg }
        } else {
            Command::Expn { arg }
        });
    }
    // RFC 5321 §4.1.1.9 and §4.1.1.8: NOOP and HELP take an optional argument, which is ignored.
    if is("NOOP") {
        return Ok(Command::Noop);
    }
    if is("HELP") {
        return Ok(Command::Help);
    }
    let bare = if is("DATA") {
        Command::Data
    } else if is("RSET") {
        Command::Rset
    } else if is("QUIT") {
        Command::Quit
    } else if is("STARTTLS") {
        Command::StartTls
    } else {
        return Err(CommandError::Unrecognized);
    };
    if !rest.is_empty() {
        return Err(CommandError::Syntax("this command takes no argument"));
    }
    Ok(bare)
}

/// Strips an ASCII prefix, ignoring case.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_helo_domain(arg: &str) -> Result<String, CommandError> {
    const WHY: &str = "a domain or address literal is required";
    if arg.is_empty() {
        return Err(CommandError::Syntax(WHY));
    }
    // Real clients announce names with underscores (Windows host names); accept them here only.
    match parse_domain(arg, true) {
        Ok(n) if n == arg.len() => Ok(arg.to_string()),
        _ => Err(CommandError::Syntax(WHY)),
    }
}

fn parse_mail(rest: &str) -> Result<Command, CommandError> {
    let rest =
        strip_prefix_ci(rest, "FROM:").ok_or(CommandError::Syntax("expected FROM:<path>"))?;
    let (path, rest) = parse_path(rest.trim_start_matches(' '), false)?;
    let mut params = MailParams::default();
    let mut seen = Seen::default();
    for (keyword, value) in esmtp_params(rest)? {
        seen.check(&keyword)?;
        match keyword.as_str() {
            "SIZE" => {
                let v = value.ok_or_else(|| bad_value("SIZE"))?;
                params.size = Some(parse_decimal(v).ok_or_else(|| bad_value("SIZE"))?);
            }
            "BODY" => {
                let v = value.ok_or_else(|| bad_value("BODY"))?;
                params.body = Some(if v.eq_ignore_ascii_case("7BIT") {
                    BodyType::SevenBit
                } else if v.eq_ignore_ascii_case("8BITMIME") {
                    BodyType::EightBitMime
                } else if v.eq_ignore_ascii_case("BINARYMIME") {
                    return Err(CommandError::UnsupportedParameter("BODY=BINARYMIME".into()));
                } else {
                    return Err(bad_value("BODY"));
                });
            }
            "SMTPUTF8" => {
                if value.is_some() {
                    return Err(bad_value("SMTPUTF8"));
                }
                params.smtputf8 = true;
            }
            "RET" => {
                let v = value.ok_or_else(|| bad_value("RET"))?;
                params.ret = Some(if v.eq_ignore_ascii_case("FULL") {
                    DsnReturn::Full
                } else if v.eq_ignore_ascii_case("HDRS") {
                    DsnReturn::Headers
                } else {
                    return Err(bad_value("RET"));
                });
            }
            "ENVID" => {
                let v = value
                    .filter(|v| v.len() <= MAX_ENVID)
                    .ok_or_else(|| bad_value("ENVID"))?;
                let decoded = xtext::decode(v)
                    .filter(|d| d.bytes().all(|b| (0x20..=0x7e).contains(&b)))
                    .ok_or_else(|| bad_value("ENVID"))?;
                params.envid = Some(decoded);
            }
            "AUTH" => {
                let v = value.ok_or_else(|| bad_value("AUTH"))?;
                params.auth = Some(xtext::decode(v).ok_or_else(|| bad_value("AUTH"))?);
            }
            _ => return Err(CommandError::UnsupportedParameter(keyword)),
        }
    }
    let from = match path {
        None => ReversePath::Null,
        Some(addr) => {
            // RFC 6531 §3.4: a non-ASCII envelope needs SMTPUTF8 on the MAIL command.
            if !params.smtputf8 && !addr.is_ascii() {
                return Err(CommandError::BadAddress(
                    "non-ASCII address requires SMTPUTF8",
                ));
            }
            ReversePath::Mailbox(addr)
        }
    };
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(rest: &str) -> Result<Command, CommandError> {
    let rest = strip_prefix_ci(rest, "TO:").ok_or(CommandError::Syntax("expected TO:<path>"))?;
    let (path, rest) = parse_path(rest.trim_start_matches(' '), true)?;
    let to = path.ok_or(CommandError::BadAddress("null recipient"))?;
    let mut params = RcptParams::default();
    let mut seen = Seen::default();
    for (keyword, value) in esmtp_params(rest)? {
        seen.check(&keyword)?;
        match keyword.as_str() {
            "NOTIFY" => {
                let v = value.ok_or_else(|| bad_value("NOTIFY"))?;
                let mut list: Vec<String> = Vec::new();
                for item in v.split(',') {
                    let item = item.to_ascii_uppercase();
                    let known = matches!(item.as_str(), "NEVER" | "SUCCESS" | "FAILURE" | "DELAY");
                    if !known || list.contains(&item) {
                        return Err(bad_value("NOTIFY"));
                    }
                    list.push(item);
                }
                // RFC 3461 §4.1: NEVER stands alone.
                if list.len() > 1 && list.iter().any(|i| i == "NEVER") {
                    return Err(bad_value("NOTIFY"));
                }
                params.notify = Some(list);
            }
            "ORCPT" => {
                let v = value
                    .filter(|v| v.len() <= MAX_ORCPT)
                    .ok_or_else(|| bad_value("ORCPT"))?;
                let (addr_type, addr) = v.split_once(';').ok_or_else(|| bad_value("ORCPT"))?;
                let type_ok =
                    !addr_type.is_empty() && addr_type.bytes().all(|b| is_atext(b) && b != b'=');
                if !type_ok || addr.is_empty() || xtext::decode(addr).is_none() {
                    return Err(bad_value("ORCPT"));
                }
                // Kept encoded: it is relayed as is, and `xtext::decode` gives the address.
                params.orcpt = Some(v.to_string());
            }
            _ => return Err(CommandError::UnsupportedParameter(keyword)),
        }
    }
    Ok(Command::Rcpt { to, params })
}

fn parse_bdat(rest: &str) -> Result<Command, CommandError> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .ok_or(CommandError::Syntax("BDAT needs a chunk size"))?;
    let size = parse_decimal(size).ok_or(CommandError::Syntax("bad BDAT chunk size"))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax("expected BDAT size [LAST]")),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax("expected BDAT size [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(rest: &str) -> Result<Command, CommandError> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let mechanism = words
        .next()
        .ok_or(CommandError::Syntax("AUTH needs a mechanism"))?;
    // RFC 4422 §3.1: 1 to 20 characters from A-Z, 0-9, '-' and '_'.
    let mech_ok = mechanism.len() <= 20
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !mech_ok {
        return Err(CommandError::Syntax("bad SASL mechanism name"));
    }
    let initial_response = match words.next() {
        None => None,
        Some(r) => {
            let base64 = r == "="
                || r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            if !base64 {
                return Err(CommandError::Syntax("initial response must be base64"));
            }
            Some(r.to_string())
        }
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax(
            "expected AUTH mechanism [initial-response]",
        ));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial_response,
    })
}

fn bad_value(keyword: &str) -> CommandError {
    CommandError::BadParameterValue(keyword.to_string())
}

/// A decimal number of at most 20 digits that fits in a u64.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Tracks ESMTP keywords already given, so a repeated one is refused.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn check(&mut self, keyword: &str) -> Result<(), CommandError> {
        if self.0.iter().any(|k| k == keyword) {
            return Err(CommandError::Syntax("duplicate parameter"));
        }
        self.0.push(keyword.to_string());
        Ok(())
    }
}

/// Splits `esmtp-param *(SP esmtp-param)` into upper-cased keywords and raw values
/// (RFC 5321 §4.1.2; values may be UTF-8 per RFC 6531).
fn esmtp_params(s: &str) -> Result<Vec<(String, Option<&str>)>, CommandError> {
    let mut out = Vec::new();
    for param in s.split(' ').filter(|p| !p.is_empty()) {
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        let keyword_ok = keyword
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !keyword_ok {
            return Err(CommandError::Syntax("bad parameter keyword"));
        }
        let keyword = keyword.to_ascii_uppercase();
        if let Some(v) = value {
            let value_ok = !v.is_empty()
                && v.bytes()
                    .all(|b| b >= 0x80 || (33..=126).contains(&b) && b != b'=');
            if !value_ok {
                return Err(CommandError::BadParameterValue(keyword));
            }
        }
        out.push((keyword, value));
    }
    Ok(out)
}

mod address;
#[cfg(test)]
mod tests;
