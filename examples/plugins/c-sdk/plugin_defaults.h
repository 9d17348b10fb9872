// Helpers for wasmrelay plugins in C, over the bindings `wit-bindgen c` generates (plugin.h).
// plugin_defaults.c also gives every hook a weak `continue` default: a plugin defines only the
// hooks it handles (and `exports_wasmrelay_plugin_hooks_hooks` to list them).
#ifndef WASMRELAY_PLUGIN_DEFAULTS_H
#define WASMRELAY_PLUGIN_DEFAULTS_H

#include <stddef.h>
#include <stdint.h>

#include "plugin.h"

// The `hooks()` answer: a malloc'd copy of `hooks[0..n]`.
void hooks_list(exports_wasmrelay_plugin_hooks_list_hook_t *out,
                const exports_wasmrelay_plugin_hooks_hook_t *hooks, size_t n);

void verdict_continue(exports_wasmrelay_plugin_hooks_verdict_t *out);
// `reject` with `code class.subject.detail text`, e.g. (550, 5, 7, 1, "Refused").
void verdict_reject(exports_wasmrelay_plugin_hooks_verdict_t *out, uint16_t code, uint8_t klass,
                    uint16_t subject, uint16_t detail, const char *text);
// `tempfail` likewise, with a 4xx code.
void verdict_tempfail(exports_wasmrelay_plugin_hooks_verdict_t *out, uint16_t code,
                      uint8_t klass, uint16_t subject, uint16_t detail, const char *text);

#endif
