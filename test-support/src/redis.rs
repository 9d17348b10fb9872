//! A `redis-server` of the test's own on a loopback port, without persistence, that the test
//! can kill, restart on the same port, freeze and thaw.
//!
//! The port is a [`ReservedPort`] held for the server's whole life: Redis binds it with
//! `SO_REUSEADDR` beside the reservation, and while the server is down the port refuses
//! connections and nothing else can take it, so a restart gets it back.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ports::ReservedPort;
use crate::process::{signal, ChildGuard};
use crate::wait::wait_for;

/// How long `redis-server` may take to answer `PING` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RedisServer {
    port: ReservedPort,
    dir: tempfile::TempDir,
    child: Option<ChildGuard>,
}

impl RedisServer {
    /// Starts `redis-server` on a reserved loopback port and waits until it answers.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: ReservedPort::new(),
            dir: tempfile::tempdir().expect("a temp dir for redis-server"),
            child: None,
        };
        server.restart();
        server
    }

    pub fn port(&self) -> u16 {
        self.port.port()
    }

    /// The URL a relay's `[state.redis] url` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port())
    }

    /// Starts the server again (after [`kill`](Self::kill)), on the same port and empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running");
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup the log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        self.child = Some(ChildGuard(child));
        let what = format!("redis-server on port {} to answer PING", self.port());
        wait_for(&what, START_TIMEOUT, || {
            self.cli_status(&["PING"])
                .is_some_and(|out| out.trim() == "PONG")
        });
    }

    /// Kills the server (SIGKILL): its data is gone, its port refuses connections.
    pub fn kill(&mut self) {
        drop(self.child.take());
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers.
    pub fn freeze(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// Thaws a frozen server (SIGCONT).
    pub fn thaw(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").0.id()
    }

    /// `redis-cli -p PORT ARGS...`: its output, or `None` if it failed.
    fn cli_status(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port().to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// `redis-cli -p PORT ARGS...`; panics if it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_status(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a frozen (stopped) server too.
        self.kill();
    }
}
