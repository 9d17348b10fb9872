//! Test certificates, made by the test that uses them.

use std::path::{Path, PathBuf};

/// The names a test server may be reached by: `localhost` and the loopback addresses tests
/// listen on (one per listener, where a relay has several).
const NAMES: [&str; 4] = ["localhost", "127.0.0.1", "127.0.0.2", "127.0.0.3"];

/// A self-signed certificate for [`NAMES`], written into `dir` as `cert.pem` and `key.pem`;
/// returns their paths. Clients that should trust it use the certificate as their CA file.
pub fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let names = NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let cert = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert.pem");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key.pem");
    (cert_path, key_path)
}
