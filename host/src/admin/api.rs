//! The admin routes. Every answer is JSON (`{"error": "..."}` on failure) except the
//! dashboard's files and `/metrics`.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/api/stats` | the dashboard's data: per-minute counts, per-sender-domain totals, queue, plugins |
//! | GET | `/api/status` | version, queue summary, plugin chain |
//! | GET | `/api/plugins` | the plugin chain: name, source, version, hooks, calls, errors, verdicts |
//! | GET | `/api/queue` | every queued message, oldest first (at most 10 000) |
//! | GET | `/api/queue/ID` | one envelope and its message's header section |
//! | POST | `/api/queue/flush` | attempt every message now |
//! | POST | `/api/queue/ID/flush` · `hold` · `release` · `bounce` · `delete` | one message |
//! | DELETE | `/api/queue/ID` | as `POST .../delete` |
//! | GET | `/api/lists` | the declared `[[lists]]` |
//! | GET | `/api/lists/NAME` | a list's members |
//! | POST | `/api/lists/NAME/add` · `remove` | body `{"member": "...", "ttl_ms": 86400000}` (`ttl_ms` for `add` only, optional) |
//! | POST | `/api/reload` | re-read the config file, as SIGHUP does |
//! | GET | `/metrics` | Prometheus (OpenMetrics text) |
//! | GET | `/` | the dashboard |

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Context;
use crate::delivery::QueueOp;
use crate::spool::MessageId;
use crate::state::admin::{self, AdminError, ListAnswer, ListRequest};

const INDEX_HTML: &str = include_str!("assets/index.html");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
const CHART_JS: &str = include_str!("assets/chart.js");
const DASHBOARD_CSS: &str = include_str!("assets/dashboard.css");

const JSON: &str = "application/json";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The page runs its own script and style only, and talks to this server only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// One answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Reply {
    fn new(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![
                ("content-type", content_type.to_string()),
                ("cache-control", "no-store".to_string()),
                ("x-content-type-options", "nosniff".to_string()),
            ],
            body: body.into(),
        }
    }

    pub fn json(status: StatusCode, value: &Value) -> Reply {
        let mut body = serde_json::to_vec(value).expect("JSON values serialize");
        body.push(b'\n');
        Reply::new(status, JSON, body)
    }

    pub fn ok(value: Value) -> Reply {
        Reply::json(StatusCode::OK, &value)
    }

    pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
        Reply::json(status, &json!({ "error": message.to_string() }))
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    fn asset(content_type: &str, text: &'static str) -> Reply {
        Reply::new(
            StatusCode::OK,
            content_type,
            Bytes::from_static(text.as_bytes()),
        )
        .header("content-security-policy", CSP)
        .header("x-frame-options", "DENY")
    }
}

fn not_found() -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "no such resource")
}

fn wrong_method(allowed: &str) -> Reply {
    Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").header("allow", allowed)
}

pub async fn route(ctx: &Context, method: &Method, path: &str, body: &[u8]) -> Reply {
    let read = method == Method::GET || method == Method::HEAD;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] | ["index.html"] if read => Reply::asset("text/html; charset=utf-8", INDEX_HTML),
        ["dashboard.js"] if read => Reply::asset("text/javascript; charset=utf-8", DASHBOARD_JS),
        ["chart.js"] if read => Reply::asset("text/javascript; charset=utf-8", CHART_JS),
        ["dashboard.css"] if read => Reply::asset("text/css; charset=utf-8", DASHBOARD_CSS),
        ["metrics"] if read => Reply::new(StatusCode::OK, OPENMETRICS, ctx.metrics.encode()),
        ["" | "index.html" | "dashboard.js" | "chart.js" | "dashboard.css" | "metrics"] => {
            wrong_method("GET, HEAD")
        }
        ["api", rest @ ..] => api(ctx, method, rest, body).await,
        _ => not_found(),
    }
}

async fn api(ctx: &Context, method: &Method, path: &[&str], body: &[u8]) -> Reply {
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    match path {
        ["stats"] if get => super::queue::stats(ctx).await,
        ["status"] if get => super::plugins::status(ctx).await,
        ["plugins"] if get => Reply::ok(super::plugins::chain(ctx, true).await),
        ["queue"] if get => super::queue::list(ctx).await,
        ["queue", "flush"] if post => {
            tracing::info!("admin: flush");
            ctx.queue.flush();
            Reply::ok(json!({ "ok": true }))
        }
        ["queue", id] if get => match parse_id(id) {
            Ok(id) => super::queue::show(ctx, &id).await,
            Err(reply) => reply,
        },
        ["queue", id] if method == Method::DELETE => message(ctx, id, "delete").await,
        ["queue", id, action] if post => message(ctx, id, action).await,
        ["lists"] if get => {
            let lists = ctx.lists.read().unwrap_or_else(|p| p.into_inner()).clone();
            let lists: Vec<Value> = lists
                .iter()
                .map(|l| json!({ "name": l.name, "max_members": l.max_members }))
                .collect();
            Reply::ok(json!({ "lists": lists }))
        }
        ["lists", name] if get => {
            list(
                ctx,
                ListRequest::Show {
                    list: name.to_string(),
                },
            )
            .await
        }
        ["lists", name, op @ ("add" | "remove")] if post => match member_body(body) {
            Ok(b) => {
                let (list, member) = (name.to_string(), b.member);
                let req = if *op == "add" {
                    ListRequest::Add {
                        list,
                        member,
                        ttl_ms: b.ttl_ms,
                    }
                } else {
                    ListRequest::Remove { list, member }
                };
                self::list(ctx, req).await
            }
            Err(reply) => reply,
        },
        ["reload"] if post => reload(ctx).await,
        ["stats" | "status" | "plugins" | "queue" | "lists"] | ["queue" | "lists", _] => {
            wrong_method(if path[0] == "queue" && path.len() == 2 {
                "GET, HEAD, DELETE"
            } else {
                "GET, HEAD"
            })
        }
        ["reload"] | ["queue" | "lists", _, _] => wrong_method("POST"),
        _ => not_found(),
    }
}

fn parse_id(id: &str) -> Result<MessageId, Reply> {
    MessageId::parse(id).ok_or_else(|| Reply::error(StatusCode::BAD_REQUEST, "not a message id"))
}

/// One message's action: `flush`, `bounce`, or a [`QueueOp`].
async fn message(ctx: &Context, id: &str, action: &str) -> Reply {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    if let Some(op) = QueueOp::from_name(action) {
        return match ctx.queue.op(id.clone(), op).await {
            Ok(()) => Reply::ok(json!({ "ok": true, "id": id.0, "action": action })),
            Err(crate::delivery::QueueOpError::NotFound(_)) => {
                Reply::error(StatusCode::NOT_FOUND, format!("no queued message {id}"))
            }
            Err(e) => Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    }
    if !matches!(action, "flush" | "bounce") {
        return not_found();
    }
    if ctx.spool.envelope(&id).await.is_err() {
        return Reply::error(StatusCode::NOT_FOUND, format!("no queued message {id}"));
    }
    tracing::info!(%id, "admin: {action}");
    if action == "flush" {
        ctx.queue.wake(id.clone());
    } else {
        ctx.queue.bounce(id.clone());
    }
    Reply::ok(json!({ "ok": true, "id": id.0, "action": action }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    member: String,
    #[serde(default)]
    ttl_ms: Option<u64>,
}

fn member_body(body: &[u8]) -> Result<MemberBody, Reply> {
    serde_json::from_slice(body).map_err(|e| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"member\": \"...\", \"ttl_ms\": N}}: {e}"),
        )
    })
}

async fn list(ctx: &Context, req: ListRequest) -> Reply {
    let lists = ctx.lists.read().unwrap_or_else(|p| p.into_inner()).clone();
    match admin::execute(ctx.state.as_ref(), &lists, &req).await {
        Ok(ListAnswer::Members(members)) => Reply::ok(json!({
            "list": req.list(),
            "members": members,
        })),
        Ok(ListAnswer::Changed(changed)) => {
            tracing::info!(request = ?req, changed, "admin: list");
            Reply::ok(json!({ "list": req.list(), "changed": changed }))
        }
        Err(e @ AdminError::UnknownList { .. }) => Reply::error(StatusCode::NOT_FOUND, e),
        Err(e @ AdminError::Member(_)) => Reply::error(StatusCode::BAD_REQUEST, e),
        Err(e) => Reply::error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn reload(ctx: &Context) -> Reply {
    let Some(path) = &ctx.config_path else {
        return Reply::error(
            StatusCode::CONFLICT,
            "this relay was not started from a config file",
        );
    };
    tracing::info!(config = %path.display(), "admin: reloading");
    match ctx.reloader.reload_file(path).await {
        Ok(()) => Reply::ok(json!({ "ok": true, "config": path.display().to_string() })),
        Err(e) => {
            tracing::error!(error = %e, "reload refused; keeping the running configuration");
            Reply::error(StatusCode::UNPROCESSABLE_ENTITY, e)
        }
    }
}
