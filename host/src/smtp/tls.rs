//! Server TLS configuration from PEM files, with rustls.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid PEM: {source}")]
    Pem { path: String, source: pem::Error },
    #[error("{path}: no certificate found")]
    NoCertificate { path: String },
    #[error("{path}: no private key found")]
    NoKey { path: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// Classifies a PEM failure on `path`; `missing` is the error for a file without the
    /// item sought.
    fn from_pem(path: &Path, e: pem::Error, missing: fn(String) -> TlsError) -> TlsError {
        let path = path.display().to_string();
        match e {
            pem::Error::Io(source) => TlsError::Read { path, source },
            pem::Error::NoItemsFound => missing(path),
            source => TlsError::Pem { path, source },
        }
    }
}

/// Builds an acceptor for a certificate chain and key (PKCS#8, PKCS#1 or SEC1 PEM).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let no_cert = |path| TlsError::NoCertificate { path };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|items| items.collect::<Result<_, _>>())
        .map_err(|e| TlsError::from_pem(cert, e, no_cert))?;
    if certs.is_empty() {
        return Err(no_cert(cert.display().to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::from_pem(key, e, |path| TlsError::NoKey { path }))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_pem_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let cert_pem = write("cert.pem", &cert.cert.pem());
        let key_pem = write("key.pem", &cert.key_pair.serialize_pem());
        assert!(acceptor(&cert_pem, &key_pem).is_ok());

        let empty = write("empty.pem", "");
        let missing = dir.path().join("missing.pem");
        let truncated = write("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
        let cases = [
            (&empty, &key_pem, "empty.pem: no certificate found"),
            (&cert_pem, &cert_pem, "cert.pem: no private key found"),
            (&missing, &key_pem, "cannot read"),
            (&truncated, &key_pem, "truncated.pem: not valid PEM"),
        ];
        for (c, k, expected) in cases {
            let e = acceptor(c, k).err().expect(expected).to_string();
            assert!(e.contains(expected), "{e} lacks {expected:?}");
        }
    }
}
