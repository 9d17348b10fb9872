//! The relay binary, `wasmrelay serve`, as a child process.
//!
//! Listeners in a test config bind `127.0.0.1:0`; the relay logs `listening address=…
//! listener=NAME` once per listener with the address it got, and that line is how the
//! harness learns the ports: no other process can hold them in between.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use wasmrelay::spool::{Envelope, RecoveryReport, Spool};

use crate::process::{signal, ChildGuard};

/// How long a relay may take to listen: compiling plugins with an empty cache is slow.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running relay. Dropping it kills it (SIGKILL); if the test is failing, its log is
/// printed first, since that says what the relay saw.
pub struct Relay {
    child: ChildGuard,
    config: PathBuf,
    log_path: PathBuf,
    /// Where this run's part of the log starts (a restart appends to the same file).
    log_start: usize,
    listening: Vec<Listening>,
}

/// A listener as the relay reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listening {
    pub name: String,
    pub addr: SocketAddr,
}

impl Relay {
    /// Writes `config` to `dir/relay.toml` and [`start_file`](Relay::start_file)s it.
    pub fn start(dir: &Path, config: &str) -> Relay {
        let path = dir.join("relay.toml");
        write_config(&path, config);
        Relay::start_file(&path)
    }

    /// Starts `wasmrelay serve` on `config` and waits until every listener is up.
    pub fn start_file(config: &Path) -> Relay {
        let mut relay = Relay::spawn(config);
        relay.wait_listening();
        relay
    }

    /// Starts `wasmrelay serve` on `config` without waiting for anything. Its log (stderr,
    /// level info) goes to `config` with the extension `log`.
    pub fn spawn(config: &Path) -> Relay {
        let log_path = config.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the relay's log file");
        let log_start = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let child = Command::new(crate::binary())
            .args(["serve", "--config"])
            .arg(config)
            .env("WASMRELAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wasmrelay serve");
        Relay {
            child: ChildGuard(child),
            config: config.to_path_buf(),
            log_path,
            log_start,
            listening: Vec::new(),
        }
    }

    /// Waits until the relay has logged a `listening` line for each `[[listeners]]` entry of
    /// its config; panics with the log if it exits or takes too long.
    pub fn wait_listening(&mut self) {
        let expected = listener_count(&self.config);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.listening = self.log().lines().filter_map(parse_listening).collect();
            if self.listening.len() >= expected {
                return;
            }
            if let Some(status) = self.child.0.try_wait().expect("poll the relay") {
                panic!("the relay exited with {status} before it listened");
            }
            assert!(Instant::now() < deadline, "the relay did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address of the relay's only listener.
    pub fn addr(&self) -> SocketAddr {
        match self.listening.as_slice() {
            [only] => only.addr,
            all => panic!("the relay has {} listeners, not one: {all:?}", all.len()),
        }
    }

    /// The address of the listener the relay calls `name` (its `name` key, else
    /// `<role>-<configured port>`, e.g. `relay-0`).
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listening
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no listener {name:?} in {:?}", self.listening))
            .addr
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the config file the way an operator should: a complete file renamed into
    /// place, so the relay never reads half of it. Takes effect on [`sighup`](Relay::sighup).
    pub fn write_config(&self, text: &str) {
        write_config(&self.config, text);
    }

    /// This run's log so far.
    pub fn log(&self) -> String {
        let all = std::fs::read(&self.log_path).unwrap_or_default();
        String::from_utf8_lossy(all.get(self.log_start..).unwrap_or_default()).into_owned()
    }

    /// Waits until the log contains `text`.
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        crate::wait_for(&format!("{text:?} in the relay's log"), timeout, || {
            self.log().contains(text)
        });
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.0.try_wait().expect("poll the relay").is_none()
    }

    pub fn sighup(&self) {
        signal(self.pid(), libc::SIGHUP);
    }

    /// Sends SIGTERM and returns at once; [`terminate`](Relay::terminate) also waits.
    pub fn sigterm(&self) {
        signal(self.pid(), libc::SIGTERM);
    }

    /// SIGTERM, then waits (30 s at most) for the relay to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.child.0.try_wait().expect("poll the relay") {
            return status;
        }
        self.sigterm();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.0.try_wait().expect("poll the relay") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the relay did not stop on SIGTERM; where its threads were:\n{}",
                    crate::process::thread_dump(self.pid())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(&mut self) {
        self.child.0.kill().ok();
        self.child.0.wait().ok();
    }

    /// Runs `wasmrelay queue --config <this config> args…`.
    pub fn queue(&self, args: &[&str]) -> Output {
        Command::new(crate::binary())
            .args(["queue", "--config"])
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run wasmrelay queue")
    }

    /// Whether `wasmrelay queue list` reports an empty queue.
    pub fn queue_is_empty(&self) -> bool {
        String::from_utf8_lossy(&self.queue(&["list"]).stdout).contains("0 message(s)")
    }

    /// The spool directory of the config (`[spool] dir`, relative to the config file).
    pub fn spool_dir(&self) -> PathBuf {
        let config = read_config(&self.config);
        let dir = config
            .get("spool")
            .and_then(|s| s.get("dir"))
            .and_then(|d| d.as_str())
            .expect("the test config sets [spool] dir");
        self.config
            .parent()
            .expect("the config is in a directory")
            .join(dir)
    }

    /// The envelopes in the spool now, read as `wasmrelay queue list` reads them: safe while
    /// the relay runs.
    pub fn queued(&self) -> Vec<Envelope> {
        let dir = self.spool_dir();
        block_on(wasmrelay::spool::read_queue(&dir))
            .unwrap_or_else(|e| panic!("read the queue in {}: {e}", dir.display()))
    }

    /// Every message left in the spool (envelope, bytes), read through the library and its
    /// recovery report. Only once the relay has exited: the spool is then at rest.
    pub fn spooled(&mut self) -> (Vec<(Envelope, Vec<u8>)>, RecoveryReport) {
        assert!(!self.is_running(), "read the spool once the relay stopped");
        let dir = self.spool_dir();
        block_on(async {
            let (spool, report) = Spool::open(&dir).await.expect("open the spool");
            let mut out = Vec::new();
            for env in spool.list().await {
                let bytes = spool.message(&env.id).await.expect("a spooled message");
                out.push((env, bytes.to_vec()));
            }
            (out, report)
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- relay log ---\n{}--- end of relay log ---", self.log());
        }
    }
}

/// Runs `future` to completion on a runtime of its own (the tests around it are not async).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// The config most end-to-end tests start from: one relay listener on `127.0.0.1:0`,
/// `example.com` local, loopback trusted, a compile cache, every domain delivered to `sink`
/// (no TLS), DNS pointed at a port that never answers; `extra` (more tables, `[[plugins]]`)
/// is appended.
pub fn loopback_config(sink: SocketAddr, extra: &str) -> String {
    format!(
        r#"hostname = "relay.test"

[[listeners]]
address = "127.0.0.1:0"
role = "relay"

[relay]
local_domains = ["example.com"]
relay_networks = ["127.0.0.0/8"]

[spool]
dir = "spool"

[plugin_runtime]
cache_dir = "cache"

[[delivery.routes]]
domains = ["*"]
hosts = [{{ host = "{ip}", port = {port}, tls = "none" }}]

[delivery.resolver]
nameservers = ["{no_dns}"]

{extra}"#,
        ip = sink.ip(),
        port = sink.port(),
        no_dns = crate::NO_DNS,
    )
}

/// Writes `text` to `path` through a temporary file and a rename.
pub fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).expect("write the config");
    std::fs::rename(&tmp, path).expect("rename the config into place");
}

fn read_config(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).expect("read the config");
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `[[listeners]]` entries in the config; the relay's default is one listener.
fn listener_count(path: &Path) -> usize {
    read_config(path)
        .get("listeners")
        .and_then(|l| l.as_array())
        .map_or(1, Vec::len)
}

/// `listening address=127.0.0.1:40000 listener=relay-0` from one line of the relay's log;
/// also the sink's `sink listening address=…`, which has no listener name.
pub(crate) fn parse_listening(line: &str) -> Option<Listening> {
    let mut words = line.split_whitespace().skip_while(|w| *w != "listening");
    words.next()?;
    let mut addr = None;
    let mut name = String::new();
    for word in words {
        if let Some(a) = word.strip_prefix("address=") {
            addr = a.parse().ok();
        } else if let Some(n) = word.strip_prefix("listener=") {
            name = n.to_string();
        }
    }
    Some(Listening { name, addr: addr? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_line() {
        let line = "2026-12-01T19:58:04.123456Z  INFO wasmrelay::smtp::server: listening \
                    address=127.0.0.1:40001 listener=submission";
        assert_eq!(
            parse_listening(line),
            Some(Listening {
                name: "submission".into(),
                addr: "127.0.0.1:40001".parse().unwrap()
            })
        );
        let sink = "2026-12-01T19:58:04Z  INFO wasmrelay::cli: sink listening \
                    address=127.0.0.1:40002 dir=/tmp/x";
        assert_eq!(
            parse_listening(sink).map(|l| l.addr),
            Some("127.0.0.1:40002".parse().unwrap())
        );
        for other in [
            "INFO wasmrelay::smtp::server: listener stopped address=127.0.0.1:40001",
            "INFO wasmrelay::relay: spool open recovered=0",
        ] {
            assert_eq!(parse_listening(other), None, "{other}");
        }
    }
}
