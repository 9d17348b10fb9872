// A small strict JSON reader for plugin configs (`init` receives the `config` table as JSON):
// one object whose values the plugin reads by key, as strings, lists of strings or booleans.
// Anything else is refused with the message the caller gives, which should name the key.
#ifndef WASMRELAY_JSON_CONFIG_H
#define WASMRELAY_JSON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_cursor {
    const uint8_t *p;
    const uint8_t *end;
};

// Called for each key of the object, with the cursor at its value; must consume the value.
typedef bool (*json_key_fn)(const char *key, struct json_cursor *cur, const char **error);
// Called for each string of a list (not NUL-terminated, escapes decoded).
typedef bool (*json_string_fn)(const char *text, size_t len, void *state, const char **error);

// Reads `{ "key": value, ... }` (the whole text).
bool json_object(const uint8_t *text, size_t len, json_key_fn on_key, const char **error);
// Reads `true` or `false`.
bool json_bool(struct json_cursor *cur, bool *out, const char **error, const char *message);
// Reads `[ "a", "b" ]`.
bool json_string_list(struct json_cursor *cur, json_string_fn on_string, void *state,
                      const char **error, const char *message);

#endif
