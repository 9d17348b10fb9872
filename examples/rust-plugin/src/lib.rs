//! A minimal wasmrelay plugin: refuses recipients on a configured blocklist and stamps
//! accepted messages with a header.
//!
//! Build (from the repository root; `rustup target add wasm32-wasip2` once):
//!   cargo build --release --target wasm32-wasip2 --manifest-path examples/rust-plugin/Cargo.toml --target-dir target
//! The component is then `target/wasm32-wasip2/release/example_rust_plugin.wasm`. Try it
//! without a server:
//!   cargo run --release -- plugin test target/wasm32-wasip2/release/example_rust_plugin.wasm \
//!     --config 'blocked = "nobody@example.org"' --transcript examples/rust-plugin/session.txt
//! Load it from examples/relay.toml (paths are relative to the config file):
//!   [[plugins]]
//!   path = "../target/wasm32-wasip2/release/example_rust_plugin.wasm"
//!   config = { blocked = "nobody@example.org" }
//! and try it against the running relay:
//!   swaks --server 127.0.0.1:2525 --from a@example.org --to nobody@example.org

use wasmrelay_plugin_sdk::{export_plugin, host, Address, Context, Hook, Message, Plugin, Verdict};

struct Example {
    /// Recipients to refuse, lowercased.
    blocked: Vec<String>,
}

impl Plugin for Example {
    const HOOKS: &'static [Hook] = &[Hook::Rcpt, Hook::Data];

    fn init(config: &str) -> Result<Self, String> {
        // The config arrives as JSON: {"blocked": "a@x, b@y"}. A real plugin would use serde.
        let blocked = config
            .split_once("\"blocked\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(list, _)| list.split(',').map(|s| s.trim().to_lowercase()).collect())
            .unwrap_or_default();
        Ok(Example { blocked })
    }

    fn rcpt(&mut self, _ctx: &Context, recipient: &str) -> Verdict {
        let Ok(addr) = Address::parse(recipient) else {
            return Verdict::reject(553, "5.1.3", "malformed recipient");
        };
        if self.blocked.contains(&addr.to_string().to_lowercase()) {
            host::info(&format!("refusing {addr}"));
            return Verdict::reject(550, "5.1.1", "mailbox unavailable");
        }
        Verdict::Continue
    }

    fn data(&mut self, ctx: &Context, msg: &Message) -> Verdict {
        msg.add_header("X-Example-Plugin", &format!("seen {} recipients", ctx.recipients().len()));
        Verdict::Continue
    }
}

export_plugin!(Example);
