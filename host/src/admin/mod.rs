//! The admin server (`[admin] listen`): a JSON API over the running relay, the dashboard
//! page, and `/metrics` for Prometheus.
//!
//! Layout:
//! - `server`: the HTTP/1.1 server (hyper): bounded connections, request heads, header
//!   counts, bodies and time; methods other than GET, HEAD, POST and DELETE are refused.
//! - `guard`: who may ask: the bearer token (compared in constant time), and, for browsers,
//!   the `Host` and `Origin` checks that keep other web sites out of a token-less loopback
//!   API.
//! - `api`: the routes and what each does; `queue` and `plugins` the answers about the
//!   queue and the plugin chain; [`stats`] the [`EventTap`] behind the dashboard's charts.
//! - `assets/`: the dashboard (HTML, CSS, its script and a small SVG chart module),
//!   compiled into the binary: the page loads nothing from elsewhere.
//!
//! Everything under `/api/` and `/metrics` needs the token when one is configured; the page
//! and its scripts hold no data and are served without it (the page asks for the token and
//! sends it with each API call).
//!
//! [`EventTap`]: crate::events::EventTap

mod api;
mod guard;
mod plugins;
mod queue;
mod server;
pub mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::admin::AdminConfig;
use crate::config::plugins::PluginConfig;
use crate::control::SharedLists;
use crate::delivery::QueueHandle;
use crate::metrics::Metrics;
use crate::plugins::PluginHost;
use crate::relay::Reloader;
use crate::spool::Spool;
use crate::state::StateBackend;
pub use stats::Stats;

/// How often the queue is sampled for the dashboard (a walk over every envelope, so not
/// at each of its requests).
pub const QUEUE_SAMPLE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin.listen: cannot bind {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(crate::config::ConfigError),
}

/// The running relay, as the API sees it.
#[derive(Clone)]
pub struct Context {
    pub queue: QueueHandle,
    pub spool: Spool,
    pub state: Arc<dyn StateBackend>,
    pub lists: SharedLists,
    /// The loaded chain, replaced on reload.
    pub plugins: Arc<RwLock<Option<Arc<PluginHost>>>>,
    /// The `[[plugins]]` entries of the running config, replaced on reload.
    pub plugin_configs: Arc<RwLock<Vec<PluginConfig>>>,
    pub reloader: Reloader,
    /// The config file a reload re-reads; `None` when the relay was started from a config
    /// in memory (then the API cannot reload).
    pub config_path: Option<PathBuf>,
    pub metrics: Arc<Metrics>,
    pub stats: Arc<Stats>,
}

/// The admin server, bound and ready to run.
pub struct Admin {
    listener: TcpListener,
    config: AdminConfig,
    token: Option<String>,
}

impl Admin {
    /// Binds `[admin] listen`; `None` when the section is off.
    pub async fn bind(config: &AdminConfig) -> Result<Option<Admin>, AdminError> {
        let Some(address) = config.listen else {
            return Ok(None);
        };
        let token = config.load_token("admin").map_err(AdminError::Config)?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AdminError::Bind { address, source })?;
        Ok(Some(Admin {
            listener,
            config: config.clone(),
            token,
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown`, sampling the queue for the dashboard meanwhile.
    pub async fn run(self, context: Context, shutdown: CancellationToken) {
        let sampler = tokio::spawn(sample_queue(context.clone(), shutdown.clone()));
        server::serve(self, Arc::new(context), shutdown).await;
        let _ = sampler.await;
    }
}

async fn sample_queue(context: Context, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(QUEUE_SAMPLE);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let queue = queue::queue_now(&context).await;
        context.stats.sample_queue(queue);
    }
}
