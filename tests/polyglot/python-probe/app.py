"""A Python test plugin for the relay's handling of Python plugins, by recipient at `rcpt`:

- `raise@...`: raises an exception (a bug): the relay answers with the plugin's `on_error`;
- `seen@...`: answers 451 with how many sessions this instance has seen (memory a pooled
  instance keeps between sessions, by the state-reset contract);
- `stash@...` keeps the call's `context` past the call (and answers 451 with the client port),
  `stale@...` later asks that context for the client port: a handle from an earlier call must
  never show that call's connection;
- anything else: `continue`.
"""

from wit_world.imports import types

from wasmrelay_plugin import Plugin, tempfail


# componentize-py makes a new `Hooks` object for every call: memory that outlives a call
# lives at module level.
sessions = []
stashed = []


class Hooks(Plugin):
    def rcpt(self, ctx: types.Context, recipient: str) -> types.Verdict:
        local = recipient.split("@")[0].lower()
        if local == "raise":
            raise ValueError(f"an unexpected recipient: {recipient}")
        if local == "seen":
            session = ctx.session_id()
            if session not in sessions:
                sessions.append(session)
            return tempfail(451, "4.7.1", f"sessions seen: {len(sessions)}")
        if local == "stash":
            stashed[:] = [ctx]
            return tempfail(451, "4.7.1", f"stashed port: {ctx.remote_port()}")
        if local == "stale" and stashed:
            return tempfail(451, "4.7.1", f"stale port: {stashed[0].remote_port()}")
        return super().rcpt(ctx, recipient)
