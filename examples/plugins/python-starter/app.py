"""A wasmrelay plugin in Python: copy this folder, edit the hook below, build.

Build (from this folder):
    componentize-py -d ../../../plugin-sdk/wit -w plugin componentize -p . -p ../python-sdk app -o starter.wasm
Load (relay.toml):
    [[plugins]]
    path = "examples/plugins/python-starter/starter.wasm"
    instances = "pooled"
Try:
    swaks --server 127.0.0.1:2525 --from a@example.org --to b@example.com
"""

from wit_world.imports import types

from wasmrelay_plugin import Plugin, reject


class Hooks(Plugin):
    """Override any hook of plugin-sdk/wit/plugin.wit (`connect`, `helo`, `mail_from`, `rcpt`,
    `data` ...); the others answer `continue`, and the host calls only the overridden ones."""

    def mail_from(self, ctx: types.Context, sender: str) -> types.Verdict:
        if sender.lower().endswith("@blocked.invalid"):
            return reject(550, "5.7.1", "Sender refused")
        return super().mail_from(ctx, sender)
