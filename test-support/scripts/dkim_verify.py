#!/usr/bin/env python3
"""Verifies every DKIM signature of a message with dkimpy, fetching keys from a DNS server
on loopback. Usage: dkim_verify.py MESSAGE_FILE DNS_PORT. Exit 0 and prints "ok" when valid."""
import sys

import dkim
from dnslib import DNSRecord


def dnsfunc(port):
    def lookup(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        answer = DNSRecord.parse(DNSRecord.question(name, "TXT").send("127.0.0.1", port, timeout=timeout))
        for rr in answer.rr:
            return b"".join(rr.rdata.data)
        return None
    return lookup


def main():
    message = open(sys.argv[1], "rb").read()
    port = int(sys.argv[2])
    d = dkim.DKIM(message)
    n = message.count(b"DKIM-Signature:")
    if n == 0:
        print("no signature")
        sys.exit(1)
    for i in range(n):
        if not d.verify(idx=i, dnsfunc=dnsfunc(port)):
            print("signature %d failed" % i)
            sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
