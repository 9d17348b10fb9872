//! What every misbehaving test plugin shares: it handles only `rcpt`, answers `continue` to
//! every recipient but `bad@...`, and misbehaves there in its own way. A plugin crate is
//! its doc line and one [`on_bad_rcpt!`] call.

pub use wasmrelay_plugin_sdk as sdk;

/// Touched by plugins that must not let the compiler prove their loop does nothing.
pub static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Exports a plugin whose `rcpt` hook evaluates `$misbehave` (a `Verdict`, or a diverging
/// expression) for `bad@...`, with the recipient bound to `$recipient`.
#[macro_export]
macro_rules! on_bad_rcpt {
    (|$recipient:ident| $misbehave:expr) => {
        struct Bad;

        impl $crate::sdk::Plugin for Bad {
            const HOOKS: &'static [$crate::sdk::Hook] = &[$crate::sdk::Hook::Rcpt];
            fn init(_config: &str) -> Result<Self, String> {
                Ok(Bad)
            }
            fn rcpt(
                &mut self,
                _ctx: &$crate::sdk::Context,
                $recipient: &str,
            ) -> $crate::sdk::Verdict {
                if !$recipient.starts_with("bad@") {
                    return $crate::sdk::Verdict::Continue;
                }
                $misbehave
            }
        }

        $crate::sdk::export_plugin!(Bad);
    };
}
