//! `wasmrelay sink`, the relay's own catch-all server, as a downstream server. It binds
//! `127.0.0.1:0` and logs `sink listening address=…`, which is where the port comes from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Delivered, Downstream};
use crate::process::ChildGuard;
use crate::relay::parse_listening;

pub struct WasmrelaySink {
    _child: ChildGuard,
    addr: SocketAddr,
    messages: PathBuf,
    _dir: tempfile::TempDir,
}

impl WasmrelaySink {
    pub fn start() -> WasmrelaySink {
        let dir = super::dump_dir();
        let messages = dir.path().join("messages");
        let log_path = dir.path().join("sink.log");
        let log = std::fs::File::create(&log_path).expect("create the sink's log");
        let mut child = ChildGuard(
            Command::new(crate::binary())
                .args(["sink", "--listen", "127.0.0.1:0", "--dir"])
                .arg(&messages)
                .env("WASMRELAY_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start wasmrelay sink"),
        );
        let mut addr = None;
        crate::wait_for("the sink to listen", Duration::from_secs(30), || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("wasmrelay sink exited with {status}: {log}");
            }
            addr = log.lines().find_map(parse_listening).map(|l| l.addr);
            addr.is_some()
        });
        WasmrelaySink {
            _child: child,
            addr: addr.expect("waited for it"),
            messages,
            _dir: dir,
        }
    }

    /// Where the sink writes `<id>.eml` and `<id>.json`.
    pub fn dir(&self) -> &Path {
        &self.messages
    }
}

impl Downstream for WasmrelaySink {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `meta` is the envelope as the sink wrote it (`mail_from` is null for the null
    /// sender, `recipients[].address`).
    fn messages(&self) -> Vec<Delivered> {
        // The sink writes `<id>.eml` before `<id>.json`: a visible .json is a whole message.
        super::files_by_age(&self.messages, Some("json"))
            .into_iter()
            .map(|json| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&json).expect("read .json"))
                        .expect("the sink writes JSON");
                let rcpt_tos = meta["recipients"]
                    .as_array()
                    .expect("recipients")
                    .iter()
                    .map(|r| r["address"].as_str().expect("an address").to_string())
                    .collect();
                Delivered {
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_string(),
                    rcpt_tos,
                    data: std::fs::read(json.with_extension("eml")).expect("read .eml"),
                    meta,
                }
            })
            .collect()
    }
}
