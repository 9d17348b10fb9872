//! Misbehaving test plugin: Allocates without bound on RCPT TO:<bad@...>; every other recipient gets `continue`.
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
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            COUNTER.fetch_add(hoard.len(), std::sync::atomic::Ordering::Relaxed);
        }
        Verdict::Continue
    }
}

export_plugin!(Bad);
