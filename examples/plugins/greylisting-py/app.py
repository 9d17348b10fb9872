"""Greylisting in Python: the first attempt from an unknown (client network, sender, recipient)
triple is answered `451 4.7.1`; a retry once `delay` has passed is accepted and whitelists the
triple for `whitelist` (renewed by each accepted retry). State is the plugin's kv, with TTLs, so
it is shared by every session and, with a Redis backend, by every relay.

Build (from this folder):
    componentize-py -d ../../../plugin-sdk/wit -w plugin componentize -p . -p ../python-sdk app -o greylisting.wasm
Load (relay.toml):
    [[plugins]]
    path = "examples/plugins/greylisting-py/greylisting.wasm"
    instances = "pooled"
    config = { delay = "5m", whitelist = "36d", pending = "1d" }
Try (the first attempt gets 451 4.7.1, the same one after 5 minutes is accepted):
    swaks --server 127.0.0.1:2525 --from a@example.org --to b@example.com
"""

import hashlib
import ipaddress
import json

from wit_world.imports import host, types
from componentize_py_types import Err

from wasmrelay_plugin import Plugin, duration_ms, tempfail

# The component has no filesystem at run time: every module, including those the standard
# library imports lazily on first use, must be loaded while componentize-py builds it (it runs
# this module then and snapshots the result). So use them once here.
hashlib.sha256(b"").hexdigest()
ipaddress.ip_network("192.0.2.1/24", strict=False)
ipaddress.ip_network("2001:db8::1/64", strict=False)

DEFAULTS = {
    # How long a client must wait before its retry is accepted.
    "delay": "5m",
    # How long an accepted triple stays whitelisted after its last accepted attempt.
    "whitelist": "36d",
    # How long a first attempt is remembered while waiting for the retry.
    "pending": "1d",
    # Whether a state backend failure lets mail through (true) or answers 451 (false).
    "fail_open": True,
}


class Settings:
    """The parsed config: set by `init`, read by the hooks."""

    delay: int
    whitelist: int
    pending: int
    fail_open: bool


# componentize-py makes a new `Hooks` object for every call: what must outlive a call lives at
# module level.
settings = Settings()


def network(ip: str) -> str:
    """The client's /24 (IPv4) or /64 (IPv6): big senders retry from a neighbouring address."""
    addr = ipaddress.ip_address(ip)
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class Hooks(Plugin):
    def init(self, config: str) -> None:
        given = json.loads(config)
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise Err(f"unknown key `{unknown[0]}` (known: {', '.join(DEFAULTS)})")
        merged = {**DEFAULTS, **given}
        for key in ("delay", "whitelist", "pending"):
            ms = duration_ms(merged[key])
            if ms is None:
                raise Err(f"`{key}`: expected a duration such as \"5m\", got {merged[key]!r}")
            setattr(settings, key, ms)
        if not isinstance(merged["fail_open"], bool):
            raise Err("`fail_open`: expected true or false")
        if settings.pending <= settings.delay:
            raise Err("`pending` must be longer than `delay`, or no retry could ever pass")
        settings.fail_open = merged["fail_open"]

    def rcpt(self, ctx: types.Context, recipient: str) -> types.Verdict:
        sender = (ctx.mail_from() or "").lower()
        triple = f"{network(ctx.remote_ip())}\n{sender}\n{recipient.lower()}"
        # Addresses may be 256 bytes each: the key is a digest, well under the 256-byte cap.
        digest = hashlib.sha256(triple.encode()).hexdigest()
        try:
            return self.check(digest)
        except Err as failure:
            host.log(host.LogLevel.WARN, f"greylisting state unavailable: {failure.value}")
            if settings.fail_open:
                return super().rcpt(ctx, recipient)
            return tempfail(451, "4.7.1", "Greylisting state unavailable, try again later")

    def check(self, digest: str) -> types.Verdict:
        white, first = f"white:{digest}", f"first:{digest}"
        now = host.now_ms()
        if host.kv_get(white) is not None:
            host.kv_set(white, b"1", settings.whitelist)
            return types.Verdict_Continue()
        seen = host.kv_get(first)
        if seen is None:
            if host.kv_add(first, str(now).encode(), settings.pending):
                return self.greylisted(settings.delay)
            seen = host.kv_get(first) or str(now).encode()
        waited = now - int(seen.decode())
        if waited >= settings.delay:
            host.kv_set(white, b"1", settings.whitelist)
            host.kv_delete(first)
            return types.Verdict_Continue()
        return self.greylisted(settings.delay - waited)

    def greylisted(self, wait_ms: int) -> types.Verdict:
        seconds = max(1, -(-wait_ms // 1000))
        return tempfail(451, "4.7.1", f"Greylisted, please try again in {seconds} seconds")
