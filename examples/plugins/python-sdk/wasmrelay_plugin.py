"""Defaults and small helpers for wasmrelay plugins written in Python.

A plugin module (`app.py`) defines `class Hooks(Plugin)` and overrides the hooks it handles;
every other hook answers `continue`. Build with componentize-py, from the plugin's folder:

    componentize-py -d ../../../plugin-sdk/wit -w plugin componentize -p . -p ../python-sdk app -o plugin.wasm

Two rules of componentize-py to know (docs/plugins.md says more):
- it makes a new `Hooks` object for every call: keep what must outlive a call (the parsed
  config, caches) at module level, not on `self`;
- the component has no filesystem at run time: import every module at module level, and use
  once there anything the standard library imports lazily (`hashlib.sha256(b"")`), so that it
  is loaded while the component is built.

The interface is plugin-sdk/wit/plugin.wit; the author's guide is docs/plugins.md.
"""

import re
from typing import List, Optional

from wit_world import exports
from wit_world.imports import types
from wit_world.imports.types import (
    EnhancedCode,
    Reply,
    Verdict,
    Verdict_Continue,
    Verdict_Reject,
    Verdict_Tempfail,
)


class Plugin(exports.Hooks):
    """Every hook of the `hooks` interface with a `continue` default. `hooks()` lists the
    hooks the subclass overrides, so the host never calls the others."""

    def init(self, config: str) -> None:
        pass

    def hooks(self) -> List[types.Hook]:
        mine = type(self)
        return [
            hook
            for hook in types.Hook
            if getattr(mine, hook.name.lower()) is not getattr(Plugin, hook.name.lower())
        ]

    def connect(self, ctx: types.Context) -> Verdict:
        return Verdict_Continue()

    def helo(self, ctx: types.Context) -> Verdict:
        return Verdict_Continue()

    def auth(self, ctx: types.Context, user: str) -> Verdict:
        return Verdict_Continue()

    def mail_from(self, ctx: types.Context, sender: str) -> Verdict:
        return Verdict_Continue()

    def rcpt(self, ctx: types.Context, recipient: str) -> Verdict:
        return Verdict_Continue()

    def data(self, ctx: types.Context, msg: types.Message) -> Verdict:
        return Verdict_Continue()

    def queued(self, ctx: types.Context, queue_id: str) -> None:
        pass

    def closed(self, ctx: types.Context) -> None:
        pass

    def route(self, env: types.Envelope, domain: str, recipients: List[str]) -> types.RouteDecision:
        return types.RouteDecision_Continue()

    def recipient_copy(self, env: types.Envelope, rcpt: types.Recipient, msg: types.Message) -> Verdict:
        return Verdict_Continue()

    def delivery_result(self, env: types.Envelope, report: types.DeliveryReport) -> None:
        pass


def _reply(code: int, enhanced: str, text: str) -> Reply:
    klass, subject, detail = (int(x) for x in enhanced.split("."))
    return Reply(code, EnhancedCode(klass, subject, detail), text)


def tempfail(code: int, enhanced: str, text: str) -> Verdict:
    """`tempfail(451, "4.7.1", "Try again later")`"""
    return Verdict_Tempfail(_reply(code, enhanced, text))


def reject(code: int, enhanced: str, text: str) -> Verdict:
    """`reject(550, "5.7.1", "Refused")`"""
    return Verdict_Reject(_reply(code, enhanced, text))


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"\s*(\d+)\s*(ms|min|s|m|h|d)\s*")


def duration_ms(text: str) -> Optional[int]:
    """A humantime-style duration ("300ms", "30s", "5m", "1h 30m", "36d") in milliseconds;
    None when `text` is not one."""
    if not isinstance(text, str) or not text.strip():
        return None
    total, pos = 0, 0
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None:
            return None
        total += int(part.group(1)) * _UNITS_MS[part.group(2)]
        pos = part.end()
    return total
