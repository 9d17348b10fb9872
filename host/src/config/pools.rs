//! `[[delivery.pools]]`: named smart-host pools. A plugin's `route` decision names a pool;
//! the hosts, their TLS policy and the credentials stay in the relay's config, so no plugin
//! ever holds a password.
//!
//! ```toml
//! [[delivery.pools]]
//! name = "transactional"
//! hosts = [{ host = "smtp.provider.example", port = 587, tls = "require",
//!            auth = { user = "relay", password = "..." } }]
//! max_connections = 4
//! ```

use serde::Deserialize;

use super::delivery::SmartHostConfig;

/// One pool: hosts tried in order (failover) and its own connection cap.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// The name route decisions use: 1..=64 bytes of `a-z 0-9 - _ .`.
    pub name: String,
    /// Smart hosts, tried in order.
    pub hosts: Vec<SmartHostConfig>,
    /// Most simultaneous connections to this pool; 0 uses `delivery.per_destination`.
    pub max_connections: usize,
}

pub(crate) fn validate(pools: &[PoolConfig], key: &str, err: &mut impl FnMut(String, String)) {
    for (i, pool) in pools.iter().enumerate() {
        let pk = format!("{key}[{i}]");
        if !super::valid_name(&pool.name) {
            err(
                format!("{pk}.name"),
                "must be 1 to 64 characters of a-z 0-9 - _ .".into(),
            );
        } else if pools[..i].iter().any(|p| p.name == pool.name) {
            err(
                format!("{pk}.name"),
                format!("pool {:?} is declared twice", pool.name),
            );
        }
        if pool.hosts.is_empty() {
            err(
                format!("{pk}.hosts"),
                "a pool needs at least one host".into(),
            );
        }
        for (j, h) in pool.hosts.iter().enumerate() {
            h.validate(&format!("{pk}.hosts[{j}]"), err);
        }
    }
}
