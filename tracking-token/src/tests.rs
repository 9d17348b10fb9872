extern crate std;

use alloc::string::ToString;
use alloc::vec;

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn key() -> Key {
    Key::new(SECRET).unwrap()
}

fn click(url: &str) -> Claims {
    Claims {
        kind: Kind::Click,
        issued: 1_796_000_000,
        link: 3,
        queue_id: "01JD5Q8Z9X".into(),
        recipient: "alice@example.org".into(),
        sender_domain: "news.example.com".into(),
        url: url.into(),
    }
}

#[test]
fn round_trip_and_url_safe() {
    let claims = click("https://example.com/a?b=1&c=%20#frag");
    let token = key().sign(&claims).unwrap();
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(key().verify(&token, Kind::Click), Some(claims.clone()));
    // Deterministic: a retry renders the same token.
    assert_eq!(key().sign(&claims).unwrap(), token);
    // The same message to another recipient gets another token.
    let other = Claims {
        recipient: "bob@example.org".into(),
        ..claims
    };
    assert_ne!(key().sign(&other).unwrap(), token);
}

#[test]
fn any_change_is_refused() {
    let token = key().sign(&click("https://example.com/")).unwrap();
    let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            let t = URL_SAFE_NO_PAD.encode(&b);
            assert_eq!(key().verify(&t, Kind::Click), None, "byte {i} bit {bit}");
        }
    }
    // Truncated, extended, empty, not base64, huge.
    assert_eq!(key().verify(&token[..token.len() - 1], Kind::Click), None);
    assert_eq!(key().verify(&(token.clone() + "AA"), Kind::Click), None);
    assert_eq!(key().verify("", Kind::Click), None);
    assert_eq!(key().verify("!!!!", Kind::Click), None);
    assert_eq!(
        key().verify(&"A".repeat(MAX_TOKEN_LEN + 4), Kind::Click),
        None
    );
}

#[test]
fn kinds_do_not_cross() {
    let open = Claims {
        kind: Kind::Open,
        link: 0,
        url: String::new(),
        ..click("")
    };
    let token = key().sign(&open).unwrap();
    assert_eq!(key().verify(&token, Kind::Open), Some(open));
    assert_eq!(key().verify(&token, Kind::Unsubscribe), None);
    assert_eq!(key().verify(&token, Kind::Click), None);
}

#[test]
fn other_keys_and_rotation() {
    let token = key().sign(&click("http://example.com/x")).unwrap();
    let new = Key::new(b"another secret of at least thirty-two bytes").unwrap();
    assert_eq!(new.verify(&token, Kind::Click), None);
    let keys = vec![new, key()];
    assert!(verify_any(&keys, &token, Kind::Click).is_some());
    assert!(verify_any(&keys[..1], &token, Kind::Click).is_none());
}

#[test]
fn only_web_urls_and_bounded_fields() {
    for bad in [
        "javascript:alert(1)",
        "mailto:a@b",
        "//example.com/",
        "https://",
        "https://exa mple.com/",
        "https://example.com/\r\nSet-Cookie: x",
        "https://example.com/\"onmouseover=",
        "ftp://example.com/",
        "https:/\u{e9}\u{e9}",
    ] {
        assert_eq!(key().sign(&click(bad)), Err(SignError::BadUrl), "{bad}");
    }
    assert!(is_web_url("HTTPS://Example.com"));
    let long = "https://example.com/".to_string() + &"a".repeat(MAX_URL_LEN);
    assert_eq!(key().sign(&click(&long)), Err(SignError::UrlTooLong));
    let mut c = click("https://example.com/");
    c.recipient = "a".repeat(256);
    assert_eq!(key().sign(&c), Err(SignError::FieldTooLong));
    let mut open = click("");
    open.kind = Kind::Unsubscribe;
    open.url = "https://example.com/".into();
    assert_eq!(key().sign(&open), Err(SignError::BadUrl));
}

#[test]
fn short_secrets_are_refused() {
    assert_eq!(Key::new(b"short").unwrap_err(), ShortSecret { len: 5 });
    assert!(Key::new(&[7u8; MIN_SECRET_LEN]).is_ok());
}

#[test]
fn a_typical_click_token_is_compact() {
    let token = key()
        .sign(&click(
            "https://shop.example.com/spring-sale?utm_source=newsletter&id=42",
        ))
        .unwrap();
    assert!(token.len() < 200, "{} chars", token.len());
}
