//! Write wasmrelay policy plugins in Rust.
//!
//! Layout: [`Plugin`] is the trait a plugin implements (every hook defaults to `continue`),
//! [`export_plugin!`] turns a type into a component, [`host`] wraps the capabilities the relay
//! grants, [`Address`] parses envelope addresses, and `mime` adds text-part helpers to
//! [`Message`]. The interface itself is
//! `wit/plugin.wit` (`wasmrelay:plugin@0.2.9`); its generated bindings stay private.
//!
//! ```no_run
//! use wasmrelay_plugin_sdk::{export_plugin, Context, Hook, Plugin, Verdict};
//!
//! struct NoPostmaster;
//!
//! impl Plugin for NoPostmaster {
//!     const HOOKS: &'static [Hook] = &[Hook::Rcpt];
//!     fn init(_config: &str) -> Result<Self, String> {
//!         Ok(NoPostmaster)
//!     }
//!     fn rcpt(&mut self, _ctx: &Context, recipient: &str) -> Verdict {
//!         if recipient.starts_with("postmaster@") {
//!             return Verdict::reject(550, "5.1.1", "no such user");
//!         }
//!         Verdict::Continue
//!     }
//! }
//!
//! export_plugin!(NoPostmaster);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to list in `relay.toml`.

mod address;
pub mod host;
mod mime;
mod reply;

pub use address::{Address, AddressError};
pub use bindings::wasmrelay::plugin::types::{
    AuthResult, Context, DeliveryReport, DeliveryStatus, EnhancedCode, Envelope, Hook, IpAddress,
    Message, MimePart, Notify, PartError, Recipient, Reply, RouteDecision, TlsInfo, TlsPolicy,
    Verdict,
};

/// Most header names [`Plugin::wanted_headers`] may give for one hook.
pub const MAX_WANTED_HEADERS: usize = 16;

/// `IpAddr::from(ctx.remote_address())`: the client's address without parsing text.
impl From<IpAddress> for std::net::IpAddr {
    fn from(ip: IpAddress) -> std::net::IpAddr {
        match ip {
            IpAddress::Ipv4((a, b, c, d)) => std::net::IpAddr::from([a, b, c, d]),
            IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
                std::net::IpAddr::from([a, b, c, d, e, f, g, h])
            }
        }
    }
}

use __private::bindings;

/// Generated bindings: not part of the API, reachable only for [`export_plugin!`].
#[doc(hidden)]
pub mod __private {
    pub use bindings::__export_plugin_world;
    pub use bindings::exports::wasmrelay::plugin::hooks::Guest;

    /// Tells the host, while it asks `hooks()`, what each hook in `hooks` is limited to:
    /// header fields for the message hooks ([`crate::Plugin::wanted_headers`]), recipient
    /// counts for `rcpt` and `data` ([`crate::Plugin::wanted_recipient_count`]), message
    /// traits for `data` ([`crate::Plugin::wanted_message_traits`]), lists a recipient must
    /// be on for `rcpt` ([`crate::Plugin::wanted_recipient_lists`]), counts and rates the
    /// relay keeps itself for `connect` and `mail-from` ([`crate::Plugin::relay_limits`]). A
    /// refused declaration is logged; the hook is then called as without it, which is never
    /// wrong.
    pub fn declare_wants<P: crate::Plugin>(plugin: &P, hooks: &[crate::Hook]) {
        use crate::Hook;
        for hook in [Hook::Data, Hook::RecipientCopy] {
            if !hooks.contains(&hook) {
                continue;
            }
            let names = plugin.wanted_headers(hook);
            if names.is_empty() {
                continue;
            }
            if let Err(e) = crate::host::want_headers(hook, &names) {
                crate::host::warn(&format!("header declaration refused: {e}"));
            }
        }
        for hook in [Hook::Rcpt, Hook::Data] {
            if !hooks.contains(&hook) {
                continue;
            }
            let at_least = plugin.wanted_recipient_count(hook);
            if at_least == 0 {
                continue;
            }
            if let Err(e) = crate::host::want_recipient_count(hook, at_least) {
                crate::host::warn(&format!("recipient-count declaration refused: {e}"));
            }
        }
        if hooks.contains(&Hook::Data) {
            let traits = plugin.wanted_message_traits(Hook::Data);
            if !traits.is_empty() {
                if let Err(e) = crate::host::want_messages_with(Hook::Data, &traits) {
                    crate::host::warn(&format!("message-trait declaration refused: {e}"));
                }
            }
        }
        for hook in [Hook::Connect, Hook::MailFrom] {
            if !hooks.contains(&hook) {
                continue;
            }
            let limits = plugin.relay_limits(hook);
            if limits.is_empty() {
                continue;
            }
            if let Err(e) = crate::host::want_calls_over_limits(hook, &limits) {
                crate::host::warn(&format!("limit declaration refused: {e}"));
            }
        }
        if hooks.contains(&Hook::Rcpt) {
            for list in plugin.wanted_recipient_lists() {
                if let Err(e) = crate::host::want_listed_recipients(&list) {
                    crate::host::warn(&format!("recipient list declaration refused: {e}"));
                }
            }
        }
    }

    pub mod bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "plugin",
            pub_export_macro: true,
            export_macro_name: "__export_plugin_world",
            default_bindings_module: "wasmrelay_plugin_sdk::__private::bindings",
        });
    }
}

/// A wasmrelay plugin. One value lives per instance: the relay creates an instance per SMTP
/// session (and per delivery batch), calls [`Plugin::init`] once, then the hooks listed in
/// [`Plugin::HOOKS`] in stage order. State kept in `self` therefore lasts one session at
/// most (a `pooled` instance keeps it into later sessions: docs/plugins.md#instances); use
/// [`Context::set_session_value`] for what a session needs kept, and [`host::kv_set`] or
/// [`host::counter_add`] for state shared across sessions and relays.
pub trait Plugin: Sized + 'static {
    /// The hooks this plugin implements; the relay never calls the others, so listing only
    /// what you override keeps sessions fast.
    const HOOKS: &'static [Hook];

    /// Builds the plugin from its `config` table (JSON). An error refuses the plugin at load.
    fn init(config: &str) -> Result<Self, String>;

    /// The hooks this instance handles, asked once at load right after [`Plugin::init`]: a
    /// plugin whose config needs fewer of its [`Plugin::HOOKS`] (no connection rules, no
    /// delivery-time rules) lists fewer, and the relay skips the others for every session.
    fn hooks(&self) -> Vec<Hook> {
        Self::HOOKS.to_vec()
    }

    /// Header fields without which a message cannot concern `hook` ([`Hook::Data`] or
    /// [`Hook::RecipientCopy`]), asked once at load right after [`Plugin::hooks`] for each of
    /// the two this plugin handles: the relay then calls the hook (and makes an instance for
    /// it) only for messages with at least one of them. Empty, the default: every message.
    /// For what the config decides; a fixed content type goes in the `wasmrelay:wants`
    /// section (docs/plugins.md#cost-per-language). At most [`MAX_WANTED_HEADERS`] names; a
    /// longer list is refused and the hook called for every message. Needs a relay of WIT
    /// 0.2.5 or later; an older one calls the hook for every message, as it must.
    fn wanted_headers(&self, hook: Hook) -> Vec<String> {
        let _ = hook;
        Vec::new()
    }

    /// The recipients a transaction must already have for `hook` ([`Hook::Rcpt`]: accepted
    /// before the one at hand, as [`Context::recipient_count`] says; or [`Hook::Data`]) to
    /// concern this plugin, asked once at load right after [`Plugin::hooks`] for each of the
    /// two it handles: the relay skips the calls (and the instance they need) below it. For
    /// what the config decides, such as a per-message recipient cap, which can refuse nothing
    /// before its limit. 0, the default: every call. Needs a relay of WIT 0.2.6 or later; an
    /// older one makes every call, as it must.
    fn wanted_recipient_count(&self, hook: Hook) -> u32 {
        let _ = hook;
        0
    }

    /// The `[[lists]]` (ones this plugin may read) of which a recipient must be a member for
    /// [`Plugin::rcpt`] to concern this plugin, asked once at load when it handles `rcpt`: the
    /// relay looks each recipient up itself (in [`host::list_address`] form) and calls `rcpt`
    /// only for members of any. For a plugin that acts on listed recipients only, such as a
    /// suppression list. Empty, the default: every recipient. At most 4. Needs a relay of
    /// WIT 0.2.7 or later; an older one calls `rcpt` for every recipient, as it must.
    fn wanted_recipient_lists(&self) -> Vec<String> {
        Vec::new()
    }

    /// Message traits of which a message must have one for `hook` ([`Hook::Data`]) to
    /// concern this plugin, asked once at load when it handles the hook: the relay skips the
    /// call (and the instance it needs) for every other message. For a content policy whose
    /// rules can only match some messages: `attachment` (a part that is not a plain text or
    /// HTML body, or that has a file name), `auth-results` (the relay checked SPF, DKIM or
    /// DMARC), `untrusted-client` (the client may not relay), `larger-than:N` (bytes),
    /// `header:NAME`; the WIT's `want-messages-with` defines each. Empty, the default: every
    /// message. Needs a relay of WIT 0.2.8 or later; an older one, or a trait it does not
    /// know, leaves the hook called for every message, as it must.
    fn wanted_message_traits(&self, hook: Hook) -> Vec<String> {
        let _ = hook;
        Vec::new()
    }

    /// The limits whose counting and charging is all `hook` ([`Hook::Connect`] or
    /// [`Hook::MailFrom`]) does with a client under them, asked once at load for each of the
    /// two this plugin handles: the relay builds the keys and keeps them itself, and calls the
    /// hook only when one would refuse, or when it cannot decide (backend error, key too
    /// long); it then takes back what it counted, and the hook must count, check and answer as
    /// if nothing had been declared. Counts ([`host::RelayLimit::Concurrent`], `Connect` only)
    /// are taken first, in order, as [`host::counter_hold`] for the session; then rates
    /// ([`host::RelayLimit::Rate`]) are checked and, only if all allow, charged (at `MailFrom`
    /// for the message, as [`host::rate_limit_for_message`]). Declare only what the hook would
    /// do exactly, with the same keys: a hook that also exempts or checks anything else must
    /// return empty, the default: every call. At most 8 limits; a refused list leaves the hook
    /// called every time. Needs a relay of WIT 0.2.9 or later; an older one calls the hook
    /// every time, as it must.
    fn relay_limits(&self, hook: Hook) -> Vec<host::RelayLimit> {
        let _ = hook;
        Vec::new()
    }

    /// A client connected (before the banner).
    fn connect(&mut self, ctx: &Context) -> Verdict {
        let _ = ctx;
        Verdict::Continue
    }

    /// HELO/EHLO received.
    fn helo(&mut self, ctx: &Context) -> Verdict {
        let _ = ctx;
        Verdict::Continue
    }

    /// AUTH succeeded as `user`.
    fn auth(&mut self, ctx: &Context, user: &str) -> Verdict {
        let _ = (ctx, user);
        Verdict::Continue
    }

    /// MAIL FROM; `sender` is `""` for the null sender.
    fn mail_from(&mut self, ctx: &Context, sender: &str) -> Verdict {
        let _ = (ctx, sender);
        Verdict::Continue
    }

    /// RCPT TO, once per recipient.
    fn rcpt(&mut self, ctx: &Context, recipient: &str) -> Verdict {
        let _ = (ctx, recipient);
        Verdict::Continue
    }

    /// End of DATA: read and edit the message.
    fn data(&mut self, ctx: &Context, msg: &Message) -> Verdict {
        let _ = (ctx, msg);
        Verdict::Continue
    }

    /// The message is durable under `queue_id`. Informational.
    fn queued(&mut self, ctx: &Context, queue_id: &str) {
        let _ = (ctx, queue_id);
    }

    /// The connection closed. Informational: release what `connect` counted.
    fn closed(&mut self, ctx: &Context) {
        let _ = ctx;
    }

    /// Choose a route for one destination domain's pending `recipients`.
    fn route(&mut self, env: &Envelope, domain: &str, recipients: &[String]) -> RouteDecision {
        let _ = (env, domain, recipients);
        RouteDecision::Continue
    }

    /// Edit one recipient's outgoing copy (deterministically: a retry renders it again).
    fn recipient_copy(&mut self, env: &Envelope, rcpt: &Recipient, msg: &Message) -> Verdict {
        let _ = (env, rcpt, msg);
        Verdict::Continue
    }

    /// A delivery attempt (or a route decision) settled some recipients.
    fn delivery_result(&mut self, env: &Envelope, report: &DeliveryReport) {
        let _ = (env, report);
    }
}

/// Exports a [`Plugin`] type as the component's `wasmrelay:plugin/hooks` implementation.
/// Use it once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        const _: () = {
            use $crate::__private::Guest;

            ::std::thread_local! {
                static PLUGIN: ::std::cell::RefCell<::std::option::Option<$ty>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            fn with<R>(f: impl FnOnce(&mut $ty) -> R) -> R {
                PLUGIN.with_borrow_mut(|p| f(p.as_mut().expect("hook called before init")))
            }

            struct WasmrelayPlugin;

            impl Guest for WasmrelayPlugin {
                fn init(config: String) -> Result<(), String> {
                    let plugin = <$ty as $crate::Plugin>::init(&config)?;
                    PLUGIN.with_borrow_mut(|p| *p = Some(plugin));
                    Ok(())
                }
                fn hooks() -> Vec<$crate::Hook> {
                    PLUGIN.with_borrow(|p| match p {
                        ::std::option::Option::Some(p) => {
                            let hooks = $crate::Plugin::hooks(p);
                            $crate::__private::declare_wants(p, &hooks);
                            hooks
                        }
                        ::std::option::Option::None => <$ty as $crate::Plugin>::HOOKS.to_vec(),
                    })
                }
                fn connect(ctx: &$crate::Context) -> $crate::Verdict {
                    with(|p| $crate::Plugin::connect(p, ctx))
                }
                fn helo(ctx: &$crate::Context) -> $crate::Verdict {
                    with(|p| $crate::Plugin::helo(p, ctx))
                }
                fn auth(ctx: &$crate::Context, user: String) -> $crate::Verdict {
                    with(|p| $crate::Plugin::auth(p, ctx, &user))
                }
                fn mail_from(ctx: &$crate::Context, sender: String) -> $crate::Verdict {
                    with(|p| $crate::Plugin::mail_from(p, ctx, &sender))
                }
                fn rcpt(ctx: &$crate::Context, recipient: String) -> $crate::Verdict {
                    with(|p| $crate::Plugin::rcpt(p, ctx, &recipient))
                }
                fn data(ctx: &$crate::Context, msg: &$crate::Message) -> $crate::Verdict {
                    with(|p| $crate::Plugin::data(p, ctx, msg))
                }
                fn queued(ctx: &$crate::Context, queue_id: String) {
                    with(|p| $crate::Plugin::queued(p, ctx, &queue_id))
                }
                fn closed(ctx: &$crate::Context) {
                    with(|p| $crate::Plugin::closed(p, ctx))
                }
                fn route(
                    env: &$crate::Envelope,
                    domain: String,
                    recipients: Vec<String>,
                ) -> $crate::RouteDecision {
                    with(|p| $crate::Plugin::route(p, env, &domain, &recipients))
                }
                fn recipient_copy(
                    env: &$crate::Envelope,
                    rcpt: &$crate::Recipient,
                    msg: &$crate::Message,
                ) -> $crate::Verdict {
                    with(|p| $crate::Plugin::recipient_copy(p, env, rcpt, msg))
                }
                fn delivery_result(env: &$crate::Envelope, report: $crate::DeliveryReport) {
                    with(|p| $crate::Plugin::delivery_result(p, env, &report))
                }
            }

            $crate::__private::__export_plugin_world!(WasmrelayPlugin with_types_in $crate::__private::bindings);
        };
    };
}
