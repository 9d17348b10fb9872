//! Idle connections kept for the next transaction to the same next hop, opened the same way.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::task::JoinSet;

use super::client::SmtpClient;
use super::runner::Shared;
use super::send::Hop;
use crate::config::delivery::TlsPolicy;

/// An idle connection kept for the next transaction to the same next hop.
pub(crate) struct Idle {
    client: SmtpClient,
    since: Instant,
}

/// A pooled connection is reused only by a hop that would have opened it the same way: same
/// address and name, same TLS policy, same certificate verification, same credentials (by
/// digest: a key is no place for a password). A connection opened without verification never
/// serves a route that needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    addr: SocketAddr,
    name: String,
    tls: TlsPolicy,
    verify: bool,
    /// SHA-256 of user and password, and whether they may go over plaintext.
    auth: Option<([u8; 32], bool)>,
}

impl PoolKey {
    pub(crate) fn new(addr: SocketAddr, hop: &Hop) -> PoolKey {
        use sha2::Digest;
        let o = &hop.options;
        let auth = o.auth.as_ref().map(|a| {
            let mut digest = sha2::Sha256::new();
            digest.update(a.user.as_bytes());
            digest.update([0]);
            digest.update(a.password.as_bytes());
            (digest.finalize().into(), a.allow_plaintext)
        });
        PoolKey {
            addr,
            name: hop.name.clone(),
            tls: o.tls,
            verify: o.tls_verify,
            auth,
        }
    }
}

/// A pooled connection to `key` that still answers RSET.
pub(crate) async fn checkout(shared: &Shared, key: &PoolKey) -> Option<SmtpClient> {
    loop {
        let idle = {
            let mut pool = shared.pool.lock().await;
            let list = pool.get_mut(key)?;
            let idle = list.pop();
            if list.is_empty() {
                pool.remove(key);
            }
            idle?
        };
        if idle.since.elapsed() >= shared.config.idle_timeout {
            tokio::spawn(idle.client.quit());
            continue;
        }
        let mut client = idle.client;
        if client.rset().await.is_ok() {
            return Some(client);
        }
    }
}

/// Keeps `client` for reuse, unless it carried its share of transactions.
pub(crate) async fn checkin(shared: &Shared, key: PoolKey, client: SmtpClient) {
    if client.transactions() >= shared.config.max_messages_per_connection {
        tokio::spawn(client.quit());
        return;
    }
    let mut pool = shared.pool.lock().await;
    pool.entry(key).or_default().push(Idle {
        client,
        since: Instant::now(),
    });
}

/// Closes connections idle longer than `idle_timeout`, and forgets the concurrency limits of
/// destinations nobody is delivering to.
pub(crate) async fn reap_idle(shared: &Shared) {
    shared
        .destinations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|_, limit| std::sync::Arc::strong_count(limit) > 1);
    let mut stale = Vec::new();
    {
        let mut pool = shared.pool.lock().await;
        for list in pool.values_mut() {
            let (old, fresh): (Vec<_>, Vec<_>) = list
                .drain(..)
                .partition(|i| i.since.elapsed() >= shared.config.idle_timeout);
            *list = fresh;
            stale.extend(old);
        }
        pool.retain(|_, l| !l.is_empty());
    }
    for idle in stale {
        tokio::spawn(idle.client.quit());
    }
}

/// Closes every pooled connection (QUIT), at shutdown.
pub(crate) async fn close_all(shared: &Shared) {
    let all: Vec<Idle> = shared
        .pool
        .lock()
        .await
        .drain()
        .flat_map(|(_, v)| v)
        .collect();
    let mut set = JoinSet::new();
    for idle in all {
        set.spawn(idle.client.quit());
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::delivery::{AuthConfig, TimeoutConfig};
    use crate::delivery::client::ClientOptions;

    fn hop(tls: TlsPolicy, verify: bool, auth: Option<(&str, &str)>) -> Hop {
        Hop {
            name: "smtp.test".into(),
            port: 587,
            options: ClientOptions {
                helo_name: "relay.test".into(),
                tls,
                tls_verify: verify,
                auth: auth.map(|(user, password)| AuthConfig {
                    user: user.into(),
                    password: password.into(),
                    allow_plaintext: false,
                }),
                timeouts: TimeoutConfig::default(),
            },
        }
    }

    #[test]
    fn keys_separate_every_way_of_opening_a_connection() {
        let addr: SocketAddr = "127.0.0.1:587".parse().unwrap();
        let keys = [
            PoolKey::new(addr, &hop(TlsPolicy::Opportunistic, true, None)),
            PoolKey::new(addr, &hop(TlsPolicy::Require, true, None)),
            PoolKey::new(addr, &hop(TlsPolicy::Require, false, None)),
            PoolKey::new(
                addr,
                &hop(TlsPolicy::Require, true, Some(("u", "first-secret"))),
            ),
            PoolKey::new(
                addr,
                &hop(TlsPolicy::Require, true, Some(("u", "other-secret"))),
            ),
            PoolKey::new(
                addr,
                &hop(TlsPolicy::Require, true, Some(("v", "first-secret"))),
            ),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
            let shown = format!("{a:?}");
            assert!(!shown.contains("secret"), "a password in a key: {shown}");
        }
        assert_eq!(
            keys[3],
            PoolKey::new(
                addr,
                &hop(TlsPolicy::Require, true, Some(("u", "first-secret")))
            )
        );
    }
}
