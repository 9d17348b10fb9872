//! Handles every session hook and always says `continue`: the benchmark's baseline.
use wasmrelay_plugin_sdk::{export_plugin, Hook, Plugin};

struct Noop;

impl Plugin for Noop {
    const HOOKS: &'static [Hook] = &[
        Hook::Connect,
        Hook::Helo,
        Hook::Auth,
        Hook::MailFrom,
        Hook::Rcpt,
        Hook::Data,
        Hook::Queued,
        Hook::Route,
        Hook::DeliveryResult,
    ];
    fn init(_config: &str) -> Result<Self, String> {
        Ok(Noop)
    }
}

export_plugin!(Noop);
