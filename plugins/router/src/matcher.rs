//! Precomputed matchers for rule conditions: domain patterns and name sets, built once in
//! `init` so a hook only does lookups.

use std::collections::HashSet;

/// Domain patterns: `example.com` (exact), `*.example.com` (subdomains only), `*` (every
/// domain). Compared lower-case, without a trailing dot.
#[derive(Debug, Default)]
pub struct Domains {
    any: bool,
    exact: HashSet<String>,
    /// `.example.com` for `*.example.com`.
    suffixes: Vec<String>,
}

impl Domains {
    /// `key` names the list in errors (`routes[0].recipient_domains`).
    pub fn parse(patterns: &[String], key: &str) -> Result<Domains, String> {
        let mut d = Domains::default();
        for (i, p) in patterns.iter().enumerate() {
            let p = p.trim().trim_end_matches('.').to_ascii_lowercase();
            if p == "*" {
                d.any = true;
                continue;
            }
            let (wild, name) = match p.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, p.as_str()),
            };
            if !valid_domain(name) {
                return Err(format!(
                    "{key}[{i}]: {p:?} is not a domain, `*.domain` or `*`"
                ));
            }
            if wild {
                d.suffixes.push(format!(".{name}"));
            } else {
                d.exact.insert(name.to_string());
            }
        }
        Ok(d)
    }

    /// `domain` must already be lower-case without a trailing dot.
    pub fn matches(&self, domain: &str) -> bool {
        self.any
            || self.exact.contains(domain)
            || self.suffixes.iter().any(|s| domain.ends_with(s.as_str()))
    }
}

/// A domain as written in config: labels of letters, digits, `-` and `_`, or an address
/// literal `[...]` as it appears in an address.
fn valid_domain(name: &str) -> bool {
    if name.starts_with('[') && name.ends_with(']') && name.len() > 2 {
        return !name[1..name.len() - 1].contains(['[', ']', ' ']);
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A set of exact names (`*` for any), for users, listeners and stream values.
#[derive(Debug, Default)]
pub struct Names {
    any: bool,
    set: HashSet<String>,
}

impl Names {
    /// `fold` lower-cases names (and the values matched against them).
    pub fn parse(names: &[String], key: &str, fold: bool) -> Result<Names, String> {
        let mut n = Names::default();
        for (i, name) in names.iter().enumerate() {
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("{key}[{i}]: empty"));
            }
            if name == "*" {
                n.any = true;
            } else if fold {
                n.set.insert(name.to_ascii_lowercase());
            } else {
                n.set.insert(name.to_string());
            }
        }
        Ok(n)
    }

    /// `value` must already be folded the way the set was.
    pub fn matches(&self, value: &str) -> bool {
        self.any || self.set.contains(value)
    }
}

/// Annotation and stream names: what `context.set-annotation` accepts.
pub fn valid_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(p: &[&str]) -> Domains {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        Domains::parse(&p, "d").unwrap()
    }

    #[test]
    fn domain_patterns() {
        let d = domains(&["Example.COM.", "*.lists.example.org", "[127.0.0.1]"]);
        assert!(d.matches("example.com"));
        assert!(!d.matches("sub.example.com"));
        assert!(d.matches("a.lists.example.org"));
        assert!(d.matches("a.b.lists.example.org"));
        assert!(!d.matches("lists.example.org"), "`*.` is subdomains only");
        assert!(!d.matches("evillists.example.org"));
        assert!(d.matches("[127.0.0.1]"));
        assert!(domains(&["*"]).matches("anything.test"));
        assert!(!domains(&[]).matches("anything.test"));
    }

    #[test]
    fn bad_domains_name_their_key() {
        for bad in ["", "a..b", "*", "exa mple.com", "*.*.x", "x*.com", "[]"] {
            if bad == "*" {
                continue;
            }
            let err = Domains::parse(&[bad.to_string()], "routes[1].sender_domains").unwrap_err();
            assert!(err.starts_with("routes[1].sender_domains[0]: "), "{err}");
        }
    }

    #[test]
    fn names() {
        let n = Names::parse(&["Alice".into()], "u", false).unwrap();
        assert!(n.matches("Alice") && !n.matches("alice"));
        let n = Names::parse(&["News".into()], "s", true).unwrap();
        assert!(n.matches("news"));
        assert!(Names::parse(&["*".into()], "u", false)
            .unwrap()
            .matches("x"));
        assert!(Names::parse(&[" ".into()], "u", false).is_err());
    }
}
