//! SMTP command codec: line framing and command parsing, with no I/O and no tokio.
//!
//! [`LineReader`] cuts command lines out of a byte buffer (need-more-data is `Ok(None)`),
//! [`parse_command`] turns one line into a [`Command`] or a [`CommandError`] that knows its reply.

use bytes::BytesMut;

use super::reply::{Enhanced, Reply};

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
                let decoded = xtext_decode(v)
                    .filter(|d| d.bytes().all(|b| (0x20..=0x7e).contains(&b)))
                    .ok_or_else(|| bad_value("ENVID"))?;
                params.envid = Some(decoded);
            }
            "AUTH" => {
                let v = value.ok_or_else(|| bad_value("AUTH"))?;
                params.auth = Some(xtext_decode(v).ok_or_else(|| bad_value("AUTH"))?);
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
                if !type_ok || addr.is_empty() || xtext_decode(addr).is_none() {
                    return Err(bad_value("ORCPT"));
                }
                // Kept encoded: it is relayed as is, and `xtext_decode` gives the address.
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

/// Decodes RFC 3461 xtext (`+XX` hex escapes; `+` and `=` must be escaped). `None` if malformed
/// or if the result is not UTF-8.
pub fn xtext_decode(s: &str) -> Option<String> {
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

/// RFC 5322 atext (RFC 5321 Atom characters).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Parses `<path>` at the start of `s`: `Ok((None, rest))` for `<>`, else the mailbox with any
/// source route removed. `allow_postmaster` accepts the bare `<postmaster>` of RCPT.
fn parse_path(s: &str, allow_postmaster: bool) -> Result<(Option<Address>, &str), CommandError> {
    use CommandError::BadAddress;
    if s.is_empty() {
        return Err(CommandError::Syntax("missing path"));
    }
    if !s.starts_with('<') {
        return Err(BadAddress("angle brackets required"));
    }
    let end = closing_bracket(s).ok_or(BadAddress("missing closing '>'"))?;
    if end + 1 > MAX_PATH {
        return Err(BadAddress("path too long"));
    }
    let (inner, rest) = (&s[1..end], &s[end + 1..]);
    if inner.is_empty() {
        return Ok((None, rest));
    }
    if allow_postmaster && inner.eq_ignore_ascii_case("postmaster") {
        let addr = Address {
            local: "postmaster".into(),
            domain: String::new(),
        };
        return Ok((Some(addr), rest));
    }
    let mailbox = strip_source_route(inner)?;
    Ok((Some(parse_mailbox(mailbox)?), rest))
}

/// Index of the `>` that closes the path opened at `s[0]`, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (mut i, mut quoted) = (1, false);
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Validates and drops an RFC 5321 source route `@a,@b:` (§4.1.1.3: receivers ignore it).
fn strip_source_route(s: &str) -> Result<&str, CommandError> {
    const WHY: CommandError = CommandError::BadAddress("bad source route");
    if !s.starts_with('@') {
        return Ok(s);
    }
    let mut i = 0;
    loop {
        if s.as_bytes().get(i) != Some(&b'@') {
            return Err(WHY);
        }
        i += 1;
        i += parse_domain(&s[i..], false).map_err(|_| WHY)?;
        match s.as_bytes().get(i) {
            Some(b',') => i += 1,
            Some(b':') => return Ok(&s[i + 1..]),
            _ => return Err(WHY),
        }
    }
}

/// `Local-part "@" ( Domain / address-literal )`, the whole of `s`.
fn parse_mailbox(s: &str) -> Result<Address, CommandError> {
    use CommandError::BadAddress;
    let local_len = parse_local_part(s)?;
    let (local, rest) = s.split_at(local_len);
    if local.len() > MAX_LOCAL {
        return Err(BadAddress("local part too long"));
    }
    let domain = rest
        .strip_prefix('@')
        .ok_or(BadAddress("expected local@domain"))?;
    let n = parse_domain(domain, false).map_err(BadAddress)?;
    if n != domain.len() {
        return Err(if domain[n..].starts_with('@') {
            BadAddress("more than one '@'")
        } else {
            BadAddress("invalid character in domain")
        });
    }
    Ok(Address {
        local: local.to_string(),
        domain: domain.to_string(),
    })
}

/// Length of the dot-string or quoted-string local part at the start of `s`.
fn parse_local_part(s: &str) -> Result<usize, CommandError> {
    use CommandError::BadAddress;
    let b = s.as_bytes();
    if b.first() == Some(&b'"') {
        let mut i = 1;
        loop {
            match b.get(i) {
                None => return Err(BadAddress("unterminated quoted string")),
                Some(b'"') => return Ok(i + 1),
                Some(b'\\') => match b.get(i + 1) {
                    Some(32..=126) => i += 2,
                    _ => return Err(BadAddress("bad quoted pair")),
                },
                // qtextSMTP, plus UTF-8 (RFC 6531).
                Some(&c) if c >= 0x80 || (32..=126).contains(&c) => i += 1,
                Some(_) => return Err(BadAddress("invalid character in quoted string")),
            }
        }
    }
    let n = b
        .iter()
        .position(|&c| !(c >= 0x80 || c == b'.' || is_atext(c)))
        .unwrap_or(b.len());
    let local = &s[..n];
    if local.is_empty() {
        return Err(BadAddress("empty local part"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(BadAddress("misplaced '.' in local part"));
    }
    Ok(n)
}

/// Length of the `Domain` or `address-literal` at the start of `s`; labels are letters, digits,
/// hyphens and UTF-8 (U-labels), plus underscores when `lenient`.
fn parse_domain(s: &str, lenient: bool) -> Result<usize, &'static str> {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        let end = s.find(']').ok_or("unterminated address literal")?;
        let literal = &s[1..end];
        let ok = match strip_prefix_ci(literal, "IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if ok {
            Ok(end + 1)
        } else {
            Err("bad address literal")
        };
    }
    let n = b
        .iter()
        .position(|&c| {
            !(c >= 0x80
                || c.is_ascii_alphanumeric()
                || c == b'-'
                || c == b'.'
                || lenient && c == b'_')
        })
        .unwrap_or(b.len());
    let domain = &s[..n];
    if domain.is_empty() {
        return Err("empty domain");
    }
    if domain.len() > MAX_DOMAIN {
        return Err("domain too long");
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return Err("bad domain label");
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommandError::*;

    fn addr(local: &str, domain: &str) -> Address {
        Address {
            local: local.into(),
            domain: domain.into(),
        }
    }

    fn mail(from: ReversePath) -> Command {
        Command::Mail {
            from,
            params: MailParams::default(),
        }
    }

    fn mail_with(local: &str, domain: &str, params: MailParams) -> Command {
        Command::Mail {
            from: ReversePath::Mailbox(addr(local, domain)),
            params,
        }
    }

    fn rcpt(local: &str, domain: &str) -> Command {
        Command::Rcpt {
            to: addr(local, domain),
            params: RcptParams::default(),
        }
    }

    fn rcpt_with(local: &str, domain: &str, params: RcptParams) -> Command {
        Command::Rcpt {
            to: addr(local, domain),
            params,
        }
    }

    fn ehlo(d: &str) -> Command {
        Command::Ehlo { domain: d.into() }
    }

    fn check(cases: &[(&str, Result<Command, CommandError>)]) {
        for (line, want) in cases {
            assert_eq!(&parse_command(line.as_bytes()), want, "line {line:?}");
        }
    }

    #[test]
    fn simple_verbs() {
        check(&[
            ("DATA", Ok(Command::Data)),
            ("data", Ok(Command::Data)),
            ("DaTa  ", Ok(Command::Data)),
            ("RSET", Ok(Command::Rset)),
            ("QUIT", Ok(Command::Quit)),
            ("STARTTLS", Ok(Command::StartTls)),
            ("starttls", Ok(Command::StartTls)),
            ("NOOP", Ok(Command::Noop)),
            ("NOOP anything at all", Ok(Command::Noop)),
            ("HELP", Ok(Command::Help)),
            ("HELP MAIL", Ok(Command::Help)),
            (
                "VRFY postmaster",
                Ok(Command::Vrfy {
                    arg: "postmaster".into(),
                }),
            ),
            (
                "EXPN list one",
                Ok(Command::Expn {
                    arg: "list one".into(),
                }),
            ),
            ("VRFY", Err(Syntax("argument required"))),
            ("EXPN ", Err(Syntax("argument required"))),
            ("DATA now", Err(Syntax("this command takes no argument"))),
            ("RSET x", Err(Syntax("this command takes no argument"))),
            ("QUIT please", Err(Syntax("this command takes no argument"))),
            ("STARTTLS x", Err(Syntax("this command takes no argument"))),
            ("", Err(Unrecognized)),
            ("   ", Err(Unrecognized)),
            ("FOO", Err(Unrecognized)),
            ("MAILFROM:<a@b>", Err(Unrecognized)),
            ("DAT", Err(Unrecognized)),
            ("DATAX", Err(Unrecognized)),
            ("GET / HTTP/1.1", Err(Unrecognized)),
            (" DATA", Err(Unrecognized)),
        ]);
    }

    #[test]
    fn helo_ehlo() {
        check(&[
            ("EHLO mail.example.com", Ok(ehlo("mail.example.com"))),
            ("ehlo Mail.Example.COM", Ok(ehlo("Mail.Example.COM"))),
            ("EHLO  localhost ", Ok(ehlo("localhost"))),
            ("EHLO [192.0.2.1]", Ok(ehlo("[192.0.2.1]"))),
            ("EHLO [IPv6:2001:db8::1]", Ok(ehlo("[IPv6:2001:db8::1]"))),
            ("EHLO [ipv6:::1]", Ok(ehlo("[ipv6:::1]"))),
            ("EHLO DESKTOP_PC7", Ok(ehlo("DESKTOP_PC7"))),
            ("EHLO bücher.example", Ok(ehlo("bücher.example"))),
            (
                "HELO relay.example.org",
                Ok(Command::Helo {
                    domain: "relay.example.org".into(),
                }),
            ),
            (
                "EHLO",
                Err(Syntax("a domain or address literal is required")),
            ),
            (
                "HELO ",
                Err(Syntax("a domain or address literal is required")),
            ),
            (
                "EHLO a b",
                Err(Syntax("a domain or address literal is required")),
            ),
            (
                "EHLO [192.0.2.300]",
                Err(Syntax("a domain or address literal is required")),
            ),
            (
                "EHLO [IPv6:zz::1]",
                Err(Syntax("a domain or address literal is required")),
            ),
            (
                "EHLO [192.0.2.1",
                Err(Syntax("a domain or address literal is required")),
            ),
            (
                "EHLO a..b",
                Err(Syntax("a domain or address literal is required")),
            ),
            (
                "EHLO -a.b",
                Err(Syntax("a domain or address literal is required")),
            ),
            (
                "EHLO a.b.",
                Err(Syntax("a domain or address literal is required")),
            ),
            (
                "EHLO a@b",
                Err(Syntax("a domain or address literal is required")),
            ),
        ]);
    }

    #[test]
    fn mail_paths() {
        let mb = |l: &str, d: &str| mail(ReversePath::Mailbox(addr(l, d)));
        let utf8 = MailParams {
            smtputf8: true,
            ..Default::default()
        };
        check(&[
            ("MAIL FROM:<a@b.example>", Ok(mb("a", "b.example"))),
            ("mail from:<a@b.example>", Ok(mb("a", "b.example"))),
            ("MAIL FROM: <a@b.example>", Ok(mb("a", "b.example"))),
            ("MAIL  FROM:<a@b.example>", Ok(mb("a", "b.example"))),
            ("MAIL FROM:<>", Ok(mail(ReversePath::Null))),
            ("MAIL FROM: <>", Ok(mail(ReversePath::Null))),
            (
                "MAIL FROM:<First.Last+tag@Example.COM>",
                Ok(mb("First.Last+tag", "Example.COM")),
            ),
            (
                "MAIL FROM:<a!#$%&'*+-/=?^_`{|}~@x.y>",
                Ok(mb("a!#$%&'*+-/=?^_`{|}~", "x.y")),
            ),
            (
                "MAIL FROM:<\"john doe\"@x.y>",
                Ok(mb("\"john doe\"", "x.y")),
            ),
            ("MAIL FROM:<\"a>b\"@x.y>", Ok(mb("\"a>b\"", "x.y"))),
            ("MAIL FROM:<\"a\\\"b\"@x.y>", Ok(mb("\"a\\\"b\"", "x.y"))),
            ("MAIL FROM:<\"\"@x.y>", Ok(mb("\"\"", "x.y"))),
            ("MAIL FROM:<a@[192.0.2.1]>", Ok(mb("a", "[192.0.2.1]"))),
            ("MAIL FROM:<a@[IPv6:::1]>", Ok(mb("a", "[IPv6:::1]"))),
            (
                "MAIL FROM:<@r1.example,@r2.example:u@c.example>",
                Ok(mb("u", "c.example")),
            ),
            (
                "MAIL FROM:<@[192.0.2.1]:u@c.example>",
                Ok(mb("u", "c.example")),
            ),
            ("MAIL FROM:<@[IPv6:::1],@r:u@c>", Ok(mb("u", "c"))),
            (
                "MAIL FROM:<用户@例子.广告> SMTPUTF8",
                Ok(mail_with("用户", "例子.广告", utf8.clone())),
            ),
            ("MAIL FROM:<a@b>SMTPUTF8", Ok(mail_with("a", "b", utf8))),
            // Errors.
            ("MAIL", Err(Syntax("expected FROM:<path>"))),
            ("MAIL TO:<a@b>", Err(Syntax("expected FROM:<path>"))),
            ("MAIL FROM <a@b>", Err(Syntax("expected FROM:<path>"))),
            ("MAIL FROM:", Err(Syntax("missing path"))),
            ("MAIL FROM:a@b", Err(BadAddress("angle brackets required"))),
            ("MAIL FROM:<a@b", Err(BadAddress("missing closing '>'"))),
            ("MAIL FROM:<\"a>@b", Err(BadAddress("missing closing '>'"))),
            ("MAIL FROM:<a@b@c>", Err(BadAddress("more than one '@'"))),
            ("MAIL FROM:<a>", Err(BadAddress("expected local@domain"))),
            (
                "MAIL FROM:<postmaster>",
                Err(BadAddress("expected local@domain")),
            ),
            ("MAIL FROM:<@b>", Err(BadAddress("bad source route"))),
            ("MAIL FROM:<@r1,u@c>", Err(BadAddress("bad source route"))),
            ("MAIL FROM:<@r1:>", Err(BadAddress("empty local part"))),
            ("MAIL FROM:<@:u@c>", Err(BadAddress("bad source route"))),
            ("MAIL FROM:<a@>", Err(BadAddress("empty domain"))),
            (
                "MAIL FROM:<.a@b>",
                Err(BadAddress("misplaced '.' in local part")),
            ),
            (
                "MAIL FROM:<a.@b>",
                Err(BadAddress("misplaced '.' in local part")),
            ),
            (
                "MAIL FROM:<a..b@c>",
                Err(BadAddress("misplaced '.' in local part")),
            ),
            (
                "MAIL FROM:<a b@c>",
                Err(BadAddress("expected local@domain")),
            ),
            (
                "MAIL FROM:<a(x)@c>",
                Err(BadAddress("expected local@domain")),
            ),
            (
                "MAIL FROM:<\"a\tb\"@c>",
                Err(BadAddress("invalid character in quoted string")),
            ),
            ("MAIL FROM:<\"ab@c>", Err(BadAddress("missing closing '>'"))),
            ("MAIL FROM:<a@b..c>", Err(BadAddress("bad domain label"))),
            ("MAIL FROM:<a@-b.c>", Err(BadAddress("bad domain label"))),
            ("MAIL FROM:<a@b-.c>", Err(BadAddress("bad domain label"))),
            ("MAIL FROM:<a@b.c.>", Err(BadAddress("bad domain label"))),
            (
                "MAIL FROM:<a@b_c>",
                Err(BadAddress("invalid character in domain")),
            ),
            (
                "MAIL FROM:<a@[1.2.3]>",
                Err(BadAddress("bad address literal")),
            ),
            (
                "MAIL FROM:<a@[IPv6:1::2::3]>",
                Err(BadAddress("bad address literal")),
            ),
            (
                "MAIL FROM:<a@[x:y]>",
                Err(BadAddress("bad address literal")),
            ),
            (
                "MAIL FROM:<a@[1.2.3.4]x>",
                Err(BadAddress("invalid character in domain")),
            ),
            (
                "MAIL FROM:<用户@例子.广告>",
                Err(BadAddress("non-ASCII address requires SMTPUTF8")),
            ),
        ]);
    }

    #[test]
    fn path_length_limits() {
        let local64 = "l".repeat(64);
        let label = "d".repeat(63);
        // 4 labels of 63 + 3 dots = 255 octets.
        let domain255 = [label.as_str(); 4].join(".");
        assert_eq!(domain255.len(), 255);
        let ok = format!("MAIL FROM:<{local64}@b>");
        assert_eq!(
            parse_command(ok.as_bytes()),
            Ok(mail(ReversePath::Mailbox(addr(&local64, "b"))))
        );
        let long_local = format!("MAIL FROM:<{local64}l@b>");
        assert_eq!(
            parse_command(long_local.as_bytes()),
            Err(BadAddress("local part too long"))
        );
        let quoted = format!("MAIL FROM:<\"{}\"@b>", "q".repeat(63));
        assert_eq!(
            parse_command(quoted.as_bytes()),
            Err(BadAddress("local part too long"))
        );
        let long_label = format!("RCPT TO:<a@{label}d.b>");
        assert_eq!(
            parse_command(long_label.as_bytes()),
            Err(BadAddress("bad domain label"))
        );
        // A path's 256 octets leave no room for a 255-octet domain, but EHLO has no such cap.
        assert_eq!(parse_domain(&domain255, false), Ok(255));
        assert_eq!(
            parse_domain(&format!("x{domain255}"), false),
            Err("domain too long")
        );
        let ehlo255 = format!("EHLO {domain255}");
        assert_eq!(parse_command(ehlo255.as_bytes()), Ok(ehlo(&domain255)));
        let ehlo256 = format!("EHLO x{domain255}");
        assert!(matches!(parse_command(ehlo256.as_bytes()), Err(Syntax(_))));
        // `<` + 64 + `@` + 189 + `>` = 256 octets, the most a path may have.
        let d189 = format!("{}.{}.{}", "d".repeat(63), "d".repeat(63), "d".repeat(61));
        let p = format!("RCPT TO:<{local64}@{d189}>");
        assert_eq!(parse_command(p.as_bytes()), Ok(rcpt(&local64, &d189)));
        let p = format!("RCPT TO:<{local64}@{d189}d>");
        assert_eq!(
            parse_command(p.as_bytes()),
            Err(BadAddress("path too long"))
        );
        // A source route counts towards the path length.
        let route = format!("RCPT TO:<@{label}.{label},@{label}.{label}:a@b>");
        assert_eq!(
            parse_command(route.as_bytes()),
            Err(BadAddress("path too long"))
        );
    }

    #[test]
    fn rcpt_paths() {
        check(&[
            ("RCPT TO:<b@c.example>", Ok(rcpt("b", "c.example"))),
            ("rcpt to: <b@c.example>", Ok(rcpt("b", "c.example"))),
            ("RCPT TO:<postmaster>", Ok(rcpt("postmaster", ""))),
            ("RCPT TO:<PostMaster>", Ok(rcpt("postmaster", ""))),
            (
                "RCPT TO:<Postmaster@c.example>",
                Ok(rcpt("Postmaster", "c.example")),
            ),
            ("RCPT TO:<@a,@b:user@c>", Ok(rcpt("user", "c"))),
            ("RCPT TO:<用户@例子.广告>", Ok(rcpt("用户", "例子.广告"))),
            ("RCPT TO:<>", Err(BadAddress("null recipient"))),
            ("RCPT TO:", Err(Syntax("missing path"))),
            ("RCPT FROM:<a@b>", Err(Syntax("expected TO:<path>"))),
            ("RCPT TO:<user@a@b>", Err(BadAddress("more than one '@'"))),
            ("RCPT TO:<user>", Err(BadAddress("expected local@domain"))),
            ("RCPT TO:b@c", Err(BadAddress("angle brackets required"))),
        ]);
    }

    #[test]
    fn mail_params() {
        let p = |params: MailParams| mail_with("a", "b", params);
        check(&[
            (
                "MAIL FROM:<a@b> SIZE=12345",
                Ok(p(MailParams {
                    size: Some(12345),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b> size=0",
                Ok(p(MailParams {
                    size: Some(0),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b> SIZE=18446744073709551615",
                Ok(p(MailParams {
                    size: Some(u64::MAX),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b> BODY=7BIT",
                Ok(p(MailParams {
                    body: Some(BodyType::SevenBit),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b> body=8bitmime",
                Ok(p(MailParams {
                    body: Some(BodyType::EightBitMime),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b> RET=FULL",
                Ok(p(MailParams {
                    ret: Some(DsnReturn::Full),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b> RET=hdrs",
                Ok(p(MailParams {
                    ret: Some(DsnReturn::Headers),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b> ENVID=QQ314159+2B+3Dx",
                Ok(p(MailParams {
                    envid: Some("QQ314159+=x".into()),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b> AUTH=<>",
                Ok(p(MailParams {
                    auth: Some("<>".into()),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b> AUTH=e+2Bf@example.com",
                Ok(p(MailParams {
                    auth: Some("e+f@example.com".into()),
                    ..Default::default()
                })),
            ),
            (
                "MAIL FROM:<a@b>  SIZE=1   BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x AUTH=<> ",
                Ok(p(MailParams {
                    size: Some(1),
                    body: Some(BodyType::EightBitMime),
                    smtputf8: true,
                    ret: Some(DsnReturn::Headers),
                    envid: Some("x".into()),
                    auth: Some("<>".into()),
                })),
            ),
            (
                "MAIL FROM:<> SIZE=10",
                Ok(Command::Mail {
                    from: ReversePath::Null,
                    params: MailParams {
                        size: Some(10),
                        ..Default::default()
                    },
                }),
            ),
            // Errors.
            (
                "MAIL FROM:<a@b> SIZE",
                Err(BadParameterValue("SIZE".into())),
            ),
            (
                "MAIL FROM:<a@b> SIZE=",
                Err(BadParameterValue("SIZE".into())),
            ),
            (
                "MAIL FROM:<a@b> SIZE=-1",
                Err(BadParameterValue("SIZE".into())),
            ),
            (
                "MAIL FROM:<a@b> SIZE=1k",
                Err(BadParameterValue("SIZE".into())),
            ),
            (
                "MAIL FROM:<a@b> SIZE=+1",
                Err(BadParameterValue("SIZE".into())),
            ),
            (
                "MAIL FROM:<a@b> SIZE=18446744073709551616",
                Err(BadParameterValue("SIZE".into())),
            ),
            (
                "MAIL FROM:<a@b> SIZE=1 SIZE=2",
                Err(Syntax("duplicate parameter")),
            ),
            (
                "MAIL FROM:<a@b> SIZE=1 size=1",
                Err(Syntax("duplicate parameter")),
            ),
            (
                "MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8",
                Err(Syntax("duplicate parameter")),
            ),
            (
                "MAIL FROM:<a@b> BODY=8BIT",
                Err(BadParameterValue("BODY".into())),
            ),
            (
                "MAIL FROM:<a@b> BODY",
                Err(BadParameterValue("BODY".into())),
            ),
            (
                "MAIL FROM:<a@b> BODY=BINARYMIME",
                Err(UnsupportedParameter("BODY=BINARYMIME".into())),
            ),
            (
                "MAIL FROM:<a@b> SMTPUTF8=yes",
                Err(BadParameterValue("SMTPUTF8".into())),
            ),
            (
                "MAIL FROM:<a@b> RET=ALL",
                Err(BadParameterValue("RET".into())),
            ),
            ("MAIL FROM:<a@b> RET", Err(BadParameterValue("RET".into()))),
            (
                "MAIL FROM:<a@b> ENVID=a+2",
                Err(BadParameterValue("ENVID".into())),
            ),
            (
                "MAIL FROM:<a@b> ENVID=a+ZZb",
                Err(BadParameterValue("ENVID".into())),
            ),
            (
                "MAIL FROM:<a@b> ENVID=a+0Ab",
                Err(BadParameterValue("ENVID".into())),
            ),
            (
                "MAIL FROM:<a@b> ENVID=a+C3+A9",
                Err(BadParameterValue("ENVID".into())),
            ),
            (
                "MAIL FROM:<a@b> ENVID=é",
                Err(BadParameterValue("ENVID".into())),
            ),
            (
                "MAIL FROM:<a@b> ENVID",
                Err(BadParameterValue("ENVID".into())),
            ),
            (
                "MAIL FROM:<a@b> AUTH",
                Err(BadParameterValue("AUTH".into())),
            ),
            (
                "MAIL FROM:<a@b> AUTH=a+",
                Err(BadParameterValue("AUTH".into())),
            ),
            (
                "MAIL FROM:<a@b> NOTIFY=NEVER",
                Err(UnsupportedParameter("NOTIFY".into())),
            ),
            (
                "MAIL FROM:<a@b> ORCPT=rfc822;a@b",
                Err(UnsupportedParameter("ORCPT".into())),
            ),
            (
                "MAIL FROM:<a@b> X-FOO",
                Err(UnsupportedParameter("X-FOO".into())),
            ),
            (
                "MAIL FROM:<a@b> x-foo=bar",
                Err(UnsupportedParameter("X-FOO".into())),
            ),
            ("MAIL FROM:<a@b> -X", Err(Syntax("bad parameter keyword"))),
            ("MAIL FROM:<a@b> =1", Err(Syntax("bad parameter keyword"))),
            (
                "MAIL FROM:<a@b> SI_ZE=1",
                Err(Syntax("bad parameter keyword")),
            ),
            (
                "MAIL FROM:<a@b> SIZE=1=2",
                Err(BadParameterValue("SIZE".into())),
            ),
            (
                "MAIL FROM:<a@b>\tSIZE=1",
                Err(Syntax("bad parameter keyword")),
            ),
        ]);
        let long_envid = format!("MAIL FROM:<a@b> ENVID={}", "e".repeat(101));
        assert_eq!(
            parse_command(long_envid.as_bytes()),
            Err(BadParameterValue("ENVID".into()))
        );
        let envid = format!("MAIL FROM:<a@b> ENVID={}", "e".repeat(100));
        assert!(parse_command(envid.as_bytes()).is_ok());
    }

    #[test]
    fn rcpt_params() {
        let notify = |v: &[&str]| RcptParams {
            notify: Some(v.iter().map(|s| s.to_string()).collect()),
            orcpt: None,
        };
        check(&[
            (
                "RCPT TO:<a@b> NOTIFY=NEVER",
                Ok(rcpt_with("a", "b", notify(&["NEVER"]))),
            ),
            (
                "RCPT TO:<a@b> notify=success,Failure,DELAY",
                Ok(rcpt_with(
                    "a",
                    "b",
                    notify(&["SUCCESS", "FAILURE", "DELAY"]),
                )),
            ),
            (
                "RCPT TO:<a@b> ORCPT=rfc822;a+2Bb@c.example",
                Ok(rcpt_with(
                    "a",
                    "b",
                    RcptParams {
                        notify: None,
                        orcpt: Some("rfc822;a+2Bb@c.example".into()),
                    },
                )),
            ),
            (
                "RCPT TO:<a@b> NOTIFY=FAILURE ORCPT=rfc822;x@y",
                Ok(rcpt_with(
                    "a",
                    "b",
                    RcptParams {
                        notify: Some(vec!["FAILURE".into()]),
                        orcpt: Some("rfc822;x@y".into()),
                    },
                )),
            ),
            (
                "RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS",
                Err(BadParameterValue("NOTIFY".into())),
            ),
            (
                "RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS",
                Err(BadParameterValue("NOTIFY".into())),
            ),
            (
                "RCPT TO:<a@b> NOTIFY=ALWAYS",
                Err(BadParameterValue("NOTIFY".into())),
            ),
            (
                "RCPT TO:<a@b> NOTIFY=SUCCESS,",
                Err(BadParameterValue("NOTIFY".into())),
            ),
            (
                "RCPT TO:<a@b> NOTIFY",
                Err(BadParameterValue("NOTIFY".into())),
            ),
            (
                "RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER",
                Err(Syntax("duplicate parameter")),
            ),
            (
                "RCPT TO:<a@b> ORCPT=a@b",
                Err(BadParameterValue("ORCPT".into())),
            ),
            (
                "RCPT TO:<a@b> ORCPT=rfc822;",
                Err(BadParameterValue("ORCPT".into())),
            ),
            (
                "RCPT TO:<a@b> ORCPT=;a@b",
                Err(BadParameterValue("ORCPT".into())),
            ),
            (
                "RCPT TO:<a@b> ORCPT=rfc822;a+b",
                Err(BadParameterValue("ORCPT".into())),
            ),
            (
                "RCPT TO:<a@b> ORCPT=rf(c;a",
                Err(BadParameterValue("ORCPT".into())),
            ),
            (
                "RCPT TO:<a@b> ORCPT=rfc 822;a",
                Err(Syntax("bad parameter keyword")),
            ),
            (
                "RCPT TO:<a@b> ORCPT=x;a ORCPT=x;b",
                Err(Syntax("duplicate parameter")),
            ),
            (
                "RCPT TO:<a@b> SIZE=10",
                Err(UnsupportedParameter("SIZE".into())),
            ),
            (
                "RCPT TO:<a@b> SMTPUTF8",
                Err(UnsupportedParameter("SMTPUTF8".into())),
            ),
        ]);
    }

    #[test]
    fn bdat_and_auth() {
        let auth = |m: &str, i: Option<&str>| Command::Auth {
            mechanism: m.into(),
            initial_response: i.map(String::from),
        };
        check(&[
            (
                "BDAT 0",
                Ok(Command::Bdat {
                    size: 0,
                    last: false,
                }),
            ),
            (
                "BDAT 1000 LAST",
                Ok(Command::Bdat {
                    size: 1000,
                    last: true,
                }),
            ),
            (
                "bdat 12 last",
                Ok(Command::Bdat {
                    size: 12,
                    last: true,
                }),
            ),
            (
                "BDAT  7   LAST ",
                Ok(Command::Bdat {
                    size: 7,
                    last: true,
                }),
            ),
            ("BDAT", Err(Syntax("BDAT needs a chunk size"))),
            ("BDAT LAST", Err(Syntax("bad BDAT chunk size"))),
            ("BDAT -1", Err(Syntax("bad BDAT chunk size"))),
            (
                "BDAT 99999999999999999999",
                Err(Syntax("bad BDAT chunk size")),
            ),
            ("BDAT 1 FIRST", Err(Syntax("expected BDAT size [LAST]"))),
            ("BDAT 1 LAST x", Err(Syntax("expected BDAT size [LAST]"))),
            ("AUTH PLAIN", Ok(auth("PLAIN", None))),
            (
                "auth plain AGFsaWNlAHNlY3JldA==",
                Ok(auth("PLAIN", Some("AGFsaWNlAHNlY3JldA=="))),
            ),
            ("AUTH LOGIN dXNlcg==", Ok(auth("LOGIN", Some("dXNlcg==")))),
            ("AUTH PLAIN =", Ok(auth("PLAIN", Some("=")))),
            ("AUTH SCRAM-SHA-256", Ok(auth("SCRAM-SHA-256", None))),
            ("AUTH", Err(Syntax("AUTH needs a mechanism"))),
            ("AUTH PL@IN", Err(Syntax("bad SASL mechanism name"))),
            (
                "AUTH ABCDEFGHIJKLMNOPQRSTU",
                Err(Syntax("bad SASL mechanism name")),
            ),
            (
                "AUTH PLAIN a*b",
                Err(Syntax("initial response must be base64")),
            ),
            (
                "AUTH PLAIN abc def",
                Err(Syntax("expected AUTH mechanism [initial-response]")),
            ),
        ]);
    }

    #[test]
    fn raw_bytes() {
        for line in [
            &b"NOOP\0"[..],
            b"NOOP\r",
            b"MAIL FROM:<a@b>\rRCPT TO:<c@d>",
            b"EHLO a\nb",
            b"MAIL FROM:<\xff@b>",
            b"\xc3",
        ] {
            assert!(
                matches!(parse_command(line), Err(Syntax(_))),
                "{line:?} -> {:?}",
                parse_command(line)
            );
        }
    }

    #[test]
    fn routing_chars() {
        for (line, routing) in [
            ("RCPT TO:<user@b>", false),
            ("RCPT TO:<user%c@b>", true),
            ("RCPT TO:<c!user@b>", true),
            ("RCPT TO:<\"user@c\"@b>", true),
            ("RCPT TO:<\"user%c\"@b>", true),
            ("RCPT TO:<\"user c\"@b>", false),
            ("RCPT TO:<@x,@y:user@b>", false),
            ("RCPT TO:<postmaster>", false),
        ] {
            let Ok(Command::Rcpt { to, .. }) = parse_command(line.as_bytes()) else {
                panic!("{line} did not parse");
            };
            assert_eq!(to.has_routing_chars(), routing, "{line}");
        }
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("abc"), Some("abc".into()));
        assert_eq!(xtext_decode("a+2Bb+3dc"), Some("a+b=c".into()));
        assert_eq!(xtext_decode(""), Some(String::new()));
        for bad in ["+", "+4", "+G0", "a=b", "a b", "é", "+FF"] {
            assert_eq!(xtext_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_replies() {
        assert_eq!(Unrecognized.reply().code, 500);
        assert_eq!(Syntax("x").reply().code, 501);
        assert_eq!(BadAddress("x").reply().code, 553);
        assert_eq!(UnsupportedParameter("X".into()).reply().code, 555);
        assert_eq!(BadParameterValue("X".into()).reply().code, 501);
        assert_eq!(LineError::TooLong(512).reply().code, 500);
        assert_eq!(LineError::BareLf.reply().code, 500);
    }

    /// Feeds `input` in pieces of `step` octets (the whole input at once when 0) and collects
    /// every line or error.
    fn frame(
        reader: &mut LineReader,
        input: &[u8],
        step: usize,
    ) -> Vec<Result<Vec<u8>, LineError>> {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let step = if step == 0 { input.len().max(1) } else { step };
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match reader.next_line(&mut buf) {
                    Ok(Some(line)) => got.push(Ok(line.to_vec())),
                    Ok(None) => break,
                    Err(e) => got.push(Err(e)),
                }
            }
            assert!(buf.len() <= 16, "an overlong line must not be buffered");
        }
        got
    }

    #[test]
    fn line_framing() {
        type Want<'a> = Vec<Result<&'a [u8], LineError>>;
        let too_long = || Err(LineError::TooLong(16));
        // max_len 16: 14 octets of text + CRLF fit.
        let cases: Vec<(&[u8], bool, Want)> = vec![
            (b"NOOP\r\n", false, vec![Ok(b"NOOP")]),
            (
                b"NOOP\r\nRSET\r\nQUIT\r\n",
                false,
                vec![Ok(b"NOOP"), Ok(b"RSET"), Ok(b"QUIT")],
            ),
            (b"NOOP\r\nRSET", false, vec![Ok(b"NOOP")]),
            (b"\r\n", false, vec![Ok(b"")]),
            (b"NOOP\n", false, vec![Err(LineError::BareLf)]),
            (
                b"NOOP\nRSET\r\n",
                false,
                vec![Err(LineError::BareLf), Ok(b"RSET")],
            ),
            (b"NOOP\nRSET\r\n", true, vec![Ok(b"NOOP"), Ok(b"RSET")]),
            (b"NO\rOP\r\n", false, vec![Ok(b"NO\rOP")]),
            (b"\r\r\n", false, vec![Ok(b"\r")]),
            (b"01234567890123\r\n", false, vec![Ok(b"01234567890123")]),
            (b"012345678901234\r\n", false, vec![too_long()]),
            (b"012345678901234\n", true, vec![too_long()]),
            (b"01234567890123\n", true, vec![Ok(b"01234567890123")]),
            (
                b"0123456789012345678\r\nNOOP\r\n",
                false,
                vec![too_long(), Ok(b"NOOP")],
            ),
            (
                b"0123456789012345678901234567890123456789\r\nNOOP\r\n",
                false,
                vec![too_long(), Ok(b"NOOP")],
            ),
            (
                b"0123456789012345678901234567890123456789\nNOOP\r\n",
                false,
                vec![too_long(), Ok(b"NOOP")],
            ),
            (b"01234567890123456789", false, vec![]),
            (
                b"aaaaaaaaaaaaaaaaaaaa\r\nbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\nok\r\n",
                false,
                vec![too_long(), too_long(), Ok(b"ok")],
            ),
        ];
        for (input, bare_lf, want) in cases {
            let want: Vec<Result<Vec<u8>, LineError>> =
                want.into_iter().map(|r| r.map(<[u8]>::to_vec)).collect();
            for step in [0, 1, 2, 3, 5, 7, 16, 17] {
                let got = frame(&mut LineReader::new(16, bare_lf), input, step);
                assert_eq!(
                    got,
                    want,
                    "input {:?} step {step}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn discarding_survives_many_feeds_and_reset() {
        let mut reader = LineReader::new(16, false);
        let mut buf = BytesMut::new();
        for _ in 0..1000 {
            buf.extend_from_slice(b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
            assert_eq!(reader.next_line(&mut buf), Ok(None));
            assert!(buf.is_empty());
        }
        buf.extend_from_slice(b"x\r\nQUIT\r\n");
        assert_eq!(reader.next_line(&mut buf), Err(LineError::TooLong(16)));
        assert_eq!(reader.next_line(&mut buf).unwrap().unwrap(), &b"QUIT"[..]);

        // STARTTLS drops the buffer; reset forgets the half-discarded line.
        buf.extend_from_slice(&[b'y'; 40]);
        assert_eq!(reader.next_line(&mut buf), Ok(None));
        buf.clear();
        reader.reset();
        buf.extend_from_slice(b"EHLO x\r\n");
        assert_eq!(reader.next_line(&mut buf).unwrap().unwrap(), &b"EHLO x"[..]);
    }

    #[test]
    fn pipelined_commands_parse_in_order() {
        let input = b"EHLO client.example\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<c@d>\r\n\
                      RCPT TO:<postmaster>\r\nDATA\r\n";
        let mut reader = LineReader::new(512, false);
        let mut buf = BytesMut::from(&input[..]);
        let mut cmds = Vec::new();
        while let Some(line) = reader.next_line(&mut buf).unwrap() {
            cmds.push(parse_command(&line).unwrap());
        }
        assert_eq!(
            cmds,
            vec![
                ehlo("client.example"),
                mail_with(
                    "a",
                    "b",
                    MailParams {
                        size: Some(10),
                        ..Default::default()
                    }
                ),
                rcpt("c", "d"),
                rcpt("postmaster", ""),
                Command::Data,
            ]
        );
        assert!(buf.is_empty());
    }
}
