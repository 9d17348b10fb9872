//! Postfix's `smtp-sink` as a downstream server, dumping each transaction to a file (`-d`).
//!
//! smtp-sink cannot say which port it got, so it binds `127.0.0.1:0` and the harness asks
//! the kernel: the listening socket among the child's open file descriptors
//! (`/proc/<pid>/fd` against `/proc/<pid>/net/tcp`). The port is the child's from the moment
//! it exists. A dump file is complete once smtp-sink no longer has it open (it keeps one
//! open per transaction in progress), which the same `/proc/<pid>/fd` tells.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Delivered, Downstream};
use crate::process::{is_root, listening_addr, ChildGuard};

pub struct SmtpSink {
    child: ChildGuard,
    addr: SocketAddr,
    /// The dump directory, canonical: as `/proc/<pid>/fd` names the files in it.
    dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// A sink on 127.0.0.1 that accepts up to `backlog` pending connections.
    pub fn start(backlog: u32) -> SmtpSink {
        let bin = ["/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("Postfix smtp-sink is installed (apt-get install postfix)");
        let dir = super::dump_dir();
        let mut cmd = Command::new(bin);
        if is_root() {
            // smtp-sink will not run as root; it drops to `-u`, who must write the dumps.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("open the dump directory to the sink's user");
            cmd.args(["-u", "nobody"]);
        }
        let canonical = dir
            .path()
            .canonicalize()
            .expect("the dump directory exists");
        let template = format!("{}/%H%M%S.", canonical.display());
        let child = ChildGuard(
            cmd.args(["-d", &template, "127.0.0.1:0", &backlog.to_string()])
                .spawn()
                .expect("start smtp-sink"),
        );
        let pid = child.0.id();
        let mut child = child;
        let mut addr = None;
        crate::wait_for("smtp-sink to listen", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("smtp-sink exited with {status}");
            }
            addr = listening_addr(pid);
            addr.is_some()
        });
        SmtpSink {
            child,
            addr: addr.expect("waited for it"),
            dir: canonical,
            _dir: dir,
        }
    }

    /// The dump files smtp-sink still writes.
    fn open_files(&self) -> HashSet<PathBuf> {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.0.id()))
            .map(|fds| {
                fds.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Downstream for SmtpSink {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn messages(&self) -> Vec<Delivered> {
        // Listed before the open files are asked for: a dump listed and not open then is
        // complete, even one that was begun a moment before the listing.
        let dumps = super::files_by_age(&self.dir, None);
        let open = self.open_files();
        dumps
            .into_iter()
            .filter(|path| !open.contains(path))
            .filter_map(|path| std::fs::read(&path).ok())
            .map(|dump| parse_dump(&dump))
            .collect()
    }
}

/// One dump: smtp-sink's `X-…` fields (client, HELO, MAIL and RCPT arguments), its own
/// `Received:` field, then the message with LF line ends.
fn parse_dump(dump: &[u8]) -> Delivered {
    let mut mail_args = String::new();
    let mut rcpt_args = Vec::new();
    let mut fields = serde_json::Map::new();
    let mut rest = dump;
    // The fields before smtp-sink's `Received:`, which is the first one of the dump.
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        if line.starts_with("Received:") {
            break;
        }
        rest = &rest[end + 1..];
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        match name {
            "X-Mail-Args" => mail_args = value.to_string(),
            "X-Rcpt-Args" => rcpt_args.push(value.to_string()),
            "X-Helo-Args" => {
                fields.insert("helo".into(), value.into());
            }
            "X-Client-Addr" => {
                fields.insert("client_addr".into(), value.into());
            }
            _ => {}
        }
    }
    // Skip the `Received:` field with its folded lines.
    let mut first = true;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let folded = rest.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !first && !folded {
            break;
        }
        first = false;
        rest = &rest[end + 1..];
    }
    let address = |args: &str| -> String {
        let word = args.split_whitespace().next().unwrap_or_default();
        word.trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    };
    let mail_from = address(&mail_args);
    let rcpt_tos = rcpt_args.iter().map(|a| address(a)).collect();
    fields.insert("mail_args".into(), mail_args.into());
    fields.insert("rcpt_args".into(), rcpt_args.into());
    Delivered {
        mail_from,
        rcpt_tos,
        data: rest.to_vec(),
        meta: fields.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_dump() {
        let dump = b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: relay.test\n\
X-Mail-Args: <a@x.test> BODY=8BITMIME\nX-Rcpt-Args: <b@y.test> NOTIFY=NEVER\nX-Rcpt-Args: <c@y.test>\n\
Received: from relay.test ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with ESMTP id 5874232b;\n\
\tTue,  1 Dec 2026 19:58:04 +0000 (UTC)\nReceived: by relay.test\nSubject: hi\n\nbody\n.dot\n\n";
        let d = parse_dump(dump);
        assert_eq!(d.mail_from, "a@x.test");
        assert_eq!(d.rcpt_tos, ["b@y.test", "c@y.test"]);
        assert_eq!(d.meta["mail_args"], "<a@x.test> BODY=8BITMIME");
        assert_eq!(d.meta["rcpt_args"][0], "<b@y.test> NOTIFY=NEVER");
        assert_eq!(d.meta["helo"], "relay.test");
        assert_eq!(
            d.text(),
            "Received: by relay.test\nSubject: hi\n\nbody\n.dot\n\n"
        );
    }

    #[test]
    fn the_null_sender_is_empty() {
        let d = parse_dump(b"X-Mail-Args: <>\nX-Rcpt-Args: <b@y.test>\nReceived: x\n\nbody\n");
        assert_eq!(d.mail_from, "");
        assert_eq!(d.text(), "\nbody\n");
    }
}
