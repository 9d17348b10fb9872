//! DKIM signing per sending domain (mail-auth), and key generation for `dkim keygen`.
//!
//! The signing domain is chosen from the RFC 5322 `From:` address, because that is the
//! identity DMARC aligns with; a message without a parseable `From:` falls back to the
//! envelope sender's domain. The key whose `domain` equals the author domain, or is its
//! closest parent, signs (relaxed/relaxed, the configured header list).

use std::path::{Path, PathBuf};

use base64::Engine;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::generate::DkimKeyPair;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use crate::config::delivery::{DkimAlgorithm, DkimConfig};

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("DKIM key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("DKIM key generation failed: {0}")]
    Generate(String),
    #[error("cannot write DKIM key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// Every configured signing key; built once at start (and on reload).
#[derive(Default)]
pub struct DkimSigners {
    signers: Vec<(String, DkimSigner<DkimKey, Done>)>,
}

impl DkimSigners {
    /// Loads every key from `[[delivery.dkim]]`; a missing or unreadable key is an error.
    pub fn load(configs: &[DkimConfig]) -> Result<DkimSigners, DkimError> {
        let mut signers = Vec::with_capacity(configs.len());
        for c in configs {
            let key = load_key(&c.key, c.algorithm)?;
            let signer = DkimSigner::from_key(key)
                .domain(c.domain.to_ascii_lowercase())
                .selector(c.selector.clone())
                .headers(c.headers.iter().cloned())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            signers.push((c.domain.to_ascii_lowercase(), signer));
        }
        Ok(DkimSigners { signers })
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// Returns the message with a `DKIM-Signature:` field prepended, or `None` when no key
    /// covers its sending domain.
    pub fn sign(
        &self,
        message: &[u8],
        mail_from: Option<&str>,
    ) -> Result<Option<Vec<u8>>, DkimError> {
        Ok(self.signature(message, mail_from)?.map(|header| {
            let mut out = Vec::with_capacity(header.len() + message.len());
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(message);
            out
        }))
    }

    /// The `DKIM-Signature:` field (with its CRLF) to put in front of `message`, or `None`
    /// when no key covers its sending domain. The message itself is only read, so a large
    /// one is signed without a copy.
    pub fn signature(
        &self,
        message: &[u8],
        mail_from: Option<&str>,
    ) -> Result<Option<String>, DkimError> {
        if self.signers.is_empty() {
            return Ok(None);
        }
        let Some(domain) = author_domain(message).or_else(|| mail_from.map(super::domain_of))
        else {
            return Ok(None);
        };
        let best = self
            .signers
            .iter()
            .filter(|(d, _)| domain == *d || domain.ends_with(&format!(".{d}")))
            .max_by_key(|(d, _)| d.len());
        let Some((_, signer)) = best else {
            return Ok(None);
        };
        let signature = signer
            .sign(message)
            .map_err(|e| DkimError::Sign(e.to_string()))?;
        Ok(Some(signature.to_header()))
    }
}

/// The domain of the first `From:` address, lower-cased.
pub fn author_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let addr = parsed.from()?.first()?.address()?;
    let domain = super::domain_of(addr);
    (!domain.is_empty()).then_some(domain)
}

fn load_key(path: &Path, algorithm: DkimAlgorithm) -> Result<DkimKey, DkimError> {
    let err = |why: String| DkimError::Key {
        path: path.to_path_buf(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| err(format!("not a PEM private key: {e}")))?;
    match algorithm {
        DkimAlgorithm::RsaSha256 => RsaKey::<Sha256>::from_key_der(der)
            .map(DkimKey::from)
            .map_err(|e| err(format!("not an RSA key: {e}"))),
        DkimAlgorithm::Ed25519Sha256 => match der {
            PrivateKeyDer::Pkcs8(d) => Ed25519Key::from_pkcs8_der(d.secret_pkcs8_der())
                .map(DkimKey::from)
                .map_err(|e| err(format!("not an Ed25519 key: {e}"))),
            _ => Err(err(
                "an Ed25519 key must be PKCS#8 (BEGIN PRIVATE KEY)".into()
            )),
        },
    }
}

/// Generates a signing key for `domain`/`selector`, writes the private key PEM to `out_path`
/// (mode 0600 on Unix), and returns the DNS records to publish: the DKIM TXT record, plus an
/// SPF and a DMARC record to consider.
pub fn keygen(
    domain: &str,
    selector: &str,
    algorithm: DkimAlgorithm,
    out_path: &Path,
) -> Result<String, DkimError> {
    let gen = |e: mail_auth::Error| DkimError::Generate(e.to_string());
    let (pem, k, public) = match algorithm {
        DkimAlgorithm::RsaSha256 => {
            let pair = DkimKeyPair::generate_rsa(2048).map_err(gen)?;
            let pem = to_pem("RSA PRIVATE KEY", pair.private_key());
            (pem, "rsa", rsa_spki(pair.public_key()))
        }
        DkimAlgorithm::Ed25519Sha256 => {
            let pair = DkimKeyPair::generate_ed25519().map_err(gen)?;
            let pem = to_pem("PRIVATE KEY", pair.private_key());
            (pem, "ed25519", pair.public_key().to_vec())
        }
    };
    write_private(out_path, pem.as_bytes()).map_err(|source| DkimError::Write {
        path: out_path.to_path_buf(),
        source,
    })?;
    let p = base64::engine::general_purpose::STANDARD.encode(public);
    Ok(format!(
        "{selector}._domainkey.{domain}. IN TXT {}\n\
         ; consider also:\n\
         {domain}. IN TXT \"v=spf1 mx -all\"\n\
         _dmarc.{domain}. IN TXT \"v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@{domain}\"\n",
        txt_strings(&format!("v=DKIM1; k={k}; p={p}")),
    ))
}

/// A TXT value split into quoted strings of at most 255 octets (RFC 1035 §3.3.14).
fn txt_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo, the form RFC 6376 §3.6.1 publishes.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x00];
    bits.extend_from_slice(pkcs1);
    let bit_string = der_tlv(0x03, &bits);
    let mut body = ALG.to_vec();
    body.extend_from_slice(&bit_string);
    der_tlv(0x30, &body)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(value);
    out
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer_for(dir: &Path, domain: &str, algorithm: DkimAlgorithm) -> (DkimSigners, String) {
        let path = dir.join(format!("{domain}.pem"));
        let records = keygen(domain, "s1", algorithm, &path).unwrap();
        let config = DkimConfig {
            domain: domain.into(),
            selector: "s1".into(),
            key: path,
            algorithm,
            ..Default::default()
        };
        (DkimSigners::load(&[config]).unwrap(), records)
    }

    #[test]
    fn ed25519_keygen_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let (signers, records) =
            signer_for(dir.path(), "example.com", DkimAlgorithm::Ed25519Sha256);
        assert!(records.starts_with("s1._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p="));
        assert!(records.contains("_dmarc.example.com."));
        let msg = b"From: A <a@sub.example.com>\r\nTo: b@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let signed = signers.sign(msg, None).unwrap().unwrap();
        let text = String::from_utf8(signed).unwrap();
        assert!(
            text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; s=s1; d=example.com;"),
            "{text}"
        );
        assert!(text.contains("c=relaxed/relaxed"));
        assert!(text.ends_with("\r\n\r\nbody\r\n"));
        // Another author domain is not signed, even with a matching envelope sender.
        let other = b"From: a@other.test\r\n\r\nx\r\n";
        assert!(signers
            .sign(other, Some("a@example.com"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn rsa_key_is_published_as_spki() {
        let dir = tempfile::tempdir().unwrap();
        let (signers, records) = signer_for(dir.path(), "example.org", DkimAlgorithm::RsaSha256);
        // SPKI for a 2048-bit key starts with "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A".
        assert!(
            records.contains("k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"),
            "{records}"
        );
        let signed = signers
            .sign(b"From: x@example.org\r\n\r\nhi\r\n", None)
            .unwrap()
            .unwrap();
        assert!(signed.starts_with(b"DKIM-Signature: v=1; a=rsa-sha256;"));
    }
}
