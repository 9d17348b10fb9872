//! Host bindings generated from `plugin-sdk/wit` (the only copy of the interface).

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../plugin-sdk/wit",
    imports: {
        "wasmrelay:plugin/host.dns-lookup": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "wasmrelay:plugin/types.context": super::context::ContextRes,
        "wasmrelay:plugin/types.message": super::message::MessageRes,
    },
});
