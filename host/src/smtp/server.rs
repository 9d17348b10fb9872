//! The tokio server: binds every listener, caps connections (total and per client IP), hands
//! each socket to a session, and shuts down gracefully.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use wasmrelay_codec::reply::{Enhanced, Reply};

use super::session::{self, SessionEnv};
use crate::metrics::ConnectionInstruments;

/// The environment new sessions of a listener get. A reload swaps it; sessions in flight keep
/// the one they started with.
#[derive(Clone)]
pub struct SharedEnv(Arc<RwLock<Arc<SessionEnv>>>);

impl SharedEnv {
    pub fn new(env: SessionEnv) -> Self {
        SharedEnv(Arc::new(RwLock::new(Arc::new(env))))
    }

    pub fn current(&self) -> Arc<SessionEnv> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, env: SessionEnv) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(env);
    }
}

/// A bound listener and the environment its sessions get.
pub struct Listener {
    pub socket: TcpListener,
    pub env: SharedEnv,
}

impl Listener {
    pub async fn bind(env: SessionEnv) -> std::io::Result<Listener> {
        let socket = TcpListener::bind(env.listener.address).await?;
        Ok(Listener {
            socket,
            env: SharedEnv::new(env),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("bound socket has an address")
    }
}

/// Connection caps shared by all listeners.
#[derive(Clone)]
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
    /// Open, accepted and refused connections, for the metrics.
    instruments: ConnectionInstruments,
}

/// Held by a session for its lifetime; releases both caps on drop.
struct ConnectionGuard {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    instruments: ConnectionInstruments,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.instruments.closed();
        let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionLimits {
            total: Arc::new(Semaphore::new(max_total)),
            per_ip: Default::default(),
            max_per_ip,
            instruments: ConnectionInstruments::default(),
        }
    }

    /// Counts connections into `instruments` (the relay's metrics).
    pub fn with_instruments(mut self, instruments: ConnectionInstruments) -> Self {
        self.instruments = instruments;
        self
    }

    fn admit(&self, ip: IpAddr) -> Result<ConnectionGuard, Reply> {
        let permit = self.total.clone().try_acquire_owned().map_err(|_| {
            self.instruments.refused(false);
            Reply::new(
                421,
                Enhanced(4, 3, 2),
                "Too many connections, try again later",
            )
        })?;
        let ip = client_key(ip);
        let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            self.instruments.refused(true);
            return Err(Reply::new(
                421,
                Enhanced(4, 7, 0),
                "Too many connections from your address",
            ));
        }
        *n += 1;
        self.instruments.opened();
        Ok(ConnectionGuard {
            _permit: permit,
            ip,
            per_ip: self.per_ip.clone(),
            instruments: self.instruments.clone(),
        })
    }
}

/// What the per-IP cap counts: an IPv4 address, or an IPv6 /64. One IPv6 host usually holds
/// a whole /64 (SLAAC, privacy addresses) and can connect from a fresh address each time.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// Accepts on every listener until `shutdown`, then waits for all sessions to end (each
/// finishes its transaction and gets `421 4.3.2`), for at most `grace`: sessions still
/// running then are cut off (their unacknowledged mail was never accepted).
pub async fn serve(
    listeners: Vec<Listener>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let tracker = TaskTracker::new();
    let cut_off = CancellationToken::new();
    for listener in listeners {
        let tasks = Tasks {
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            cut_off: cut_off.clone(),
        };
        let limits = limits.clone();
        tracker.spawn(async move { accept_loop(listener, limits, tasks).await });
    }
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => return,
        _ = shutdown.cancelled() => {}
    }
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            sessions = tracker.len(),
            ?grace,
            "shutdown grace period over; closing the remaining sessions"
        );
        cut_off.cancel();
        tracker.wait().await;
    }
}

/// Where an accept loop puts its sessions, and the two signals they obey.
struct Tasks {
    tracker: TaskTracker,
    /// Finish the transaction, then `421`.
    shutdown: CancellationToken,
    /// Stop now: the grace period is over.
    cut_off: CancellationToken,
}

async fn accept_loop(listener: Listener, limits: ConnectionLimits, tasks: Tasks) {
    let Tasks {
        tracker,
        shutdown,
        cut_off,
    } = tasks;
    let local = listener.local_addr();
    info!(address = %local, listener = %listener.env.current().listener.display_name(), "listening");
    loop {
        let accepted = tokio::select! {
            a = listener.socket.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                error!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        stream.set_nodelay(true).ok();
        match limits.admit(peer.ip()) {
            Ok(guard) => {
                let env = listener.env.current();
                let shutdown = shutdown.clone();
                let cut_off = cut_off.clone();
                // The session's future is kilobytes: boxed, spawning moves a pointer instead
                // of copying it into the task.
                tracker.spawn(async move {
                    tokio::select! {
                        _ = Box::pin(session::run(stream, peer, local, env, shutdown)) => {}
                        _ = cut_off.cancelled() => {}
                    }
                    drop(guard);
                });
            }
            Err(reply) => {
                warn!(peer = %peer, reply = %reply, "connection refused");
                tracker.spawn(refuse(stream, reply));
            }
        }
    }
    info!(address = %local, "listener stopped");
}

async fn refuse(mut stream: TcpStream, reply: Reply) {
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&reply.to_wire())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a closure returns, without calling it.
    fn future_size<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_session_task_is_small() {
        // Each connection's task is allocated at this size for the session's whole life, idle
        // or not; verbs that need more (DATA, AUTH, TLS, plugin calls) box their own state.
        let peer: SocketAddr = "192.0.2.1:2525".parse().unwrap();
        let size = future_size(|stream: TcpStream, env: Arc<SessionEnv>| {
            session::run(stream, peer, peer, env, CancellationToken::new())
        });
        eprintln!("session task: {size} bytes");
        assert!(size <= 4096, "a session's future is {size} bytes");
    }

    #[test]
    fn per_ip_cap_counts_ipv6_by_64() {
        let limits = ConnectionLimits::new(10, 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        let b = limits
            .admit(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .unwrap();
        assert!(limits.admit(ip("2001:db8:1:2:abcd::9")).is_err());
        let other = limits.admit(ip("2001:db8:1:3::1")).unwrap();
        // IPv4, native or mapped, per address.
        let v4 = limits.admit(ip("192.0.2.1")).unwrap();
        let mapped = limits.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert!(limits.admit(ip("192.0.2.1")).is_err());
        assert!(limits.admit(ip("192.0.2.2")).is_ok());
        drop((a, other, v4, mapped));
        assert!(limits.admit(ip("2001:db8:1:2::7")).is_ok());
        drop(b);
    }
}
