//! Who we are, as a next hop: delivering to an MX or smart host that is this relay itself
//! hands the message straight back to us, round and round (RFC 5321 §5.1: an SMTP client
//! that finds itself among the MX hosts must not deliver to it or to any less preferred one).
//!
//! A next hop is us when its name is our host name and its port is one we listen on, or when
//! one of its addresses reaches a listener: the bound address itself, or, for a listener bound
//! to `0.0.0.0`/`::`, any address of a local interface (read at each check, since interface
//! addresses change at run time) or the loopback and unspecified addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::server::canonical_ip;

/// Our host names and listener addresses. The default knows nothing and matches nothing.
#[derive(Debug, Clone, Default)]
pub struct LocalIdentity {
    /// Lower case, without a trailing dot.
    names: Vec<String>,
    listeners: Vec<SocketAddr>,
}

impl LocalIdentity {
    /// `names`: the host names we answer to (`hostname`, `delivery.hostname`); `listeners`: the
    /// addresses actually bound.
    pub fn new(names: &[&str], listeners: &[SocketAddr]) -> LocalIdentity {
        let mut norm: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        norm.sort();
        norm.dedup();
        LocalIdentity {
            names: norm,
            listeners: listeners.to_vec(),
        }
    }

    /// Whether `host:port` names one of our listeners by our own host name.
    pub fn is_self_name(&self, host: &str, port: u16) -> bool {
        let host = normalize(host);
        self.names.contains(&host) && self.listeners.iter().any(|l| l.port() == port)
    }

    /// Whether a connection to `addr` would reach one of our listeners.
    pub fn is_self_addr(&self, addr: SocketAddr) -> bool {
        let ip = canonical_ip(addr.ip());
        let mut interfaces: Option<Vec<IpAddr>> = None;
        self.listeners.iter().any(|l| {
            if l.port() != addr.port() {
                return false;
            }
            let bound = canonical_ip(l.ip());
            if bound == ip {
                return true;
            }
            if !bound.is_unspecified() {
                return false;
            }
            // `0.0.0.0` takes IPv4 only; `::` takes both (Linux binds it dual-stack).
            if bound.is_ipv4() && !ip.is_ipv4() {
                return false;
            }
            ip.is_loopback()
                || ip.is_unspecified()
                || interfaces.get_or_insert_with(interface_addrs).contains(&ip)
        })
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Addresses of every local network interface (`getifaddrs`); empty if it fails.
pub fn interface_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read and then free exactly once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` points to a sockaddr whose family says which struct it is.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(canonical_ip(IpAddr::V6(Ipv6Addr::from(
                    sin6.sin6_addr.s6_addr,
                ))));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bound_addresses_match_on_address_and_port() {
        let me = LocalIdentity::new(&["Relay.Example."], &[addr("192.0.2.7:25")]);
        assert!(me.is_self_addr(addr("192.0.2.7:25")));
        assert!(me.is_self_addr(addr("[::ffff:192.0.2.7]:25")));
        assert!(!me.is_self_addr(addr("192.0.2.7:2525")));
        assert!(!me.is_self_addr(addr("192.0.2.8:25")));
        assert!(me.is_self_name("relay.example", 25));
        assert!(me.is_self_name("RELAY.EXAMPLE.", 25));
        // Same machine, another service (a content filter on 10025): not us.
        assert!(!me.is_self_name("relay.example", 10025));
        assert!(!me.is_self_name("other.example", 25));
    }

    #[test]
    fn wildcard_listeners_match_local_interfaces() {
        let v4 = LocalIdentity::new(&[], &[addr("0.0.0.0:25")]);
        assert!(v4.is_self_addr(addr("127.0.0.1:25")));
        assert!(v4.is_self_addr(addr("127.3.4.5:25")));
        assert!(v4.is_self_addr(addr("0.0.0.0:25")));
        assert!(!v4.is_self_addr(addr("127.0.0.1:26")));
        assert!(
            !v4.is_self_addr(addr("192.0.2.1:25")),
            "TEST-NET is not local"
        );
        assert!(!v4.is_self_addr(addr("[::1]:25")), "0.0.0.0 takes no IPv6");
        let v6 = LocalIdentity::new(&[], &[addr("[::]:25")]);
        assert!(v6.is_self_addr(addr("[::1]:25")));
        assert!(v6.is_self_addr(addr("127.0.0.1:25")));
        for ip in interface_addrs() {
            assert!(v6.is_self_addr(SocketAddr::new(ip, 25)), "{ip}");
        }
        assert!(!LocalIdentity::default().is_self_addr(addr("127.0.0.1:25")));
    }

    #[test]
    fn interfaces_include_loopback() {
        assert!(interface_addrs().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
