// See plugin_defaults.h. The hook definitions here are weak: a plugin's own definition of a
// hook replaces the default at link time. Each default frees the arguments it owns and drops
// the borrowed handles (a call that returns with a borrow still held traps).
#include "plugin_defaults.h"

#include <stdlib.h>
#include <string.h>

#define WEAK __attribute__((weak))

void hooks_list(exports_wasmrelay_plugin_hooks_list_hook_t *out,
                const exports_wasmrelay_plugin_hooks_hook_t *hooks, size_t n) {
    out->ptr = malloc(n ? n * sizeof *hooks : 1);
    out->len = out->ptr ? n : 0;
    if (out->ptr) memcpy(out->ptr, hooks, n * sizeof *hooks);
}

void verdict_continue(exports_wasmrelay_plugin_hooks_verdict_t *out) {
    out->tag = WASMRELAY_PLUGIN_TYPES_VERDICT_CONTINUE;
}

static void reply(wasmrelay_plugin_types_reply_t *out, uint16_t code, uint8_t klass,
                  uint16_t subject, uint16_t detail, const char *text) {
    out->code = code;
    out->enhanced.is_some = true;
    out->enhanced.val.class_ = klass;
    out->enhanced.val.subject = subject;
    out->enhanced.val.detail = detail;
    plugin_string_dup(&out->text, text);
}

void verdict_reject(exports_wasmrelay_plugin_hooks_verdict_t *out, uint16_t code, uint8_t klass,
                    uint16_t subject, uint16_t detail, const char *text) {
    out->tag = WASMRELAY_PLUGIN_TYPES_VERDICT_REJECT;
    reply(&out->val.reject, code, klass, subject, detail, text);
}

void verdict_tempfail(exports_wasmrelay_plugin_hooks_verdict_t *out, uint16_t code,
                      uint8_t klass, uint16_t subject, uint16_t detail, const char *text) {
    out->tag = WASMRELAY_PLUGIN_TYPES_VERDICT_TEMPFAIL;
    reply(&out->val.tempfail, code, klass, subject, detail, text);
}

WEAK bool exports_wasmrelay_plugin_hooks_init(plugin_string_t *config, plugin_string_t *err) {
    (void)err;
    plugin_string_free(config);
    return true;
}

WEAK void exports_wasmrelay_plugin_hooks_hooks(exports_wasmrelay_plugin_hooks_list_hook_t *ret) {
    hooks_list(ret, NULL, 0);
}

WEAK void exports_wasmrelay_plugin_hooks_connect(exports_wasmrelay_plugin_hooks_borrow_context_t ctx,
                                                 exports_wasmrelay_plugin_hooks_verdict_t *ret) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
    verdict_continue(ret);
}

WEAK void exports_wasmrelay_plugin_hooks_helo(exports_wasmrelay_plugin_hooks_borrow_context_t ctx,
                                              exports_wasmrelay_plugin_hooks_verdict_t *ret) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
    verdict_continue(ret);
}

WEAK void exports_wasmrelay_plugin_hooks_auth(exports_wasmrelay_plugin_hooks_borrow_context_t ctx,
                                              plugin_string_t *user,
                                              exports_wasmrelay_plugin_hooks_verdict_t *ret) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
    plugin_string_free(user);
    verdict_continue(ret);
}

WEAK void exports_wasmrelay_plugin_hooks_mail_from(exports_wasmrelay_plugin_hooks_borrow_context_t ctx,
                                                   plugin_string_t *sender,
                                                   exports_wasmrelay_plugin_hooks_verdict_t *ret) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
    plugin_string_free(sender);
    verdict_continue(ret);
}

WEAK void exports_wasmrelay_plugin_hooks_rcpt(exports_wasmrelay_plugin_hooks_borrow_context_t ctx,
                                              plugin_string_t *recipient,
                                              exports_wasmrelay_plugin_hooks_verdict_t *ret) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
    plugin_string_free(recipient);
    verdict_continue(ret);
}

WEAK void exports_wasmrelay_plugin_hooks_data(exports_wasmrelay_plugin_hooks_borrow_context_t ctx,
                                              exports_wasmrelay_plugin_hooks_borrow_message_t msg,
                                              exports_wasmrelay_plugin_hooks_verdict_t *ret) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
    wasmrelay_plugin_types_message_drop_borrow(msg);
    verdict_continue(ret);
}

WEAK void exports_wasmrelay_plugin_hooks_queued(exports_wasmrelay_plugin_hooks_borrow_context_t ctx,
                                                plugin_string_t *queue_id) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
    plugin_string_free(queue_id);
}

WEAK void exports_wasmrelay_plugin_hooks_closed(exports_wasmrelay_plugin_hooks_borrow_context_t ctx) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
}

WEAK void exports_wasmrelay_plugin_hooks_route(exports_wasmrelay_plugin_hooks_borrow_envelope_t env,
                                               plugin_string_t *domain,
                                               plugin_list_string_t *recipients,
                                               exports_wasmrelay_plugin_hooks_route_decision_t *ret) {
    wasmrelay_plugin_types_envelope_drop_borrow(env);
    plugin_string_free(domain);
    plugin_list_string_free(recipients);
    ret->tag = WASMRELAY_PLUGIN_TYPES_ROUTE_DECISION_CONTINUE;
}

WEAK void exports_wasmrelay_plugin_hooks_recipient_copy(
    exports_wasmrelay_plugin_hooks_borrow_envelope_t env,
    exports_wasmrelay_plugin_hooks_borrow_recipient_t rcpt,
    exports_wasmrelay_plugin_hooks_borrow_message_t msg,
    exports_wasmrelay_plugin_hooks_verdict_t *ret) {
    wasmrelay_plugin_types_envelope_drop_borrow(env);
    wasmrelay_plugin_types_recipient_drop_borrow(rcpt);
    wasmrelay_plugin_types_message_drop_borrow(msg);
    verdict_continue(ret);
}

WEAK void exports_wasmrelay_plugin_hooks_delivery_result(
    exports_wasmrelay_plugin_hooks_borrow_envelope_t env,
    exports_wasmrelay_plugin_hooks_delivery_report_t *report) {
    wasmrelay_plugin_types_envelope_drop_borrow(env);
    exports_wasmrelay_plugin_hooks_delivery_report_free(report);
}
