//! The control socket: `<spool>/control.sock`, a Unix socket through which `wasmrelay queue
//! flush|bounce` reaches the running relay's queue and `wasmrelay list` its live state
//! backend. One line in, one line out:
//! - `flush` · `flush ID` · `bounce ID` · `hold ID` · `release ID` · `delete ID` → `ok` or
//!   `error: ...` (`hold`, `release` and `delete` answer once the spool records them)
//! - `list {JSON request}` ([`ListRequest`]) → `ok {JSON answer}` ([`ListAnswer`]) or
//!   `error: ...`. JSON keeps any list member on one line.
//!
//! Only the relay's own user (and root) may use it: the socket is `0600` in a `0700` spool,
//! and each connection's peer credentials are checked as well, so a loosened mode alone does
//! not open it to every local user. Requests are still checked (declared lists, member
//! sizes) and bounded in length.
//!
//! [`ListAnswer`]: crate::state::admin::ListAnswer

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::lists::ListConfig;
use crate::delivery::{QueueHandle, QueueOp};
use crate::spool::MessageId;
use crate::state::admin::{self, ListRequest};
use crate::state::StateBackend;

/// Longest request line: a list request with a member of 1 KiB, escaped.
const MAX_REQUEST: u64 = 16 * 1024;

/// The `[[lists]]` of the running config, replaced on reload.
pub type SharedLists = Arc<RwLock<Vec<ListConfig>>>;

/// What the control socket acts on.
#[derive(Clone)]
pub struct Control {
    pub queue: QueueHandle,
    pub state: Arc<dyn StateBackend>,
    pub lists: SharedLists,
}

pub fn socket_path(spool_dir: &Path) -> PathBuf {
    spool_dir.join("control.sock")
}

/// Binds the socket (replacing a stale one: the spool's owner lock already guarantees we are
/// the only relay on this spool) and serves it until shutdown.
pub fn start(
    spool_dir: &Path,
    control: Control,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let path = socket_path(spool_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                s = listener.accept() => s,
                _ = shutdown.cancelled() => break,
            };
            match stream {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, control.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

/// Whether the peer runs as our user or as root.
fn peer_allowed(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    match stream.peer_cred() {
        Ok(cred) => cred.uid() == me || cred.uid() == 0,
        Err(_) => false,
    }
}

async fn serve(stream: UnixStream, control: Control) {
    let allowed = peer_allowed(&stream);
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut read = BufReader::new(read.take(MAX_REQUEST));
    if read.read_line(&mut line).await.is_err() {
        return;
    }
    let answer = if !allowed {
        warn!(?uid, "control socket: refused a client of another user");
        "error: permission denied: not the relay's user".to_string()
    } else {
        match line.trim().strip_prefix("list ") {
            Some(json) => list(json, &control).await,
            None => execute(line.trim(), &control.queue).await,
        }
    };
    let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
}

async fn list(json: &str, control: &Control) -> String {
    let req: ListRequest = match serde_json::from_str(json) {
        Ok(req) => req,
        Err(e) => return format!("error: bad list request: {e}"),
    };
    let lists = control
        .lists
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match admin::execute(control.state.as_ref(), &lists, &req).await {
        Ok(answer) => {
            info!(request = %json, "control: list");
            let json = serde_json::to_string(&answer).expect("answers serialize");
            format!("ok {json}")
        }
        Err(e) => format!("error: {e}"),
    }
}

async fn execute(command: &str, queue: &QueueHandle) -> String {
    let mut words = command.split_whitespace();
    let verb = words.next().unwrap_or("");
    let id = words.next().map(MessageId::parse);
    match (verb, id, words.next()) {
        ("flush", None, None) => {
            info!("control: flush");
            queue.flush();
            "ok".into()
        }
        ("flush", Some(Some(id)), None) => {
            info!(id = %id, "control: flush");
            queue.wake(id);
            "ok".into()
        }
        ("bounce", Some(Some(id)), None) => {
            info!(id = %id, "control: bounce");
            queue.bounce(id);
            "ok".into()
        }
        (verb, Some(Some(id)), None) if QueueOp::from_name(verb).is_some() => {
            let op = QueueOp::from_name(verb).expect("checked above");
            info!(id = %id, "control: {verb}");
            match queue.op(id, op).await {
                Ok(()) => "ok".into(),
                Err(e) => format!("error: {e}"),
            }
        }
        (_, Some(None), _) => "error: not a message id".into(),
        _ => format!("error: unknown command {command:?}"),
    }
}

/// Sends one command to the relay owning `spool_dir`; `Err` if no relay is listening.
pub async fn send(spool_dir: &Path, command: &str) -> std::io::Result<String> {
    let stream = UnixStream::connect(socket_path(spool_dir)).await?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{command}\n").as_bytes()).await?;
    write.shutdown().await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    Ok(line.trim().to_string())
}
