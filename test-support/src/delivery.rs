//! Delivery in process: the library's queue runner over a spool in a temporary directory,
//! fed the way the SMTP listeners feed it, with a config whose timeouts and retry schedule
//! fit in a test.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmrelay::config::delivery::DeliveryConfig;
use wasmrelay::delivery::{MxResolver, QueueHandle, QueueRunner, Router, WakingStore};
use wasmrelay::smtp::session::MessageStore;
use wasmrelay::spool::{ClientInfo, Envelope, MessageId, Origin, Recipient, Spool};

/// `[delivery]` from `extra_toml` with short timeouts and a fast retry schedule (0.5 s, at
/// most 1 s, no jitter). With no nameserver given, lookups go to [`NO_DNS`](crate::NO_DNS):
/// a lookup a test did not plan for stays on this machine.
pub fn fast_config(extra_toml: &str) -> DeliveryConfig {
    let mut config: DeliveryConfig = toml::from_str(extra_toml).expect("test config parses");
    config.hostname = "relay.test".into();
    if config.resolver.nameservers.is_empty() {
        config.resolver.nameservers = vec![crate::NO_DNS.into()];
    }
    config.retry.initial_interval = Duration::from_millis(500);
    config.retry.max_interval = Duration::from_secs(1);
    config.retry.jitter = 0.0;
    config.timeouts.connect = Duration::from_secs(2);
    config.timeouts.greeting = Duration::from_secs(5);
    config.timeouts.command = Duration::from_secs(5);
    config.timeouts.data_final = Duration::from_secs(5);
    let mut errors = Vec::new();
    config.validate("delivery", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    config
}

/// A running queue runner over a spool in a temporary directory; stopped when dropped.
pub struct DeliveryQueue {
    pub spool: Spool,
    pub handle: QueueHandle,
    /// What the listeners store through: the spool, then a wake-up of the runner.
    pub store: WakingStore,
    spool_dir: Option<tempfile::TempDir>,
    token: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DeliveryQueue {
    pub async fn start(config: &DeliveryConfig) -> DeliveryQueue {
        let spool_dir = tempfile::tempdir().expect("a temporary directory");
        DeliveryQueue::start_in(config, spool_dir).await
    }

    /// A runner over an existing spool: what a restarted relay finds.
    pub async fn start_in(config: &DeliveryConfig, spool_dir: tempfile::TempDir) -> DeliveryQueue {
        DeliveryQueue::start_full(config, spool_dir, None).await
    }

    /// A runner whose `router` (what the plugin chain plugs in) comes before config routes.
    pub async fn start_with_router(
        config: &DeliveryConfig,
        router: Arc<dyn Router>,
    ) -> DeliveryQueue {
        let spool_dir = tempfile::tempdir().expect("a temporary directory");
        DeliveryQueue::start_full(config, spool_dir, Some(router)).await
    }

    async fn start_full(
        config: &DeliveryConfig,
        spool_dir: tempfile::TempDir,
        router: Option<Arc<dyn Router>>,
    ) -> DeliveryQueue {
        let (spool, _) = Spool::open(spool_dir.path()).await.expect("open the spool");
        let resolver = MxResolver::from_config(&config.resolver).expect("a resolver");
        let mut runner = QueueRunner::new(config, spool.clone(), resolver).expect("a queue runner");
        if let Some(router) = router {
            runner = runner.with_router(router);
        }
        let handle = runner.handle();
        let store = runner.store();
        let token = CancellationToken::new();
        let task = tokio::spawn(runner.run(token.clone()));
        DeliveryQueue {
            spool,
            handle,
            store,
            spool_dir: Some(spool_dir),
            token,
            task: Some(task),
        }
    }

    /// Spools a message as the SMTP server would, and wakes the runner.
    pub async fn submit(&self, from: Option<&str>, rcpts: &[&str], message: &[u8]) -> Envelope {
        let env = envelope(&self.spool, from, rcpts, message);
        self.store
            .store(&env, message.into())
            .await
            .expect("spool the message");
        env
    }

    /// Waits until the first recipient of message `id` has had at least `attempts` delivery
    /// attempts; returns the envelope then.
    pub async fn wait_attempts(
        &self,
        id: &MessageId,
        attempts: u32,
        timeout: Duration,
    ) -> Envelope {
        crate::wait_for_async(
            &format!("{attempts} attempt(s) for {id:?}"),
            timeout,
            || async move {
                let env = self.spool.envelope(id).await.ok()?;
                (env.recipients[0].attempts >= attempts).then_some(env)
            },
        )
        .await
    }

    /// Waits until the spool is empty: every recipient done, DSNs included.
    pub async fn wait_empty(&self, timeout: Duration) {
        crate::wait_for_async("an empty spool", timeout, || async {
            self.spool.list().await.is_empty().then_some(())
        })
        .await
    }

    /// Stops the runner; returns the spool directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("the runner stops cleanly");
        }
        self.spool_dir.take().expect("stopped once")
    }
}

impl Drop for DeliveryQueue {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// An envelope for `message` as a trusted client on 127.0.0.1 (in `relay_networks`) would
/// leave it: DKIM signs it.
pub fn envelope(spool: &Spool, from: Option<&str>, rcpts: &[&str], message: &[u8]) -> Envelope {
    Envelope {
        id: spool.new_id(),
        received_at: wasmrelay::spool::unix_now(),
        mail_from: from.map(String::from),
        recipients: rcpts
            .iter()
            .map(|r| Recipient::pending(r.to_string()))
            .collect(),
        client: ClientInfo {
            ip: [127, 0, 0, 1].into(),
            helo: "client.test".into(),
            auth_user: None,
            tls: false,
            origin: Origin::RelayNetwork,
        },
        eight_bit: false,
        smtputf8: false,
        ret_headers_only: false,
        envid: None,
        size: message.len() as u64,
        listener: String::new(),
        annotations: Vec::new(),
        held: false,
        trace: None,
    }
}
