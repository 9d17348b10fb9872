//! MX and address resolution with hickory.
//!
//! RFC 5321 §5.1: MX records in preference order (random among equal preferences), each
//! resolved to its addresses; no MX at all means the domain itself is the one implicit MX.
//! RFC 7505: a single MX of `.` (null MX) means the domain takes no mail: a permanent failure.
//! NXDOMAIN is permanent; SERVFAIL, REFUSED and timeouts are transient. Answers are cached per
//! TTL by hickory's response cache.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig as HickoryConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use rand::seq::SliceRandom;
use wasmrelay_codec::reply::Enhanced;

use super::Failure;
use crate::config::delivery::ResolverConfig;

/// One mail exchanger, in the order it should be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    /// Host name without the trailing dot.
    pub name: String,
}

/// The relay's resolver; cheap to clone (hickory's resolver and cache are shared).
#[derive(Clone)]
pub struct MxResolver {
    inner: TokioResolver,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the DNS resolver: {0}")]
pub struct ResolverBuildError(String);

impl MxResolver {
    /// Builds a resolver from `[delivery.resolver]`: the system configuration, or explicit
    /// nameservers (UDP with TCP fallback) when listed.
    pub fn from_config(config: &ResolverConfig) -> Result<MxResolver, ResolverBuildError> {
        let provider = TokioRuntimeProvider::default();
        let addrs = config.nameserver_addrs();
        let mut builder = if addrs.is_empty() {
            TokioResolver::builder(provider).map_err(|e| ResolverBuildError(e.to_string()))?
        } else {
            let servers = addrs.iter().map(|a| nameserver(*a)).collect();
            TokioResolver::builder_with_config(
                HickoryConfig::from_parts(None, vec![], servers),
                provider,
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.ndots = 0;
        if !addrs.is_empty() {
            // Explicit servers answer everything; no search list, no hosts file surprises.
            opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        }
        let inner = builder
            .build()
            .map_err(|e| ResolverBuildError(e.to_string()))?;
        Ok(MxResolver { inner })
    }

    /// The mail exchangers for `domain`, best first. An empty answer becomes the implicit MX.
    pub async fn mx(&self, domain: &str) -> Result<Vec<MxHost>, Failure> {
        if domain.starts_with('[') {
            // An address literal (RFC 5321 §4.1.3) names the host itself: no MX lookup.
            return Ok(vec![MxHost {
                preference: 0,
                name: domain.to_string(),
            }]);
        }
        let fqdn = fqdn(domain);
        let lookup = match self.inner.mx_lookup(fqdn.as_str()).await {
            Ok(l) => l,
            Err(e) if e.is_nx_domain() => {
                return Err(Failure::local(
                    Enhanced(5, 1, 2),
                    format!("domain {domain} does not exist (NXDOMAIN)"),
                ))
            }
            Err(e) if e.is_no_records_found() => {
                return Ok(vec![MxHost {
                    preference: 0,
                    name: domain.to_string(),
                }])
            }
            Err(e) => return Err(transient(domain, "MX", &e)),
        };
        let mut hosts: Vec<MxHost> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(MxHost {
                    preference: mx.preference,
                    name: mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                }),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return Ok(vec![MxHost {
                preference: 0,
                name: domain.to_string(),
            }]);
        }
        if hosts.iter().any(|h| h.name.is_empty()) {
            // RFC 7505 §3: a null MX is the only record; if others are present, ignore it.
            if hosts.len() == 1 {
                return Err(Failure::local(
                    Enhanced(5, 1, 10),
                    format!("domain {domain} accepts no mail (null MX, RFC 7505)"),
                ));
            }
            hosts.retain(|h| !h.name.is_empty());
        }
        // Random order among equal preferences spreads load (RFC 5321 §5.1), then stable sort.
        hosts.shuffle(&mut rand::rng());
        hosts.sort_by_key(|h| h.preference);
        Ok(hosts)
    }

    /// The addresses of `host` (A and AAAA). An IP literal is returned as is.
    pub async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, Failure> {
        let literal = host.trim_matches(['[', ']']);
        // RFC 5321 §4.1.3: the `IPv6:` tag is case-insensitive, like every SMTP keyword.
        let literal = match literal.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => &literal[5..],
            _ => literal,
        };
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.inner.lookup_ip(fqdn(host).as_str()).await {
            Ok(l) => {
                let ips: Vec<IpAddr> = l.iter().collect();
                if ips.is_empty() {
                    Err(Failure::local(
                        Enhanced(4, 4, 3),
                        format!("host {host} has no address"),
                    ))
                } else {
                    Ok(ips)
                }
            }
            // A missing MX target is usually a DNS mistake being fixed: keep trying until
            // the message expires rather than bounce on the first miss.
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Err(Failure::local(
                Enhanced(4, 4, 3),
                format!("host {host} has no address"),
            )),
            Err(e) => Err(transient(host, "A/AAAA", &e)),
        }
    }

    /// Drops every cached answer (after a config reload, for example).
    pub fn clear_cache(&self) {
        self.inner.clear_cache();
    }

    /// The underlying hickory resolver, for DKIM key lookups and plugin DNS capabilities.
    pub fn hickory(&self) -> &TokioResolver {
        &self.inner
    }
}

fn nameserver(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

fn fqdn(name: &str) -> String {
    let name = name.trim_end_matches('.');
    format!("{name}.")
}

fn transient(name: &str, kind: &str, e: &NetError) -> Failure {
    Failure::local(
        Enhanced(4, 4, 3),
        format!("{kind} lookup for {name} failed: {e}"),
    )
}
