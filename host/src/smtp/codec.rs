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

    /// True when the local part could route mail elsewhere (`%`-hack, bang path, quoted `@`).
    pub fn has_routing_chars(&self) -> bool {
        self.local.contains(['%', '!', '@'])
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
#[derive(Debug)]
pub struct LineReader {
    max_len: usize,
    allow_bare_lf: bool,
}

impl LineReader {
    /// `max_len` counts the CRLF (RFC 5321 §4.5.3.1.4: at least 512).
    pub fn new(max_len: usize, allow_bare_lf: bool) -> Self {
        LineReader {
            max_len,
            allow_bare_lf,
        }
    }

    /// Takes one line (without its line ending) off the front of `buf`; `Ok(None)` means more
    /// bytes are needed. After `TooLong` the reader has consumed the overlong line through its end,
    /// or keeps discarding until it sees one.
    pub fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, LineError> {
        let _ = (buf, self.max_len, self.allow_bare_lf);
        todo!("codec")
    }
}

/// Parses one command line (without CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let _ = line;
    todo!("codec")
}
