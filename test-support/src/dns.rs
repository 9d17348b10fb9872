//! A DNS zone served on loopback (`scripts/dns_zone.py`, dnslib), UDP and TCP on one port.

use std::net::SocketAddr;
use std::process::Command;

use crate::process::{python_server, ChildGuard};

/// A zone given as JSON: lower-case names (no trailing dot) to lists of `[type, value]`,
/// e.g. `{"example.test": [["MX", "10 mx.example.test"]], "mx.example.test": [["A",
/// "127.0.0.2"]], "broken.test": [["SERVFAIL", ""]]}`. Names not in it are NXDOMAIN.
pub struct DnsZone {
    _child: ChildGuard,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl DnsZone {
    pub fn start(zone: serde_json::Value) -> DnsZone {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("zone.json");
        std::fs::write(&path, serde_json::to_vec(&zone).expect("JSON")).expect("write the zone");
        let path = path.display().to_string();
        let (child, port) =
            python_server("dns_zone.py", &[&path]).unwrap_or_else(|e| panic!("{e}"));
        DnsZone {
            _child: child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        }
    }

    /// The server's address, as a resolver's `nameservers` entry wants it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Verifies every DKIM signature of `message` with dkimpy, keys from this zone.
    pub fn verify_dkim(&self, message: &[u8]) -> Result<(), String> {
        let file = self.dir.path().join("verify.eml");
        std::fs::write(&file, message).expect("write the message");
        let out = Command::new("python3")
            .arg(crate::script("dkim_verify.py"))
            .arg(&file)
            .arg(self.addr.port().to_string())
            .output()
            .expect("python3 runs");
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
