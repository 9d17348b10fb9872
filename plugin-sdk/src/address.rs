//! Envelope address parsing: enough to key rate limits and route by domain.

use std::fmt;

/// An envelope address (`local@domain`); the null sender `<>` has an empty local part and
/// domain. The domain is lowercased; the local part is kept as given (it may be
/// case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: String,
}

/// Why an address did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// No `@`, or nothing on one side of it.
    MissingDomain,
    /// Spaces, control characters or unbalanced brackets.
    Invalid,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::MissingDomain => f.write_str("address has no domain"),
            AddressError::Invalid => f.write_str("malformed address"),
        }
    }
}

impl std::error::Error for AddressError {}

impl Address {
    /// Parses `user@example.org`, `<user@example.org>`, a source route
    /// `<@relay:user@example.org>` (the route is dropped) or `<>`/`""` (the null sender).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let s = s.trim();
        let s = match (s.strip_prefix('<'), s.ends_with('>')) {
            (Some(inner), true) => &inner[..inner.len() - 1],
            (None, false) => s,
            _ => return Err(AddressError::Invalid),
        };
        if s.is_empty() {
            return Ok(Address::null());
        }
        let s = match s.strip_prefix('@') {
            Some(route) => route.split_once(':').ok_or(AddressError::Invalid)?.1,
            None => s,
        };
        if s.chars().any(|c| c.is_control() || c == '<' || c == '>')
            || (!s.starts_with('"') && s.contains(' '))
        {
            return Err(AddressError::Invalid);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::MissingDomain)?;
        if local.is_empty() || domain.is_empty() || domain.contains(' ') {
            return Err(AddressError::MissingDomain);
        }
        Ok(Address {
            local: local.to_string(),
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
        })
    }

    /// The null reverse path `<>`.
    pub fn null() -> Address {
        Address {
            local: String::new(),
            domain: String::new(),
        }
    }

    pub fn is_null(&self) -> bool {
        self.local.is_empty() && self.domain.is_empty()
    }

    /// The part before the last `@`, as given.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain, lowercased, without a trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_null() {
            Ok(())
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        for (input, local, domain) in [
            ("user@Example.ORG", "user", "example.org"),
            ("<User@example.org>", "User", "example.org"),
            ("<@relay.example:user@example.org>", "user", "example.org"),
            ("\"a b\"@example.org", "\"a b\"", "example.org"),
            ("user@example.org.", "user", "example.org"),
        ] {
            let a = Address::parse(input).unwrap();
            assert_eq!((a.local(), a.domain()), (local, domain), "{input}");
        }
    }

    #[test]
    fn null_sender() {
        assert!(Address::parse("<>").unwrap().is_null());
        assert!(Address::parse("").unwrap().is_null());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Address::parse("nodomain"), Err(AddressError::MissingDomain));
        assert_eq!(Address::parse("<a@b"), Err(AddressError::Invalid));
        assert_eq!(Address::parse("a b@c"), Err(AddressError::Invalid));
        assert_eq!(Address::parse("user@"), Err(AddressError::MissingDomain));
    }
}
