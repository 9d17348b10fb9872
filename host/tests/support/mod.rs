//! Shared helpers for the delivery integration tests: loopback DNS and SMTP servers written in
//! Python (dnslib, aiosmtpd), started by the test and killed when dropped, plus spool and
//! runner plumbing.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wasmrelay::config::delivery::DeliveryConfig;

use wasmrelay::delivery::{MxResolver, QueueHandle, QueueRunner, Router, WakingStore};
use wasmrelay::smtp::session::MessageStore;
use wasmrelay::spool::{ClientInfo, Envelope, Origin, Recipient, Spool};

pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support")
}

/// A helper process; killed and reaped on drop.
pub struct Proc {
    child: Child,
    pub port: u16,
}

impl Proc {
    /// Starts `python3 script args…` and waits for its `PORT <n>` line.
    pub fn python(script: &str, args: &[&str]) -> Proc {
        let mut child = Command::new("python3")
            .arg(support_dir().join(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("{script} did not start: {line:?}")
            });
        Proc { child, port }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as the downstream server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub meta: serde_json::Value,
    pub data: Vec<u8>,
}

impl Received {
    /// The envelope sender; aiosmtpd reports the null sender as `<>`, returned here as "".
    pub fn mail_from(&self) -> &str {
        match self.meta["mail_from"].as_str().unwrap() {
            "<>" => "",
            s => s,
        }
    }
    pub fn rcpts(&self) -> Vec<String> {
        self.meta["rcpt_tos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// An aiosmtpd sink writing what it receives to a temporary directory.
pub struct Sink {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
}

impl Sink {
    pub fn start(host: &str, port: u16, extra: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let port = port.to_string();
        let mut args = vec![
            dir.path().to_str().unwrap(),
            "--host",
            host,
            "--port",
            &port,
        ];
        args.extend_from_slice(extra);
        let proc = Proc::python("smtp_sink.py", &args);
        Sink { proc, dir }
    }

    pub fn port(&self) -> u16 {
        self.proc.port
    }

    pub fn messages(&self) -> Vec<Received> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|json| Received {
                meta: serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap(),
                data: std::fs::read(json.with_extension("eml")).unwrap(),
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived (panics after `secs`).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages, got {}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The dnslib zone server.
pub struct Dns {
    pub proc: Proc,
    _zone: tempfile::TempDir,
}

impl Dns {
    pub fn start(zone: serde_json::Value) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zone.json");
        std::fs::write(&path, serde_json::to_vec(&zone).unwrap()).unwrap();
        let proc = Proc::python("dns_server.py", &[path.to_str().unwrap()]);
        Dns { proc, _zone: dir }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.proc.port)
    }
}

/// A config with short timeouts and a fast retry schedule.
pub fn fast_config(extra_toml: &str) -> DeliveryConfig {
    let mut config: DeliveryConfig = toml::from_str(extra_toml).expect("test config parses");
    config.hostname = "relay.test".into();
    // Lookups a test did not plan for must stay on this machine: a closed loopback port.
    if config.resolver.nameservers.is_empty() {
        config.resolver.nameservers = vec!["127.0.0.1:9".into()];
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

/// A running queue runner over a spool in a temporary directory.
pub struct Relay {
    pub spool: Spool,
    pub handle: QueueHandle,
    /// What the listeners would store through: spool, then wake.
    pub store: WakingStore,
    spool_dir: Option<tempfile::TempDir>,
    token: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    pub async fn start(config: &DeliveryConfig) -> Relay {
        let spool_dir = tempfile::tempdir().unwrap();
        Relay::start_in(config, spool_dir).await
    }

    pub async fn start_in(config: &DeliveryConfig, spool_dir: tempfile::TempDir) -> Relay {
        Relay::start_full(config, spool_dir, None).await
    }

    pub async fn start_with_router(config: &DeliveryConfig, router: Arc<dyn Router>) -> Relay {
        Relay::start_full(config, tempfile::tempdir().unwrap(), Some(router)).await
    }

    async fn start_full(
        config: &DeliveryConfig,
        spool_dir: tempfile::TempDir,
        router: Option<Arc<dyn Router>>,
    ) -> Relay {
        let (spool, _) = Spool::open(spool_dir.path()).await.unwrap();
        let resolver = MxResolver::from_config(&config.resolver).unwrap();
        let mut runner = QueueRunner::new(config, spool.clone(), resolver).unwrap();
        if let Some(router) = router {
            runner = runner.with_router(router);
        }
        let handle = runner.handle();
        let store = runner.store();
        let token = CancellationToken::new();
        let task = tokio::spawn(runner.run(token.clone()));
        Relay {
            spool,
            handle,
            store,
            spool_dir: Some(spool_dir),
            token,
            task: Some(task),
        }
    }

    /// Spools a message (as the SMTP server would) and wakes the runner.
    pub async fn submit(&self, from: Option<&str>, rcpts: &[&str], message: &[u8]) -> Envelope {
        let env = envelope(&self.spool, from, rcpts, message);
        self.store.store(&env, message).await.unwrap();
        env
    }

    /// Waits until the spool is empty (every recipient done, DSNs included).
    pub async fn wait_empty(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = self.spool.list().await;
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "spool not empty: {left:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.spool_dir.take().unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

pub fn envelope(spool: &Spool, from: Option<&str>, rcpts: &[&str], message: &[u8]) -> Envelope {
    Envelope {
        id: spool.new_id(),
        received_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        mail_from: from.map(String::from),
        recipients: rcpts
            .iter()
            .map(|r| Recipient::pending(r.to_string()))
            .collect(),
        client: ClientInfo {
            ip: "127.0.0.1".parse().unwrap(),
            helo: "client.test".into(),
            auth_user: None,
            tls: false,
            // Submitted as a trusted client would: DKIM signs it.
            origin: Origin::RelayNetwork,
        },
        eight_bit: false,
        smtputf8: false,
        ret_headers_only: false,
        envid: None,
        size: message.len() as u64,
        listener: String::new(),
        annotations: Vec::new(),
    }
}
