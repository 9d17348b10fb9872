//! Wiring: turns a [`Config`] into bound listeners over an open spool with the plugin chain
//! and delivery, runs them, and reloads what can change without dropping a session.

mod router;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::plugins::PluginConfig;
use crate::config::{Config, ConfigErrors};
use crate::delivery::{DeliveryError, LocalIdentity, MxResolver, QueueHandle, QueueRunner};
use crate::events::{EventLog, EventLogError, Events};
use crate::metrics::Metrics;
use crate::msgauth::Authenticator;
use crate::plugins::{DnsLookup, PluginHost, PluginHostOptions, PluginLoadError};
use crate::smtp::auth_guard::AuthGuard;
use crate::smtp::server::{self, ConnectionLimits, Listener, SharedEnv};
use crate::smtp::session::{MessageStore, SessionEnv, Users};
use crate::smtp::tls;
use crate::spool::{Spool, SpoolError, SpoolOptions};
use crate::state::journal::LockMode;
use crate::state::{self, StateBackend};
use crate::tracking::{Tracking, TrackingError};
use router::{PluginRouter, SharedPlugins};

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
    #[error("spool: incoming directory in {dir}: {source}")]
    Incoming { dir: String, source: std::io::Error },
    #[error("listeners: {0} (listener changes need a restart)")]
    ListenersChanged(String),
    #[error("delivery.resolver: {0}")]
    Resolver(String),
    #[error("delivery: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("plugins: {0}")]
    Plugins(#[from] PluginLoadError),
    #[error("control socket in {dir}: {source}")]
    Control { dir: String, source: std::io::Error },
    #[error("state: {0}")]
    State(#[from] state::OpenError),
    #[error(transparent)]
    Events(#[from] EventLogError),
    #[error(transparent)]
    Tracking(#[from] TrackingError),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::WebhookError),
    #[error(transparent)]
    Feedback(#[from] crate::feedback::FeedbackError),
}

/// Why a reload from the config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Apply(#[from] StartError),
}

/// A relay with its sockets bound and its spool recovered, ready to serve.
pub struct Relay {
    listeners: Vec<Listener>,
    limits: ConnectionLimits,
    /// How long sessions get to finish after a shutdown starts.
    grace: Duration,
    reloader: Reloader,
    runner: QueueRunner,
    pub spool: Spool,
    /// The event log's writer, closed last so the final events are written.
    event_log: Option<EventLog>,
    /// The `[tracking]` HTTP endpoint, when configured.
    tracking: Option<Tracking>,
    /// Every Prometheus metric of this relay.
    pub metrics: Arc<Metrics>,
    /// The `[admin]` server, when configured, and what its dashboard draws.
    admin: Option<crate::admin::Admin>,
    stats: Arc<crate::admin::Stats>,
    /// The file reloads re-read (see [`Relay::with_config_file`]).
    config_path: Option<PathBuf>,
    /// The webhooks' senders and outboxes, flushed at the end of a shutdown.
    webhooks: crate::webhooks::Webhooks,
}

/// Swaps the session environment of every listener: new sessions see the new config,
/// sessions in flight finish with the one they started with.
#[derive(Clone)]
pub struct Reloader {
    envs: Vec<SharedEnv>,
    addresses: Vec<SocketAddr>,
    store: Arc<dyn MessageStore>,
    plugins: SharedPlugins,
    capabilities: PluginCapabilities,
    /// Built once on the relay's resolver: its record caches outlive reloads.
    authenticator: Arc<Authenticator>,
    /// AUTH failure counts and the password-check pool outlive reloads too.
    auth_guard: Arc<AuthGuard>,
    /// The tracking endpoint, whose keys follow the tracker plugin's config.
    tracking: Option<Arc<crate::tracking::Endpoint>>,
}

/// What plugin chains share across reloads: rate/kv state must survive a reload, and the
/// event log (fixed until a restart) takes their events.
#[derive(Clone)]
struct PluginCapabilities {
    backend: Arc<dyn StateBackend>,
    dns: Arc<dyn DnsLookup>,
    /// The running `[[lists]]`, for the control socket.
    lists: crate::control::SharedLists,
    /// The running `[[plugins]]`, for the admin API.
    plugin_configs: Arc<RwLock<Vec<PluginConfig>>>,
    events: Events,
    metrics: Arc<Metrics>,
}

impl PluginCapabilities {
    /// The configured chain, or `None` without plugins.
    async fn load(&self, config: &Config) -> Result<Option<Arc<PluginHost>>, PluginLoadError> {
        if config.plugins.is_empty() {
            return Ok(None);
        }
        let opts = PluginHostOptions {
            backend: self.backend.clone(),
            dns: Some(self.dns.clone()),
            events: Arc::new(self.events.clone()),
            metrics: self.metrics.clone(),
            ..plugin_options(config)
        };
        PluginHost::load(&config.plugins, opts).await.map(Some)
    }
}

/// The plugin host settings `config` implies, on the in-process state backend, without DNS
/// and with events to the log: what `check-config` loads plugins with.
pub fn plugin_options(config: &Config) -> PluginHostOptions {
    PluginHostOptions {
        lists: config.lists.clone(),
        pools: config
            .delivery
            .pools
            .iter()
            .map(|p| p.name.clone())
            .collect(),
        max_message_size: config.limits.max_message_size as usize,
        ..PluginHostOptions::from_config(&config.plugin_runtime)
    }
}

impl Reloader {
    /// Applies a validated config. Everything is built before anything is swapped, so a
    /// failure (a bad certificate, changed listeners) leaves the running config in place.
    pub async fn reload(&self, config: &Config) -> Result<(), StartError> {
        let addresses: Vec<SocketAddr> = config.listeners.iter().map(|l| l.address).collect();
        if addresses != self.addresses {
            return Err(StartError::ListenersChanged(format!(
                "{:?} → {:?}",
                self.addresses, addresses
            )));
        }
        let plugins = self.capabilities.load(config).await?;
        self.auth_guard.reconfigure(&config.limits);
        let tracking_keys = match (&self.tracking, config.tracking.is_enabled()) {
            (Some(_), true) => Some(
                config
                    .tracking
                    .keys(&config.plugins)
                    .map_err(TrackingError::Config)?,
            ),
            _ => None,
        };
        let envs = session_envs(
            config,
            &self.store,
            &plugins,
            (&self.authenticator, &self.auth_guard),
            &self.capabilities.events,
        )?;
        for (shared, env) in self.envs.iter().zip(envs) {
            shared.replace(env);
        }
        *self.plugins.write().unwrap_or_else(|p| p.into_inner()) = plugins;
        if let (Some(endpoint), Some(keys)) = (&self.tracking, tracking_keys) {
            endpoint.set_keys(keys);
        }
        *self
            .capabilities
            .lists
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config.lists.clone();
        *self
            .capabilities
            .plugin_configs
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config.plugins.clone();
        info!("configuration reloaded");
        Ok(())
    }

    /// Re-reads the config file at `path` and applies it: what SIGHUP and the admin API's
    /// reload do. A config that fails validation is refused and the running one stays.
    pub async fn reload_file(&self, path: &Path) -> Result<(), ReloadError> {
        let config = Config::load(path)?;
        self.reload(&config).await?;
        Ok(())
    }
}

impl Relay {
    pub async fn start(config: &Config) -> Result<Relay, StartError> {
        let options = SpoolOptions {
            commit_delay: config.spool.commit_delay,
            ..SpoolOptions::default()
        };
        let (spool, report) = Spool::open_with(&config.spool.dir, options).await?;
        info!(
            dir = %config.spool.dir.display(),
            recovered = report.recovered,
            discarded = report.discarded_partial,
            corrupt = report.corrupt,
            "spool open"
        );
        crate::smtp::incoming::prepare(&config.spool.dir).map_err(|source| {
            StartError::Incoming {
                dir: config.spool.dir.display().to_string(),
                source,
            }
        })?;
        let resolver = MxResolver::from_config(&config.delivery.resolver)
            .map_err(|e| StartError::Resolver(e.to_string()))?;
        let (backend, lists) =
            state::open(&config.state, &config.spool.dir, LockMode::Wait).await?;
        if let Some(lists) = lists {
            info!(
                members = lists.members,
                records = lists.records,
                torn_bytes = lists.torn_bytes,
                corrupt = lists.corrupt,
                compacted = lists.compacted,
                "lists loaded"
            );
        }
        let authenticator = Arc::new(Authenticator::new(resolver.hickory().clone()));
        let auth_guard = AuthGuard::new(&config.limits);
        let metrics = Arc::new(Metrics::with_max_domains(
            config.telemetry.metrics_max_domains,
        ));
        let stats = Arc::new(crate::admin::Stats::new());
        let (events, event_log) = EventLog::open(&config.events)?;
        let mut taps = vec![metrics.tap()];
        if config.admin.is_enabled() {
            taps.push(stats.clone() as Arc<dyn crate::events::EventTap>);
        }
        let (hooks, webhooks) =
            crate::webhooks::start(&config.webhooks, &config.spool.dir, &metrics)?;
        taps.extend(hooks);
        let (events, feedback) =
            crate::feedback::attach(config, events.with_taps(taps), &backend, &metrics)?;
        metrics.watch(spool.clone(), events.clone(), backend.clone());
        let admin = crate::admin::Admin::bind(&config.admin).await?;
        let capabilities = PluginCapabilities {
            backend,
            dns: Arc::new(resolver.hickory().clone()),
            lists: Arc::new(RwLock::new(config.lists.clone())),
            plugin_configs: Arc::new(RwLock::new(config.plugins.clone())),
            events: events.clone(),
            metrics: metrics.clone(),
        };
        let chain = capabilities.load(config).await?;
        let tracking = Tracking::bind(config, capabilities.backend.clone(), events.clone()).await?;
        let plugins: SharedPlugins = Arc::new(RwLock::new(chain.clone()));
        let router = PluginRouter {
            plugins: plugins.clone(),
            events: events.clone(),
        };
        let runner = QueueRunner::new(&config.delivery, spool.clone(), resolver)?
            .with_router(Arc::new(router))
            .with_events(events.clone())
            .with_metrics(metrics.clone());
        // Stores go through the runner's store, which wakes delivery for each new message.
        let store: Arc<dyn MessageStore> = Arc::new(runner.store());
        let store = crate::feedback::wrap(store, feedback);
        let mut listeners = Vec::new();
        for (index, env) in session_envs(
            config,
            &store,
            &chain,
            (&authenticator, &auth_guard),
            &events,
        )?
        .into_iter()
        .enumerate()
        {
            let address = env.listener.address;
            let listener = Listener::bind(env)
                .await
                .map_err(|source| StartError::Bind {
                    index,
                    address,
                    source,
                })?;
            listeners.push(listener);
        }
        let bound: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr()).collect();
        let names = [config.hostname.as_str(), config.delivery.hostname.as_str()];
        let runner = runner.with_identity(LocalIdentity::new(&names, &bound));
        let reloader = Reloader {
            envs: listeners.iter().map(|l| l.env.clone()).collect(),
            addresses: config.listeners.iter().map(|l| l.address).collect(),
            store,
            plugins,
            capabilities,
            authenticator,
            auth_guard,
            tracking: tracking.as_ref().map(Tracking::endpoint),
        };
        let limits = ConnectionLimits::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        )
        .with_instruments(metrics.connections.clone());
        Ok(Relay {
            listeners,
            limits,
            grace: config.limits.shutdown_grace,
            reloader,
            runner,
            spool,
            event_log,
            tracking,
            metrics,
            admin,
            stats,
            config_path: None,
            webhooks,
        })
    }

    /// Names the file this relay's config came from, so that the admin API can reload it.
    pub fn with_config_file(mut self, path: &Path) -> Relay {
        self.config_path = Some(path.to_path_buf());
        self
    }

    /// Addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local_addr()).collect()
    }

    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The running queue, for `flush`/`bounce`.
    pub fn queue(&self) -> QueueHandle {
        self.runner.handle()
    }

    /// Serves and delivers until `shutdown`; then lets sessions finish their transactions and
    /// delivery attempts their grace period.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let control = crate::control::Control {
            queue: self.runner.handle(),
            state: self.reloader.capabilities.backend.clone(),
            lists: self.reloader.capabilities.lists.clone(),
        };
        crate::control::start(self.spool.dir(), control, shutdown.clone()).map_err(|source| {
            StartError::Control {
                dir: self.spool.dir().display().to_string(),
                source,
            }
        })?;
        let admin = self.admin.map(|admin| {
            let context = crate::admin::Context {
                queue: self.runner.handle(),
                spool: self.spool.clone(),
                state: self.reloader.capabilities.backend.clone(),
                lists: self.reloader.capabilities.lists.clone(),
                plugins: self.reloader.plugins.clone(),
                plugin_configs: self.reloader.capabilities.plugin_configs.clone(),
                reloader: self.reloader.clone(),
                config_path: self.config_path.clone(),
                metrics: self.metrics.clone(),
                stats: self.stats.clone(),
            };
            tokio::spawn(admin.run(context, shutdown.clone()))
        });
        let delivery = tokio::spawn(self.runner.run(shutdown.clone()));
        let tracking = self.tracking.map(|t| tokio::spawn(t.run(shutdown.clone())));
        server::serve(self.listeners, self.limits, shutdown, self.grace).await;
        let _ = delivery.await;
        if let Some(tracking) = tracking {
            let _ = tracking.await;
        }
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        self.webhooks.close().await;
        if let Some(log) = self.event_log {
            log.close().await;
        }
        info!("relay stopped");
        Ok(())
    }
}

/// One session environment per configured listener, in order.
fn session_envs(
    config: &Config,
    store: &Arc<dyn MessageStore>,
    plugins: &Option<Arc<PluginHost>>,
    (authenticator, auth_guard): (&Arc<Authenticator>, &Arc<AuthGuard>),
    events: &Events,
) -> Result<Vec<SessionEnv>, StartError> {
    let users = Users::from_config(&config.users, auth_guard.clone());
    let mut envs = Vec::new();
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
        envs.push(SessionEnv {
            hostname: config.hostname.clone(),
            listener: l.clone(),
            relay: config.relay.clone(),
            limits: config.limits.clone(),
            users: users.clone(),
            tls,
            store: store.clone(),
            plugins: plugins.clone(),
            authenticator: Some(authenticator.clone()),
            events: events.clone(),
        });
    }
    Ok(envs)
}
