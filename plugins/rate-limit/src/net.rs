//! Client addresses: networks for exemptions, and the prefix a rule keys an address by (an
//! IPv6 client usually holds a whole /64, so counting single addresses would let it rotate).

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::keys::push_decimal;

/// An IPv4 or IPv6 network, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or network"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0..={max}"))?,
        };
        Ok(Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is the IPv4 client it stands for.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// `ip` with the bits past `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// Appends the key text of `ip` for a rule: the network of the configured prefix in
/// canonical form (`192.0.2.0/24`, `2001:db8:1:2::/64`), or the address at full length.
pub fn write_key(out: &mut String, ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) {
    let ip = canonical(ip);
    let (prefix, full) = match ip {
        IpAddr::V4(_) => (ipv4_prefix, 32),
        IpAddr::V6(_) => (ipv6_prefix, 128),
    };
    match mask(ip, prefix) {
        IpAddr::V4(a) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
    if prefix < full {
        out.push('/');
        push_decimal(out, u64::from(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str, v4: u8, v6: u8) -> String {
        let mut s = String::new();
        write_key(&mut s, ip.parse().unwrap(), v4, v6);
        s
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_prefix() {
        assert_eq!(key("2001:db8:1:2:aaaa::1", 32, 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:DB8:1:2:ffff:0:0:9", 32, 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2::1", 32, 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8::1", 32, 128), "2001:db8::1");
        assert_eq!(key("192.0.2.77", 32, 64), "192.0.2.77");
        assert_eq!(key("192.0.2.77", 24, 64), "192.0.2.0/24");
        assert_eq!(
            key("::ffff:192.0.2.77", 32, 64),
            "192.0.2.77",
            "mapped IPv4 is IPv4"
        );
        assert_eq!(key("192.0.2.77", 0, 64), "0.0.0.0/0");
    }

    #[test]
    fn networks() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.255.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::a00:1".parse().unwrap()));
        let h = Cidr::parse("2001:db8::1").unwrap();
        assert!(h.contains("2001:db8::1".parse().unwrap()));
        assert!(!h.contains("2001:db8::2".parse().unwrap()));
        assert!(Cidr::parse("::/0")
            .unwrap()
            .contains("2001:db8::2".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1/33").is_err());
        assert!(Cidr::parse("example.org").is_err());
        assert!(Cidr::parse("10.0.0.1/x").is_err());
    }
}
