//! Address lists: which senders or recipients a rule names, as sets built once in `init`,
//! and shared `[[lists]]` looked up through the host.

use std::collections::HashSet;

use wasmrelay_plugin_sdk::host;

/// Entries of `sender_in`, `recipient_in` and `senders`, lower-cased: `user@example.org`,
/// a domain (`example.org` or `@example.org`), its subdomains (`*.example.org`), or `<>`
/// for the null sender.
#[derive(Debug, Default)]
pub struct AddressSet {
    addresses: HashSet<String>,
    domains: HashSet<String>,
    /// `.example.org` for `*.example.org`.
    suffixes: Vec<String>,
    null: bool,
}

impl AddressSet {
    pub fn parse(entries: &[String]) -> Result<AddressSet, String> {
        let mut set = AddressSet::default();
        for entry in entries {
            let e = entry.trim().to_ascii_lowercase();
            if e == "<>" {
                set.null = true;
            } else if let Some(domain) = e.strip_prefix("*.") {
                check_domain(domain, entry)?;
                set.suffixes.push(format!(".{domain}"));
            } else if let Some((local, domain)) = e.rsplit_once('@') {
                check_domain(domain, entry)?;
                if local.is_empty() {
                    set.domains.insert(domain.to_string());
                } else {
                    set.addresses.insert(host::list_address(&e));
                }
            } else {
                check_domain(&e, entry)?;
                set.domains.insert(e);
            }
        }
        Ok(set)
    }

    /// Whether `address` (an envelope path, `""` for the null sender) is in the set.
    pub fn contains(&self, address: &str) -> bool {
        let address = host::list_form(address);
        if address.is_empty() {
            return self.null;
        }
        if self.addresses.contains(address.as_ref()) {
            return true;
        }
        let domain = domain_of(&address);
        self.domains.contains(domain) || self.suffixes.iter().any(|s| domain.ends_with(s.as_str()))
    }
}

fn check_domain(domain: &str, entry: &str) -> Result<(), String> {
    let ok = !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.contains(['*', ' ', '@', '<', '>']);
    if ok {
        Ok(())
    } else {
        Err(format!("{entry:?} is not an address, a domain or *.domain"))
    }
}

/// The domain of a lower-cased address (without a trailing dot).
pub fn domain_of(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .trim_end_matches('.')
}

/// A sender or recipient condition: a set in the config, a shared list, or both.
#[derive(Debug, Default)]
pub struct Membership {
    pub set: Option<AddressSet>,
    /// A `[[lists]]` name; its members are addresses or domains, lower-cased.
    pub list: Option<String>,
}

impl Membership {
    /// Whether `address` is a member. A list that cannot be read counts as not containing
    /// it (logged): a block list fails open, an allow list fails closed.
    pub fn contains(&self, address: &str) -> bool {
        if self.set.as_ref().is_some_and(|s| s.contains(address)) {
            return true;
        }
        let Some(list) = &self.list else {
            return false;
        };
        let address = host::list_form(address);
        let domain = domain_of(&address);
        for member in [address.as_ref(), domain] {
            if member.is_empty() {
                continue;
            }
            match host::list_contains(list, member) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    host::warn(&format!("list {list:?} could not be read: {e:?}"));
                    return false;
                }
            }
        }
        false
    }
}
