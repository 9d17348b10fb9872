//! Misbehaving test plugin: Calls a capability a million times on RCPT TO:<bad@...>; every other recipient gets `continue`.
#![allow(unreachable_code, unused_imports, dead_code)]
use wasmrelay_plugin_sdk::{export_plugin, host, Context, Hook, Plugin, Verdict};

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Bad;

impl Plugin for Bad {
    const HOOKS: &'static [Hook] = &[Hook::Rcpt];
    fn init(_config: &str) -> Result<Self, String> {
        Ok(Bad)
    }
    fn rcpt(&mut self, _ctx: &Context, recipient: &str) -> Verdict {
        if !recipient.starts_with("bad@") {
            return Verdict::Continue;
        }
        for i in 0..1_000_000u32 {
            let _ = host::counter_add("spam", i as i64, std::time::Duration::from_secs(60));
        }
        Verdict::Continue
    }
}

export_plugin!(Bad);
