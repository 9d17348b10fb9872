//! Wiring: turns a [`Config`] into bound listeners over an open spool, and runs them.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::smtp::server::{self, ConnectionLimits, Listener};
use crate::smtp::session::{MessageStore, SessionEnv, Users};
use crate::smtp::tls;
use crate::spool::{Spool, SpoolError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listeners[{index}] ({address}): TLS: {source}")]
    Tls {
        index: usize,
        address: SocketAddr,
        source: tls::TlsError,
    },
    #[error("listeners[{index}]: cannot bind {address}: {source}")]
    Bind {
        index: usize,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
}

/// A relay with its sockets bound and its spool recovered, ready to serve.
pub struct Relay {
    listeners: Vec<Listener>,
    limits: ConnectionLimits,
    pub spool: Spool,
}

impl Relay {
    pub async fn start(config: &Config) -> Result<Relay, StartError> {
        let (spool, report) = Spool::open(&config.spool.dir).await?;
        info!(dir = %config.spool.dir.display(), recovered = report.recovered, discarded = report.discarded_partial, "spool open");
        let store: Arc<dyn MessageStore> = Arc::new(spool.clone());
        let listeners = bind_listeners(config, store).await?;
        let limits = ConnectionLimits::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        Ok(Relay {
            listeners,
            limits,
            spool,
        })
    }

    /// Addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local_addr()).collect()
    }

    /// Serves until `shutdown`, then lets sessions finish.
    pub async fn run(self, shutdown: CancellationToken) {
        server::serve(self.listeners, self.limits, shutdown).await;
        info!("relay stopped");
    }
}

/// Binds every configured listener with the given message store.
pub async fn bind_listeners(
    config: &Config,
    store: Arc<dyn MessageStore>,
) -> Result<Vec<Listener>, StartError> {
    let users = Users::from_config(&config.users);
    let mut listeners = Vec::new();
    for (index, l) in config.listeners.iter().enumerate() {
        let tls = match (&l.tls_cert, &l.tls_key) {
            (Some(cert), Some(key)) => {
                Some(tls::acceptor(cert, key).map_err(|source| StartError::Tls {
                    index,
                    address: l.address,
                    source,
                })?)
            }
            _ => None,
        };
        let env = SessionEnv {
            hostname: config.hostname.clone(),
            listener: l.clone(),
            relay: config.relay.clone(),
            limits: config.limits.clone(),
            users: users.clone(),
            tls,
            store: store.clone(),
        };
        let listener = Listener::bind(env)
            .await
            .map_err(|source| StartError::Bind {
                index,
                address: l.address,
                source,
            })?;
        listeners.push(listener);
    }
    Ok(listeners)
}
