//! The plugin chain as the API shows it: each loaded plugin with where it came from, the
//! hooks it declared, and its counters (`crate::plugins::PluginMetrics`).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::api::Reply;
use super::Context;
use crate::config::plugins::PluginConfig;
use crate::plugins::VerdictKind;

/// The loaded chain in order. `with_version` adds each plugin's version: the relay's for a
/// bundled plugin, else the SHA-256 of its component file as it is now (read off the
/// runtime; a file replaced since the last reload shows the new one's).
pub async fn chain(ctx: &Context, with_version: bool) -> Value {
    let host = ctx
        .plugins
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(host) = host else {
        return json!([]);
    };
    let configs = ctx
        .plugin_configs
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut out = Vec::new();
    for (i, m) in host.metrics().into_iter().enumerate() {
        let config = configs.iter().find(|c| c.display_name() == m.name);
        let mut verdicts = BTreeMap::new();
        for kind in VerdictKind::ALL {
            let n: u64 = m
                .verdicts
                .iter()
                .filter(|c| c.verdict == kind)
                .map(|c| c.count)
                .sum();
            verdicts.insert(kind.name(), n);
        }
        let by_hook: Vec<Value> = m
            .verdicts
            .iter()
            .map(
                |c| json!({ "hook": c.hook.name(), "verdict": c.verdict.name(), "count": c.count }),
            )
            .collect();
        let mut plugin = json!({
            "name": m.name,
            "source": config.map(|c| c.origin().display().to_string()),
            "hooks": host.hooks_of(i).iter().map(|h| h.name()).collect::<Vec<_>>(),
            "calls": m.calls,
            "errors": m.errors(),
            "instantiations": m.instantiations,
            "failures": {
                "trap": m.traps, "cpu": m.cpu, "wall_time": m.wall_time, "memory": m.memory,
                "capabilities": m.capabilities, "malformed": m.malformed,
                "instantiate": m.instantiate,
            },
            "verdicts": verdicts,
            "verdicts_by_hook": by_hook,
        });
        if with_version {
            plugin["version"] = match config {
                Some(c) => version(c.clone()).await,
                None => Value::Null,
            };
        }
        out.push(plugin);
    }
    Value::Array(out)
}

async fn version(config: PluginConfig) -> Value {
    if config.builtin.is_some() {
        return json!(format!(
            "bundled with wasmrelay {}",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let digest = tokio::task::spawn_blocking(move || {
        config.read_component().map(|bytes| Sha256::digest(&bytes))
    })
    .await;
    match digest {
        Ok(Ok(d)) => {
            let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
            json!(format!("sha256:{hex}"))
        }
        _ => Value::Null,
    }
}

pub async fn status(ctx: &Context) -> Reply {
    Reply::ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": ctx.config_path.as_ref().map(|p| p.display().to_string()),
        "queue": super::queue::queue_now(ctx).await,
        "plugins": chain(ctx, true).await,
    }))
}
