//! The tracking endpoint: the HTTP side of the `tracker` plugin's links.
//!
//! | request | does | answers |
//! |---|---|---|
//! | `GET /o/TOKEN` | records an `open` (with a count per recipient) | 200, a 1×1 transparent GIF |
//! | `GET /c/TOKEN` | records a `click` | 302 to the URL signed inside the token |
//! | `GET /u/TOKEN` | nothing | 200, a page whose button POSTs to the same URL |
//! | `POST /u/TOKEN` | records an `unsubscribe`, adds the recipient to the suppression list | 200, a confirmation page |
//! | `HEAD` of the above | nothing | the GET's status and headers |
//!
//! A token that does not verify (forged, tampered, of another kind, older than
//! `[tracking] max_age`) gets the same `404` as an unknown path and records nothing, so
//! responses say nothing about tokens beyond "not found". Only `POST` unsubscribes (RFC
//! 8058): mail security gateways fetch links in advance, and a `GET` that unsubscribed
//! would unsubscribe everyone behind one. They do record opens and clicks; the events
//! carry the client's address and `User-Agent` so analyses can leave scanners out.
//!
//! Layout: [`Endpoint`] (here) holds the keys and the state it records into; `handler`
//! turns a request into a response; `record` writes events, counts and the suppression
//! list; `server` is the HTTP/1.1 listener (hyper) with its connection cap and timeouts.

mod handler;
mod record;
mod server;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use wasmrelay_tracking_token::Key;

use crate::config::tracking::TrackingConfig;
use crate::config::Config;
use crate::events::Events;
use crate::state::StateBackend;

pub use handler::Reply;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error("tracking.listen: cannot bind {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(crate::config::ConfigError),
}

/// What every request needs, shared by the connections.
pub struct Endpoint {
    /// Swapped on reload, so a rotated `secret` (the old one moved to `old_secrets`) is
    /// verified as soon as the plugin signs with it.
    keys: RwLock<Arc<Vec<Key>>>,
    config: TrackingConfig,
    /// The suppression list's `max_members`.
    max_members: u64,
    backend: Arc<dyn StateBackend>,
    events: Events,
}

impl Endpoint {
    pub fn new(
        config: &Config,
        backend: Arc<dyn StateBackend>,
        events: Events,
    ) -> Result<Endpoint, TrackingError> {
        let tracking = &config.tracking;
        let keys = tracking
            .keys(&config.plugins)
            .map_err(TrackingError::Config)?;
        let max_members = config
            .lists
            .iter()
            .find(|l| l.name == tracking.suppression_list)
            .map_or(crate::config::lists::DEFAULT_MAX_MEMBERS, |l| l.max_members);
        Ok(Endpoint {
            keys: RwLock::new(Arc::new(keys)),
            config: tracking.clone(),
            max_members,
            backend,
            events,
        })
    }
}

impl Endpoint {
    /// Takes the keys of a reloaded config (`TrackingConfig::keys`); the rest of
    /// `[tracking]` needs a restart.
    pub fn set_keys(&self, keys: Vec<Key>) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    fn keys(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The endpoint with its socket bound, ready to serve.
pub struct Tracking {
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
}

impl Tracking {
    /// Binds `[tracking] listen`; `None` when the endpoint is off.
    pub async fn bind(
        config: &Config,
        backend: Arc<dyn StateBackend>,
        events: Events,
    ) -> Result<Option<Tracking>, TrackingError> {
        let Some(address) = config.tracking.listen else {
            return Ok(None);
        };
        let endpoint = Endpoint::new(config, backend, events)?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| TrackingError::Bind { address, source })?;
        Ok(Some(Tracking {
            listener,
            endpoint: Arc::new(endpoint),
        }))
    }

    /// The shared state, for reloads.
    pub fn endpoint(&self) -> Arc<Endpoint> {
        self.endpoint.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound socket has an address")
    }
}
