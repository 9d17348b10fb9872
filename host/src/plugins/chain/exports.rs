//! A plugin's `hooks` exports: looked up by index once per plugin, type-checked once per
//! plugin, and bound to each new instance without checking them again.
//!
//! The generated bindings' loader type-checks all thirteen exports for every instance it
//! binds: a fifth of a fresh instance's first hook (instantiate + `init` + call) went there.
//! Every instance of a plugin comes from the one compiled component, whose export types do
//! not change, so the check made on the first instance (the load-time probe) holds for all.

use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::{
    Component, ComponentExportIndex, Func, Instance, InstancePre, Resource, TypedFunc,
};
use wasmtime::Store;

use crate::plugins::bindings::wasmrelay::plugin::types as wit;
use crate::plugins::context::ContextRes;
use crate::plugins::engine::{HOOKS_INTERFACE, SUPPORTED_MAJOR};
use crate::plugins::envelope::{EnvelopeRes, RecipientRes};
use crate::plugins::message::MessageRes;
use crate::plugins::state::StoreState;

/// Declares every export once: its name, its signature (parameters, and results as a
/// tuple), and the method that calls it. The type check and the calls are generated from
/// the same line, so they cannot disagree.
macro_rules! hook_exports {
    ($( $method:ident = $name:literal ( $($arg:ident : $ty:ty),* ) -> $ret:ty ;)*) => {
        /// Export names in the interface, in the order of [`Exports::funcs`].
        const NAMES: &[&str] = &[$($name),*];

        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        enum Export { $($method),* }

        /// Type-checks every export against its signature on `instance`.
        fn check(
            store: &mut Store<StoreState>,
            instance: &Instance,
            indices: &[ComponentExportIndex],
        ) -> wasmtime::Result<()> {
            $(
                instance
                    .get_typed_func::<($($ty,)*), $ret>(&mut *store, &indices[Export::$method as usize])
                    .map_err(|e| e.context(concat!("type-checking export `", $name, "`")))?;
            )*
            Ok(())
        }

        impl Exports {
            $(
                pub(crate) async fn $method(
                    &self,
                    store: &mut Store<StoreState>,
                    $($arg: $ty),*
                ) -> wasmtime::Result<$ret> {
                    // SAFETY: `check` type-checked this export with this very signature on
                    // an instance of the same component (`ExportIndices::bind`).
                    let typed = unsafe {
                        TypedFunc::<($($ty,)*), $ret>::new_unchecked(
                            self.funcs[Export::$method as usize],
                        )
                    };
                    typed.call_async(&mut *store, ($($arg,)*)).await
                }
            )*
        }
    };
}

hook_exports! {
    init = "init"(config: &str) -> (Result<(), String>,);
    hooks = "hooks"() -> (Vec<wit::Hook>,);
    connect = "connect"(ctx: Resource<ContextRes>) -> (wit::Verdict,);
    helo = "helo"(ctx: Resource<ContextRes>) -> (wit::Verdict,);
    auth = "auth"(ctx: Resource<ContextRes>, user: &str) -> (wit::Verdict,);
    mail_from = "mail-from"(ctx: Resource<ContextRes>, sender: &str) -> (wit::Verdict,);
    rcpt = "rcpt"(ctx: Resource<ContextRes>, recipient: &str) -> (wit::Verdict,);
    data = "data"(ctx: Resource<ContextRes>, msg: Resource<MessageRes>) -> (wit::Verdict,);
    queued = "queued"(ctx: Resource<ContextRes>, queue_id: &str) -> ();
    closed = "closed"(ctx: Resource<ContextRes>) -> ();
    route = "route"(env: Resource<EnvelopeRes>, domain: &str, recipients: &[String])
        -> (wit::RouteDecision,);
    recipient_copy = "recipient-copy"(
        env: Resource<EnvelopeRes>,
        rcpt: Resource<RecipientRes>,
        msg: Resource<MessageRes>
    ) -> (wit::Verdict,);
    delivery_result = "delivery-result"(env: Resource<EnvelopeRes>, report: &wit::DeliveryReport)
        -> ();
}

/// A plugin linked against the host's imports, ready to instantiate.
pub(crate) struct Linked {
    pub(crate) pre: InstancePre<StoreState>,
    pub(crate) exports: ExportIndices,
}

impl Linked {
    pub(crate) fn new(pre: InstancePre<StoreState>) -> Result<Linked, String> {
        let exports = ExportIndices::new(pre.component())?;
        Ok(Linked { pre, exports })
    }

    /// A new instance in `store`, with its hooks.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Exports> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        self.exports.bind(store, instance)
    }
}

/// Where a plugin's hooks are in its component, found once at load.
pub(crate) struct ExportIndices {
    /// One per name in [`NAMES`], in that order.
    indices: Box<[ComponentExportIndex]>,
    /// Set once an instance passed [`check`]; later instances skip it.
    checked: AtomicBool,
}

impl ExportIndices {
    /// Finds the `hooks` interface (any `0.2.x`: the lookup matches by semver) and each of
    /// its functions. Their types are checked on the first instance ([`Self::bind`]).
    pub(crate) fn new(component: &Component) -> Result<ExportIndices, String> {
        let interface = format!("{HOOKS_INTERFACE}@{SUPPORTED_MAJOR}.0");
        let instance = component
            .get_export_index(None, &interface)
            .ok_or_else(|| format!("no exported instance named `{interface}`"))?;
        let indices = NAMES
            .iter()
            .map(|name| {
                component
                    .get_export_index(Some(&instance), name)
                    .ok_or_else(|| format!("`{interface}` does not export `{name}`"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ExportIndices {
            indices,
            checked: AtomicBool::new(false),
        })
    }

    /// The exports of a new `instance`, type-checked if no instance of this plugin has been
    /// yet.
    pub(crate) fn bind(
        &self,
        store: &mut Store<StoreState>,
        instance: Instance,
    ) -> wasmtime::Result<Exports> {
        if !self.checked.load(Ordering::Acquire) {
            check(store, &instance, &self.indices)?;
            self.checked.store(true, Ordering::Release);
        }
        let funcs = self
            .indices
            .iter()
            .zip(NAMES)
            .map(|(index, name)| {
                instance
                    .get_func(&mut *store, index)
                    .ok_or_else(|| wasmtime::format_err!("export `{name}` is not a function"))
            })
            .collect::<wasmtime::Result<_>>()?;
        Ok(Exports { funcs })
    }
}

/// One instance's hook functions, callable without a type check. Boxed: an instance moves
/// through every hook call's futures (out of its slot or pool and back), a pointer costs
/// less to move than thirteen functions.
pub(crate) struct Exports {
    /// One per name in [`NAMES`], in that order.
    funcs: Box<[Func]>,
}
