//! Several relays sharing limits, lists and state through one `redis-server` on loopback:
//! the Redis backend against the in-process one (`backend`), two relay processes sharing a
//! quota, a rate limit and the suppression list (`relays`), and Redis killed and frozen
//! under load (`outage`).
//!
//! Run: `cargo test -p wasmrelay --test fleet` (needs `redis-server` and `redis-cli`).

mod backend;
mod outage;
mod relays;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use wasmrelay_test_support::relay::loopback_config;
use wasmrelay_test_support::{
    binary, rcpt_reply, test_plugin, Downstream, Raw, RedisServer, Relay,
};

/// The `[state]` section of every relay of a fleet on `redis`.
fn state_section(redis: &RedisServer) -> String {
    format!(
        "[state]\nbackend = \"redis\"\n[state.redis]\nurl = {:?}\nkey_prefix = \"fleet-test:\"\n\
         command_timeout = \"250ms\"\nretry_interval = \"200ms\"\n",
        redis.url()
    )
}

/// One `[[plugins]]` entry for test plugin `name`.
fn plugin(name: &str, extra: &str) -> String {
    format!(
        "[[plugins]]\npath = {:?}\nname = {name:?}\n{extra}\n",
        test_plugin(name).display().to_string()
    )
}

/// Two relays in their own directories (their own spools), delivering to `sink`, sharing
/// state through `redis`.
struct Fleet {
    dirs: [tempfile::TempDir; 2],
    relays: [Relay; 2],
}

impl Fleet {
    fn start(redis: &RedisServer, sink: &impl Downstream, plugins: &str) -> Fleet {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let config = loopback_config(sink.addr(), &format!("{}{plugins}", state_section(redis)));
        let first = Relay::start(dirs[0].path(), &config);
        // The second relay reuses the components the first one compiled.
        std::os::unix::fs::symlink(dirs[0].path().join("cache"), dirs[1].path().join("cache"))
            .unwrap();
        let relays = [first, Relay::start(dirs[1].path(), &config)];
        Fleet { dirs, relays }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.relays[i].addr()
    }

    fn dir(&self, i: usize) -> &Path {
        self.dirs[i].path()
    }
}

/// The reply to `MAIL FROM:<sender>` in a fresh session (the transaction is then dropped).
fn mail_from(addr: SocketAddr, sender: &str) -> String {
    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    let reply = c.cmd(&format!("MAIL FROM:<{sender}>"), "");
    c.cmd("QUIT", "221");
    reply.trim_end().to_string()
}

/// `wasmrelay list --config DIR/relay.toml ARGS...`.
fn list_cli(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(binary())
        .arg("list")
        .arg("--config")
        .arg(dir.join("relay.toml"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
