#!/usr/bin/env python3
"""A downstream SMTP server for tests (aiosmtpd), on loopback only.

Usage: aiosmtpd_sink.py DIR [--host 127.0.0.1] [--port 0] [--tempfail-data N]
                            [--reject-rcpt SUBSTRING]... [--tls CERT KEY] [--auth USER:PASS]
Each accepted message is written as DIR/<n>.eml (the bytes after dot-unstuffing) and
DIR/<n>.json (mail_from, rcpt_tos, peer port for connection-reuse checks), written to a
temporary name first and renamed so readers never see half a file.
--tempfail-data N answers the first N DATA transactions with 451; --reject-rcpt answers 550
to recipients containing SUBSTRING. --tls offers STARTTLS and requires it; --auth requires
AUTH (over TLS) with these credentials. Prints "PORT <n>" once listening.
"""
import argparse
import asyncio
import json
import os
import ssl

from aiosmtpd.smtp import SMTP, AuthResult


class Handler:
    def __init__(self, args):
        self.dir = args.dir
        self.tempfail = args.tempfail_data
        self.reject = args.reject_rcpt
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if any(s in address for s in self.reject):
            return "550 5.1.1 <%s>: recipient rejected" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.tempfail > 0:
            self.tempfail -= 1
            return "451 4.3.0 try again later"
        self.count += 1
        base = os.path.join(self.dir, "%04d" % self.count)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "peer_port": session.peer[1],
            "tls": session.ssl is not None,
            "auth": session.authenticated,
        }
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.content)
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 OK queued as %d" % self.count


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tempfail-data", type=int, default=0)
    p.add_argument("--reject-rcpt", action="append", default=[])
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth")
    args = p.parse_args()
    handler = Handler(args)
    options = dict(decode_data=False, enable_SMTPUTF8=True, hostname="sink.test")
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == user.encode() and auth_data.password == password.encode()
            return AuthResult(success=ok, handled=False)

        options.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, **options), args.host, args.port)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
