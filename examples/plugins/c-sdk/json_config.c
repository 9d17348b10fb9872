// See json_config.h. Strings may hold escapes; \u escapes outside ASCII are refused (config
// values of these plugins are domain names and phrases in ASCII).
#include "json_config.h"

#include <stdlib.h>
#include <string.h>

#define MAX_STRING 1024

static void skip_space(struct json_cursor *cur) {
    while (cur->p < cur->end && (*cur->p == ' ' || *cur->p == '\t' || *cur->p == '\n' || *cur->p == '\r'))
        cur->p++;
}

static bool take(struct json_cursor *cur, char c) {
    skip_space(cur);
    if (cur->p < cur->end && *cur->p == c) {
        cur->p++;
        return true;
    }
    return false;
}

static int hex(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Reads a string into `out` (at most MAX_STRING bytes, NUL-terminated); its length, or -1.
static long read_string(struct json_cursor *cur, char out[MAX_STRING + 1]) {
    if (!take(cur, '"')) return -1;
    size_t n = 0;
    while (cur->p < cur->end && *cur->p != '"') {
        uint8_t c = *cur->p++;
        if (c < 0x20) return -1;
        if (c == '\\') {
            if (cur->p >= cur->end) return -1;
            uint8_t e = *cur->p++;
            switch (e) {
                case '"': case '\\': case '/': c = e; break;
                case 'n': c = '\n'; break;
                case 't': c = '\t'; break;
                case 'r': c = '\r'; break;
                case 'b': c = '\b'; break;
                case 'f': c = '\f'; break;
                case 'u': {
                    if (cur->end - cur->p < 4) return -1;
                    int v = 0;
                    for (int i = 0; i < 4; i++) {
                        int h = hex(*cur->p++);
                        if (h < 0) return -1;
                        v = v * 16 + h;
                    }
                    if (v == 0 || v > 0x7f) return -1;
                    c = (uint8_t)v;
                    break;
                }
                default: return -1;
            }
        }
        if (n == MAX_STRING) return -1;
        out[n++] = (char)c;
    }
    if (!take(cur, '"')) return -1;
    out[n] = '\0';
    return (long)n;
}

bool json_object(const uint8_t *text, size_t len, json_key_fn on_key, const char **error) {
    struct json_cursor cur = {text, text + len};
    static char key[MAX_STRING + 1];
    if (!take(&cur, '{')) goto malformed;
    if (!take(&cur, '}')) {
        do {
            if (read_string(&cur, key) < 0 || !take(&cur, ':')) goto malformed;
            skip_space(&cur);
            if (!on_key(key, &cur, error)) return false;
        } while (take(&cur, ','));
        if (!take(&cur, '}')) goto malformed;
    }
    skip_space(&cur);
    if (cur.p == cur.end) return true;
malformed:
    *error = "the config is not a JSON object of known keys";
    return false;
}

bool json_bool(struct json_cursor *cur, bool *out, const char **error, const char *message) {
    skip_space(cur);
    size_t left = (size_t)(cur->end - cur->p);
    if (left >= 4 && memcmp(cur->p, "true", 4) == 0) {
        cur->p += 4;
        *out = true;
        return true;
    }
    if (left >= 5 && memcmp(cur->p, "false", 5) == 0) {
        cur->p += 5;
        *out = false;
        return true;
    }
    *error = message;
    return false;
}

bool json_string_list(struct json_cursor *cur, json_string_fn on_string, void *state,
                      const char **error, const char *message) {
    static char item[MAX_STRING + 1];
    if (!take(cur, '[')) goto wrong;
    if (take(cur, ']')) return true;
    do {
        long n = read_string(cur, item);
        if (n < 0) goto wrong;
        if (!on_string(item, (size_t)n, state, error)) return false;
    } while (take(cur, ','));
    if (take(cur, ']')) return true;
wrong:
    *error = message;
    return false;
}
