// A sender-domain allowlist in C, at `mail-from`: a sender whose domain is not listed is refused
// with `550 5.7.1`. Domains are compared lower-cased, a trailing dot ignored; with
// `allow_subdomains`, `mail.example.org` matches `example.org`; the null sender (`<>`, bounces)
// passes unless `allow_null_sender` is false.
//
// Build (from this folder; toolchain in ../README.md):
//   cargo run --quiet --manifest-path ../wasi-adapter/Cargo.toml -- ../wasi_snapshot_preview1.reactor.wasm
//   make                    # -> build/allowlist.wasm
// Load (relay.toml):
//   [[plugins]]
//   path = "examples/plugins/allowlist-c/build/allowlist.wasm"
//   config = { domains = ["example.org"], allow_subdomains = true }
// Try (refused with 550 5.7.1):
//   swaks --server 127.0.0.1:2525 --from someone@elsewhere.test --to b@example.com

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"
#include "plugin_defaults.h"
#include "json_config.h"

#define MAX_DOMAINS 1024
#define MAX_DOMAIN_LEN 253

static char *domains[MAX_DOMAINS];
static size_t domain_count;
static bool allow_subdomains;
static bool allow_null_sender = true;

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

// A domain as compared: lower-cased, without a trailing dot; NULL when it cannot be one.
static char *normalize_domain(const char *text, size_t len) {
    if (len > 0 && text[len - 1] == '.') len--;
    if (len == 0 || len > MAX_DOMAIN_LEN) return NULL;
    char *out = malloc(len + 1);
    if (!out) return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = lower(text[i]);
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        if (!ok) {
            free(out);
            return NULL;
        }
        out[i] = c;
    }
    out[len] = '\0';
    return out;
}

static bool on_domain(const char *text, size_t len, void *state, const char **error) {
    (void)state;
    if (domain_count == MAX_DOMAINS) {
        *error = "`domains`: more than 1024 entries";
        return false;
    }
    char *domain = normalize_domain(text, len);
    if (!domain) {
        *error = "`domains`: expected domain names (letters, digits, '-' and '.')";
        return false;
    }
    domains[domain_count++] = domain;
    return true;
}

static bool on_key(const char *key, struct json_cursor *cur, const char **error) {
    if (strcmp(key, "domains") == 0) return json_string_list(cur, on_domain, NULL, error, "`domains`: expected a list of strings");
    if (strcmp(key, "allow_subdomains") == 0) return json_bool(cur, &allow_subdomains, error, "`allow_subdomains`: expected true or false");
    if (strcmp(key, "allow_null_sender") == 0) return json_bool(cur, &allow_null_sender, error, "`allow_null_sender`: expected true or false");
    *error = "unknown key (known: domains, allow_subdomains, allow_null_sender)";
    return false;
}

bool exports_wasmrelay_plugin_hooks_init(plugin_string_t *config, plugin_string_t *err) {
    const char *error = NULL;
    bool ok = json_object(config->ptr, config->len, on_key, &error);
    plugin_string_free(config);
    if (ok && domain_count == 0) {
        ok = false;
        error = "`domains`: at least one domain is required";
    }
    if (!ok) plugin_string_dup(err, error);
    return ok;
}

void exports_wasmrelay_plugin_hooks_hooks(exports_wasmrelay_plugin_hooks_list_hook_t *ret) {
    hooks_list(ret, (exports_wasmrelay_plugin_hooks_hook_t[]){WASMRELAY_PLUGIN_TYPES_HOOK_MAIL_FROM}, 1);
}

static bool listed(const char *domain, size_t len) {
    for (size_t i = 0; i < domain_count; i++) {
        size_t dlen = strlen(domains[i]);
        if (dlen == len && memcmp(domains[i], domain, len) == 0) return true;
        // `a.example.org` under `example.org`: a longer name ending in ".example.org".
        if (allow_subdomains && len > dlen + 1 && domain[len - dlen - 1] == '.' &&
            memcmp(domain + len - dlen, domains[i], dlen) == 0)
            return true;
    }
    return false;
}

void exports_wasmrelay_plugin_hooks_mail_from(exports_wasmrelay_plugin_hooks_borrow_context_t ctx,
                                              plugin_string_t *sender,
                                              exports_wasmrelay_plugin_hooks_verdict_t *ret) {
    wasmrelay_plugin_types_context_drop_borrow(ctx);
    bool allowed;
    if (sender->len == 0) {
        allowed = allow_null_sender;
    } else {
        const uint8_t *at = NULL;
        for (size_t i = 0; i < sender->len; i++)
            if (sender->ptr[i] == '@') at = sender->ptr + i;
        size_t offset = at ? (size_t)(at - sender->ptr) + 1 : sender->len;
        char *domain = normalize_domain((const char *)sender->ptr + offset, sender->len - offset);
        allowed = domain && listed(domain, strlen(domain));
        free(domain);
    }
    plugin_string_free(sender);
    if (allowed) {
        verdict_continue(ret);
    } else {
        verdict_reject(ret, 550, 5, 7, 1, "Sender domain not allowed");
    }
}
