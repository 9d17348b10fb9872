#!/usr/bin/env python3
"""A next-hop SMTP server for the hardening tests, written against the raw protocol so that
every reply is under the test's control. Prints `PORT <n>` once listening.

Usage: downstream.py DIR [--host H] [--port N] [--cert PEM --key PEM] [--auth]
                         [--reject-prefix P] [--data-reply TEXT]

- Each accepted message: DIR/<n>.eml (bytes as received, dot-unstuffed) and DIR/<n>.json
  ({"mail_from", "rcpts", "rcpt_lines", "conn", "tls"}).
- --cert/--key: offer STARTTLS with that certificate.
- --auth: offer AUTH PLAIN and LOGIN (any credentials accepted); every attempt is appended to
  DIR/auth.jsonl as {"user", "password", "tls", "conn"}.
- --reject-prefix: RCPT to a local part starting with P gets `550 5.1.1`.
- --data-reply: the text of the 250 reply after the final dot, with Python escapes
  (`\\u0085` is NEL, sent as UTF-8).
"""
import argparse
import base64
import itertools
import json
import os
import socket
import socketserver
import ssl
import threading

COUNTER = itertools.count(1)
CONNS = itertools.count(1)
LOCK = threading.Lock()


class Handler(socketserver.StreamRequestHandler):
    def setup(self):
        super().setup()
        self.conn_id = next(CONNS)
        self.tls = False

    def send(self, text):
        self.wfile.write(text.encode("utf-8") + b"\r\n")
        self.wfile.flush()

    def line(self):
        raw = self.rfile.readline(65536)
        if not raw:
            raise EOFError
        return raw.rstrip(b"\r\n").decode("utf-8", "replace")

    def ehlo_reply(self):
        opts = self.server.opts
        caps = ["downstream.test", "PIPELINING", "8BITMIME", "DSN"]
        if opts.cert and not self.tls:
            caps.append("STARTTLS")
        if opts.auth:
            caps.append("AUTH PLAIN LOGIN")
        for c in caps[:-1]:
            self.send("250-" + c)
        self.send("250 " + caps[-1])

    def record_auth(self, user, password):
        entry = {"user": user, "password": password, "tls": self.tls, "conn": self.conn_id}
        with LOCK, open(os.path.join(self.server.opts.dir, "auth.jsonl"), "a") as f:
            f.write(json.dumps(entry) + "\n")

    def starttls(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server.opts.cert, self.server.opts.key)
        self.send("220 2.0.0 go ahead")
        sock = ctx.wrap_socket(self.connection, server_side=True)
        self.connection = sock
        self.rfile = sock.makefile("rb")
        self.wfile = sock.makefile("wb")
        self.tls = True

    def data(self, mail_from, rcpts, rcpt_lines):
        self.send("354 go ahead")
        body = bytearray()
        while True:
            raw = self.rfile.readline(1 << 20)
            if not raw:
                raise EOFError
            if raw == b".\r\n":
                break
            if raw.startswith(b"."):
                raw = raw[1:]
            body += raw
        n = next(COUNTER)
        d = self.server.opts.dir
        with open(os.path.join(d, "%06d.eml" % n), "wb") as f:
            f.write(body)
        meta = {"mail_from": mail_from, "rcpts": rcpts, "rcpt_lines": rcpt_lines,
                "conn": self.conn_id, "tls": self.tls}
        tmp = os.path.join(d, ".%06d.json" % n)
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.rename(tmp, os.path.join(d, "%06d.json" % n))
        self.send("250 " + (self.server.opts.data_reply or "2.0.0 ok"))

    def handle(self):
        opts = self.server.opts
        self.send("220 downstream.test ESMTP")
        mail_from, rcpts, rcpt_lines = None, [], []
        try:
            while True:
                line = self.line()
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    self.ehlo_reply()
                elif verb == "STARTTLS" and opts.cert and not self.tls:
                    self.starttls()
                elif verb == "AUTH" and opts.auth:
                    words = line.split()
                    if words[1].upper() == "PLAIN":
                        token = words[2] if len(words) > 2 else None
                        if token is None:
                            self.send("334 ")
                            token = self.line()
                        _, user, password = base64.b64decode(token).decode().split("\0")
                    else:
                        self.send("334 VXNlcm5hbWU6")
                        user = base64.b64decode(self.line()).decode()
                        self.send("334 UGFzc3dvcmQ6")
                        password = base64.b64decode(self.line()).decode()
                    self.record_auth(user, password)
                    self.send("235 2.7.0 ok")
                elif verb == "MAIL":
                    mail_from = line[line.index("<") + 1:line.index(">")]
                    rcpts, rcpt_lines = [], []
                    self.send("250 2.1.0 ok")
                elif verb == "RCPT":
                    addr = line[line.index("<") + 1:line.index(">")]
                    if opts.reject_prefix and addr.startswith(opts.reject_prefix):
                        self.send("550 5.1.1 no such user")
                    else:
                        rcpts.append(addr)
                        rcpt_lines.append(line)
                        self.send("250 2.1.5 ok")
                elif verb == "DATA" and not rcpts:
                    self.send("554 5.5.1 no valid recipients")
                elif verb == "DATA":
                    self.data(mail_from, rcpts, rcpt_lines)
                elif verb == "RSET":
                    mail_from, rcpts, rcpt_lines = None, [], []
                    self.send("250 2.0.0 ok")
                elif verb == "NOOP":
                    self.send("250 2.0.0 ok")
                elif verb == "QUIT":
                    self.send("221 2.0.0 bye")
                    return
                else:
                    self.send("502 5.5.2 not implemented")
        except (EOFError, ConnectionError, ssl.SSLError, OSError):
            return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth", action="store_true")
    p.add_argument("--reject-prefix")
    p.add_argument("--data-reply")
    opts = p.parse_args()
    if opts.data_reply:
        opts.data_reply = opts.data_reply.encode("ascii").decode("unicode_escape")
    cls = Server6 if ":" in opts.host else Server
    server = cls((opts.host, opts.port), Handler)
    server.opts = opts
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
