//! Shared helpers for end-to-end tests: free ports, test certificates, the relay binary,
//! and real SMTP clients (Python smtplib, swaks, curl).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now (the listener is closed before returning).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for `localhost`/127.0.0.1, written as PEM into `dir`.
pub fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// Waits for `cond` with a deadline; panics with `what` if it never holds.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_wasmrelay")
}

/// The relay binary running on a config file, killed on drop.
pub struct RelayProcess {
    pub child: Child,
    pub config: PathBuf,
    pub stderr_log: PathBuf,
}

impl RelayProcess {
    /// Starts `wasmrelay serve` and waits until every address in `ports` accepts connections.
    pub fn start(config: &Path, ports: &[u16]) -> RelayProcess {
        let stderr_log = config.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .unwrap();
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(config)
            .env("WASMRELAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut relay = RelayProcess {
            child,
            config: config.to_path_buf(),
            stderr_log,
        };
        for port in ports {
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if TcpStream::connect(addr).is_ok() {
                    break;
                }
                if let Ok(Some(status)) = relay.child.try_wait() {
                    panic!("relay exited with {status}: {}", relay.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "relay did not listen on {addr}: {}",
                    relay.log()
                );
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        relay
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "relay did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Runs a Python script with arguments; returns its output (panics if python3 is missing).
pub fn python(script: &str, args: &[&str]) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3")
}

pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A minimal raw SMTP client for byte-exact protocol tests.
pub struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = raw.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        raw
    }

    /// One complete reply (all lines of a multi-line reply).
    pub fn reply(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return out;
            }
            out.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return out;
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    pub fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        let reply = self.reply();
        assert!(
            reply.starts_with(expect),
            "{line:?}: expected {expect}, got {reply:?}"
        );
        reply
    }

    /// True once the server has closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0))
    }
}

/// The queue id from a `250 ... queued as ID` reply.
pub fn queued_id(reply: &str) -> String {
    reply.trim().rsplit(' ').next().unwrap().to_string()
}
