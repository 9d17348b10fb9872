//! The servers the relay delivers to, each a real SMTP server on loopback that writes what
//! it receives to a directory of its own, read back through one API: [`Downstream`].
//!
//! - [`Aiosmtpd`]: Python's aiosmtpd (`scripts/aiosmtpd_sink.py`); can tempfail DATA, reject
//!   recipients, require STARTTLS and AUTH, and records the peer port, TLS and AUTH.
//! - [`SmtpSink`]: Postfix's `smtp-sink`; records the MAIL and RCPT parameters as sent.
//! - [`WasmrelaySink`]: `wasmrelay sink`, the relay's own catch-all server.
//! - [`RawSink`]: a server on the bare protocol (`scripts/raw_sink.py`): a reply after DATA
//!   of the test's choosing, STARTTLS with any certificate, AUTH that accepts and logs any
//!   credentials, the RCPT lines as sent, IPv6, a port held for it in advance.

mod aiosmtpd;
mod raw_sink;
mod smtp_sink;
mod wasmrelay_sink;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use aiosmtpd::{Aiosmtpd, AiosmtpdBuilder};
pub use raw_sink::{AuthAttempt, RawSink, RawSinkBuilder};
pub use smtp_sink::SmtpSink;
pub use wasmrelay_sink::WasmrelaySink;

/// One message as a downstream server received it.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The envelope sender; the null sender is "".
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The message as the server stored it (after dot-unstuffing; smtp-sink writes LF line
    /// ends).
    pub data: Vec<u8>,
    /// What this kind of server records besides: aiosmtpd's `peer_port`, `tls`, `auth` and
    /// `mail_options`; the `wasmrelay sink` envelope; smtp-sink's `mail_args`, `rcpt_args`,
    /// `helo` and `client_addr`; the raw sink's `rcpt_lines` (each RCPT command as sent),
    /// `conn` (a connection number) and `tls`.
    pub meta: serde_json::Value,
}

impl Delivered {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// A downstream SMTP server started by the test, stopped when dropped.
pub trait Downstream {
    fn addr(&self) -> SocketAddr;

    /// Every complete message received so far, in arrival order.
    fn messages(&self) -> Vec<Delivered>;

    fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Waits until at least `n` messages have arrived and returns all of them.
    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivered> {
        let mut got = Vec::new();
        crate::wait_for(
            &format!("{n} message(s) at {}", self.addr()),
            timeout,
            || {
                got = self.messages();
                got.len() >= n
            },
        );
        got
    }

    /// Waits until a message with the header line `Subject: {subject}` has arrived and
    /// returns it as text.
    fn wait_subject(&self, subject: &str, timeout: Duration) -> String {
        let needle = format!("\r\nSubject: {subject}\r\n");
        let mut found = None;
        crate::wait_for(&format!("{subject:?} at {}", self.addr()), timeout, || {
            found = self
                .messages()
                .into_iter()
                .map(|m| m.text())
                .find(|m| m.contains(&needle));
            found.is_some()
        });
        found.expect("found once the wait ends")
    }

    /// [`wait_for`](Downstream::wait_for) for async tests: the runtime keeps running.
    fn wait_for_async(
        &self,
        n: usize,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Vec<Delivered>> + Send
    where
        Self: Sync,
    {
        async move {
            let what = format!("{n} message(s) at {}", self.addr());
            crate::wait_for_async(&what, timeout, || {
                let got = self.messages();
                std::future::ready((got.len() >= n).then_some(got))
            })
            .await
        }
    }
}

/// The files in `dir` with extension `ext`, oldest first (modification time, then name).
fn files_by_age(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| match ext {
            Some(ext) => p.extension().is_some_and(|x| x == ext),
            None => p.is_file(),
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// The messages a Python server wrote into `dir` as `<n>.eml` + `<n>.json` pairs, in the
/// order of `n`. Each `.json` is renamed into place after its `.eml` is written: a visible
/// `.json` is a whole message. It holds `mail_from` (`<>` or "" for the null sender) and
/// `rcpt_tos`, and is kept as [`Delivered::meta`].
fn numbered_dumps(dir: &Path) -> Vec<Delivered> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        // `.<n>.json` is the one being written; it becomes `<n>.json` when whole.
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|json| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&json).expect("read .json"))
                    .expect("the server writes JSON");
            let mail_from = match meta["mail_from"].as_str().expect("mail_from") {
                "<>" => String::new(),
                s => s.to_string(),
            };
            let rcpt_tos = meta["rcpt_tos"]
                .as_array()
                .expect("rcpt_tos")
                .iter()
                .map(|r| r.as_str().expect("a recipient").to_string())
                .collect();
            Delivered {
                mail_from,
                rcpt_tos,
                data: std::fs::read(json.with_extension("eml")).expect("read .eml"),
                meta,
            }
        })
        .collect()
}

/// A temporary directory the downstream server (maybe running as another user) writes to.
fn dump_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}
