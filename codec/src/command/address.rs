//! Mailbox and path parsing (RFC 5321 §4.1.2), with the relay-abuse checks the session relies on.

use super::*;

/// RFC 5322 atext (RFC 5321 Atom characters).
pub(super) fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Parses `<path>` at the start of `s`: `Ok((None, rest))` for `<>`, else the mailbox with any
/// source route removed. `allow_postmaster` accepts the bare `<postmaster>` of RCPT.
pub(super) fn parse_path(
    s: &str,
    allow_postmaster: bool,
) -> Result<(Option<Address>, &str), CommandError> {
    use CommandError::BadAddress;
    if s.is_empty() {
        return Err(CommandError::Syntax("missing path"));
    }
    if !s.starts_with('<') {
        return Err(BadAddress("angle brackets required"));
    }
    let end = closing_bracket(s).ok_or(BadAddress("missing closing '>'"))?;
    if end + 1 > MAX_PATH {
        return Err(BadAddress("path too long"));
    }
    let (inner, rest) = (&s[1..end], &s[end + 1..]);
    if inner.is_empty() {
        return Ok((None, rest));
    }
    if allow_postmaster && inner.eq_ignore_ascii_case("postmaster") {
        let addr = Address {
            local: "postmaster".into(),
            domain: String::new(),
        };
        return Ok((Some(addr), rest));
    }
    let mailbox = strip_source_route(inner)?;
    Ok((Some(parse_mailbox(mailbox)?), rest))
}

/// Index of the `>` that closes the path opened at `s[0]`, skipping quoted strings.
pub(super) fn closing_bracket(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (mut i, mut quoted) = (1, false);
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Validates and drops an RFC 5321 source route `@a,@b:` (§4.1.1.3: receivers ignore it).
pub(super) fn strip_source_route(s: &str) -> Result<&str, CommandError> {
    const WHY: CommandError = CommandError::BadAddress("bad source route");
    if !s.starts_with('@') {
        return Ok(s);
    }
    let mut i = 0;
    loop {
        if s.as_bytes().get(i) != Some(&b'@') {
            return Err(WHY);
        }
        i += 1;
        i += parse_domain(&s[i..], false).map_err(|_| WHY)?;
        match s.as_bytes().get(i) {
            Some(b',') => i += 1,
            Some(b':') => return Ok(&s[i + 1..]),
            _ => return Err(WHY),
        }
    }
}

/// `Local-part "@" ( Domain / address-literal )`, the whole of `s`.
pub(super) fn parse_mailbox(s: &str) -> Result<Address, CommandError> {
    use CommandError::BadAddress;
    let local_len = parse_local_part(s)?;
    let (local, rest) = s.split_at(local_len);
    if local.len() > MAX_LOCAL {
        return Err(BadAddress("local part too long"));
    }
    let domain = rest
        .strip_prefix('@')
        .ok_or(BadAddress("expected local@domain"))?;
    let n = parse_domain(domain, false).map_err(BadAddress)?;
    if n != domain.len() {
        return Err(if domain[n..].starts_with('@') {
            BadAddress("more than one '@'")
        } else {
            BadAddress("invalid character in domain")
        });
    }
    Ok(Address {
        local: local.to_string(),
        domain: domain.to_string(),
    })
}

/// Length of the dot-string or quoted-string local part at the start of `s`.
pub(super) fn parse_local_part(s: &str) -> Result<usize, CommandError> {
    use CommandError::BadAddress;
    let b = s.as_bytes();
    if b.first() == Some(&b'"') {
        let mut i = 1;
        loop {
            match b.get(i) {
                None => return Err(BadAddress("unterminated quoted string")),
                Some(b'"') => return Ok(i + 1),
                Some(b'\\') => match b.get(i + 1) {
                    Some(32..=126) => i += 2,
                    _ => return Err(BadAddress("bad quoted pair")),
                },
                // qtextSMTP, plus UTF-8 (RFC 6531).
                Some(&c) if c >= 0x80 || (32..=126).contains(&c) => i += 1,
                Some(_) => return Err(BadAddress("invalid character in quoted string")),
            }
        }
    }
    let n = b
        .iter()
        .position(|&c| !(c >= 0x80 || c == b'.' || is_atext(c)))
        .unwrap_or(b.len());
    let local = &s[..n];
    if local.is_empty() {
        return Err(BadAddress("empty local part"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(BadAddress("misplaced '.' in local part"));
    }
    Ok(n)
}

/// Length of the `Domain` or `address-literal` at the start of `s`; labels are letters, digits,
/// hyphens and UTF-8 (U-labels), plus underscores when `lenient`.
pub(super) fn parse_domain(s: &str, lenient: bool) -> Result<usize, &'static str> {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        let end = s.find(']').ok_or("unterminated address literal")?;
        let literal = &s[1..end];
        let ok = match strip_prefix_ci(literal, "IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if ok {
            Ok(end + 1)
        } else {
            Err("bad address literal")
        };
    }
    let n = b
        .iter()
        .position(|&c| {
            !(c >= 0x80
                || c.is_ascii_alphanumeric()
                || c == b'-'
                || c == b'.'
                || lenient && c == b'_')
        })
        .unwrap_or(b.len());
    let domain = &s[..n];
    if domain.is_empty() {
        return Err("empty domain");
    }
    if domain.len() > MAX_DOMAIN {
        return Err("domain too long");
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return Err("bad domain label");
        }
    }
    Ok(n)
}
