//! A raw SMTP client for byte-exact protocol tests: what is sent is exactly the bytes given,
//! what comes back is exactly the bytes the server wrote.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    /// Connects and expects a `220` greeting.
    pub fn connect(addr: SocketAddr) -> Raw {
        let mut raw = Raw::open(addr);
        let greeting = raw.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        raw
    }

    /// Connects without reading anything: the greeting is the caller's to read.
    pub fn open(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set a read timeout");
        let writer = stream.try_clone().expect("clone the stream");
        Raw {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// One complete reply (every line of a multi-line reply); empty once the server closed.
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
        self.writer.write_all(bytes).expect("send to the server");
    }

    /// Sends `line` and CRLF; the reply must start with `expect`.
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

/// The reply to `RCPT TO:<rcpt>` in a fresh transaction from `sender`, on a new connection.
pub fn rcpt_reply(addr: SocketAddr, sender: &str, rcpt: &str) -> String {
    let mut c = Raw::connect(addr);
    c.cmd("EHLO client.test", "250");
    c.cmd(&format!("MAIL FROM:<{sender}>"), "250");
    let reply = c.cmd(&format!("RCPT TO:<{rcpt}>"), "");
    c.cmd("QUIT", "221");
    reply.trim_end().to_string()
}

/// The queue id from a `250 ... queued as ID` reply.
pub fn queued_id(reply: &str) -> String {
    reply
        .trim()
        .rsplit(' ')
        .next()
        .expect("a reply has a last word")
        .to_string()
}
