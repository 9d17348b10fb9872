// A wasmrelay plugin in JavaScript: copy this folder, edit the hook below, build.
//
// Build (from this folder, after `npm ci` in examples/plugins):
//   npm run build
// Load (relay.toml):
//   [[plugins]]
//   path = "examples/plugins/js-starter/starter.wasm"
//   instances = "pooled"
// Try:
//   swaks --server 127.0.0.1:2525 --from a@example.org --to b@example.com
//
// Imports come from "wasmrelay:plugin/host@0.2.9" (log, config, nowMs, kvGet ...): see
// plugin-sdk/wit/plugin.wit; names are camelCase, u64 values are BigInt.

const CONTINUE = { tag: "continue" };

export const hooks = {
  init(config) {
    // `config` is the plugin's `config` table as JSON; throw a string to refuse it.
    JSON.parse(config);
  },

  // The hooks below that do more than `continue`: the host calls only these.
  hooks() {
    return ["mail-from"];
  },

  mailFrom(ctx, sender) {
    if (sender.toLowerCase().endsWith("@blocked.invalid")) {
      return {
        tag: "reject",
        val: { code: 550, enhanced: { class: 5, subject: 7, detail: 1 }, text: "Sender refused" },
      };
    }
    return CONTINUE;
  },

  connect: () => CONTINUE,
  helo: () => CONTINUE,
  auth: () => CONTINUE,
  rcpt: () => CONTINUE,
  data: () => CONTINUE,
  queued: () => {},
  closed: () => {},
  route: () => ({ tag: "continue" }),
  recipientCopy: () => CONTINUE,
  deliveryResult: () => {},
};
