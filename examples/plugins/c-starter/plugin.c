// A wasmrelay plugin in C: copy this folder, edit the hook below, build.
//
// Build (from this folder; toolchain in ../README.md):
//   cargo run --quiet --manifest-path ../wasi-adapter/Cargo.toml -- ../wasi_snapshot_preview1.reactor.wasm
//   make                    # -> build/c-starter.wasm
// Load (relay.toml):
//   [[plugins]]
//   path = "examples/plugins/c-starter/build/c-starter.wasm"
// Try:
//   swaks --server 127.0.0.1:2525 --from a@blocked.invalid --to b@example.com
//
// build/gen/plugin.h (generated from plugin-sdk/wit) declares every hook as
// `exports_wasmrelay_plugin_hooks_<hook>`; ../c-sdk/plugin_defaults.c gives each a weak
// `continue` default, so a plugin defines only the hooks it handles, and `hooks` to list them.
// Arguments are the callee's: free them (`plugin_string_free`) and drop borrowed handles
// (`wasmrelay_plugin_types_context_drop_borrow`) before returning; returned strings must be
// malloc'd (the verdict helpers do it).

#include <string.h>

#include "plugin.h"
#include "plugin_defaults.h"

void exports_wasmrelay_plugin_hooks_hooks(exports_wasmrelay_plugin_hooks_list_hook_t *ret) {
    hooks_list(ret, (exports_wasmrelay_plugin_hooks_hook_t[]){WASMRELAY_PLUGIN_TYPES_HOOK_MAIL_FROM}, 1);
}

void exports_wasmrelay_plugin_hooks_mail_from(exports_wasmrelay_plugin_hooks_borrow_context_t ctx,
                                              plugin_string_t *sender,
                                              exports_wasmrelay_plugin_hooks_verdict_t *ret) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
    static const char blocked[] = "@blocked.invalid";
    size_t n = sizeof blocked - 1;
    bool refused = sender->len >= n && memcmp(sender->ptr + sender->len - n, blocked, n) == 0;
    plugin_string_free(sender);
    if (refused) {
        verdict_reject(ret, 550, 5, 7, 1, "Sender refused");
    } else {
        verdict_continue(ret);
    }
}
