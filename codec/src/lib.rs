//! The SMTP wire format, as pure functions and state machines over byte slices.
//!
//! Layout:
//! - [`command`]: command line framing ([`command::LineReader`]) and parsing
//!   ([`command::parse_command`]) into typed commands, mailboxes and ESMTP parameters.
//! - [`data`]: the DATA reader (end of data, dot-unstuffing, bare CR/LF, line and size limits),
//!   the BDAT chunk checker and, for sending, [`data::encode_data`] (CRLF, dot-stuffing).
//! - [`reply`]: replies as typed values ([`reply::Reply`], [`reply::Enhanced`]), written for the
//!   server side and parsed ([`reply::parse_reply`]) for the client.
//! - [`xtext`]: the RFC 3461 encoding of DSN parameters, both ways.
//! - [`message`]: where a message's header section ends ([`message::header_end`]).
//! - [`dsn`]: delivery status notifications (RFC 3464) rendered from plain values.
//!
//! Nothing here reads a socket, takes a lock or knows a policy: callers feed bytes and get
//! values or errors that carry their SMTP reply. The relay's session and SMTP client supply the
//! I/O and the decisions; the fuzz targets (`fuzz/`) drive the same code on arbitrary input.

pub mod command;
pub mod data;
pub mod dsn;
pub mod message;
pub mod reply;
pub mod xtext;
