//! The signed tokens in wasmrelay's tracking links (`/o/TOKEN`, `/c/TOKEN`, `/u/TOKEN`).
//!
//! The `tracker` plugin signs them when it renders a recipient's copy; the relay's tracking
//! endpoint verifies them. Both use this crate, so the format is written once; the key is
//! the `secret` of the tracker plugin's config (the endpoint reads it from there), so it is
//! written once too.
//!
//! A token is base64url (no padding) of:
//!
//! ```text
//! version (1) | kind (1: o c u) | issued (4, u32 BE, Unix seconds) | link (2, u16 BE)
//! | len (1) queue id | len (1) recipient | len (1) sender domain | url (rest; clicks only)
//! | tag (16: HMAC-SHA256 of everything before it, truncated)
//! ```
//!
//! Everything the endpoint acts on is inside the signed bytes: the redirect target of a
//! click cannot be changed without the key, and a token of one kind is refused on another
//! kind's path. Tags are compared in constant time. A 128-bit truncated tag is what
//! RFC 2104 §5 allows (at least half the hash); forging one is a 2^-128 guess per request.
//! A click token for a 100-byte URL is about 240 characters; the host's
//! `replace-part-text` folds the HTML so no line passes 998 octets.
//!
//! Key rotation: [`verify_any`] accepts a token signed with any of several keys, so the
//! endpoint keeps old secrets while mail signed with them is still read.
#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest secret accepted: 32 bytes, the HMAC-SHA256 block half.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest URL a click token carries; longer links are left as they are.
pub const MAX_URL_LEN: usize = 2048;
/// Longest token text the endpoint will decode; anything longer is not ours.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest queue id, recipient or sender domain (one length byte each).
pub const MAX_FIELD_LEN: usize = 255;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
/// Version, kind, issued, link.
const FIXED_LEN: usize = 1 + 1 + 4 + 2;

/// What a token is for; the endpoint's path (`/o/`, `/c/`, `/u/`) must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The open pixel.
    Open,
    /// A rewritten link; the token carries its URL.
    Click,
    /// The List-Unsubscribe URL and the visible unsubscribe link.
    Unsubscribe,
}

impl Kind {
    /// The path segment and the byte in the token.
    pub fn letter(self) -> char {
        match self {
            Kind::Open => 'o',
            Kind::Click => 'c',
            Kind::Unsubscribe => 'u',
        }
    }

    pub fn from_letter(c: char) -> Option<Kind> {
        match c {
            'o' => Some(Kind::Open),
            'c' => Some(Kind::Click),
            'u' => Some(Kind::Unsubscribe),
            _ => None,
        }
    }

    /// The event name: `open`, `click`, `unsubscribe`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Open => "open",
            Kind::Click => "click",
            Kind::Unsubscribe => "unsubscribe",
        }
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub kind: Kind,
    /// When the message was received, Unix seconds (the same at every retry, so a copy
    /// rendered again is byte for byte the same).
    pub issued: u32,
    /// The link's position among the tracked links of the message, from 1; 0 for the pixel
    /// and the unsubscribe URL.
    pub link: u16,
    pub queue_id: String,
    /// Lower-cased, as on the suppression list.
    pub recipient: String,
    /// The envelope sender's domain, lower-cased (empty for the null sender), so rates
    /// can be computed per sending domain from the tracking events alone.
    pub sender_domain: String,
    /// The redirect target (clicks only; empty otherwise): an `http` or `https` URL.
    pub url: String,
}

/// Why a token could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// A queue id, recipient or sender domain over [`MAX_FIELD_LEN`] bytes.
    FieldTooLong,
    /// A click URL over [`MAX_URL_LEN`] bytes.
    UrlTooLong,
    /// A click URL that is not `http` or `https`, or a URL on a token of another kind.
    BadUrl,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignError::FieldTooLong => "queue id, recipient or sender domain over 255 bytes",
            SignError::UrlTooLong => "URL over 2048 bytes",
            SignError::BadUrl => "only http and https URLs are tracked",
        })
    }
}

/// A secret shorter than [`MIN_SECRET_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortSecret {
    pub len: usize,
}

impl fmt::Display for ShortSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "must be at least {MIN_SECRET_LEN} bytes (it has {}); generate one with `openssl rand -base64 48`",
            self.len
        )
    }
}

/// One key, with its HMAC state prepared once.
#[derive(Clone)]
pub struct Key {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn new(secret: &[u8]) -> Result<Key, ShortSecret> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(ShortSecret { len: secret.len() });
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        Ok(Key { mac })
    }

    /// The token for `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        match claims.kind {
            Kind::Click if !is_web_url(&claims.url) => return Err(SignError::BadUrl),
            Kind::Click if claims.url.len() > MAX_URL_LEN => return Err(SignError::UrlTooLong),
            Kind::Open | Kind::Unsubscribe if !claims.url.is_empty() => {
                return Err(SignError::BadUrl)
            }
            _ => {}
        }
        let fields = [&claims.queue_id, &claims.recipient, &claims.sender_domain];
        if fields.iter().any(|f| f.len() > MAX_FIELD_LEN) {
            return Err(SignError::FieldTooLong);
        }
        let mut bytes = Vec::with_capacity(FIXED_LEN + 3 + 128 + claims.url.len() + TAG_LEN);
        bytes.push(VERSION);
        bytes.push(claims.kind.letter() as u8);
        bytes.extend_from_slice(&claims.issued.to_be_bytes());
        bytes.extend_from_slice(&claims.link.to_be_bytes());
        for field in fields {
            bytes.push(field.len() as u8);
            bytes.extend_from_slice(field.as_bytes());
        }
        bytes.extend_from_slice(claims.url.as_bytes());
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The claims of `token` if this key signed it for `kind`; `None` for anything else
    /// (malformed, tampered, another key, another kind), without saying which.
    pub fn verify(&self, token: &str, kind: Kind) -> Option<Claims> {
        let bytes = decode(token)?;
        self.verify_bytes(&bytes, kind)
    }

    fn verify_bytes(&self, bytes: &[u8], kind: Kind) -> Option<Claims> {
        let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.verify_truncated_left(tag).ok()?;
        parse(signed, kind)
    }

    fn tag(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }
}

/// Verifies with each key in turn (the current one first, then old ones kept for rotation).
pub fn verify_any(keys: &[Key], token: &str, kind: Kind) -> Option<Claims> {
    let bytes = decode(token)?;
    keys.iter().find_map(|k| k.verify_bytes(&bytes, kind))
}

/// Whether `url` is an absolute `http:` or `https:` URL with a host, and nothing a header
/// or an HTML attribute could be broken with (controls, spaces, quotes, angle brackets).
pub fn is_web_url(url: &str) -> bool {
    let lower_starts = |p: &str| {
        url.len() >= p.len() && url.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    let rest = if lower_starts("https://") {
        &url[8..]
    } else if lower_starts("http://") {
        &url[7..]
    } else {
        return false;
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    host_end > 0
        && url
            .bytes()
            .all(|b| b > b' ' && b != 0x7f && !matches!(b, b'"' | b'<' | b'>' | b'\\'))
}

fn decode(token: &str) -> Option<Vec<u8>> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    (bytes.len() >= FIXED_LEN + 3 + TAG_LEN).then_some(bytes)
}

/// Reads signed bytes (already authenticated) for `kind`.
fn parse(signed: &[u8], kind: Kind) -> Option<Claims> {
    if signed[0] != VERSION || signed[1] != kind.letter() as u8 {
        return None;
    }
    let issued = u32::from_be_bytes(signed[2..6].try_into().ok()?);
    let link = u16::from_be_bytes(signed[6..8].try_into().ok()?);
    let mut rest = &signed[FIXED_LEN..];
    let mut field = || -> Option<String> {
        let (&len, tail) = rest.split_first()?;
        let len = len as usize;
        if tail.len() < len {
            return None;
        }
        let (value, tail) = tail.split_at(len);
        rest = tail;
        String::from_utf8(value.to_vec()).ok()
    };
    let queue_id = field()?;
    let recipient = field()?;
    let sender_domain = field()?;
    let url = String::from_utf8(rest.to_vec()).ok()?;
    let url_ok = match kind {
        Kind::Click => is_web_url(&url),
        Kind::Open | Kind::Unsubscribe => url.is_empty(),
    };
    url_ok.then_some(Claims {
        kind,
        issued,
        link,
        queue_id,
        recipient,
        sender_domain,
        url,
    })
}

/// Escapes text for HTML content and attribute values: the tracker's inserted links and the
/// endpoint's pages both write text that came from mail.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
