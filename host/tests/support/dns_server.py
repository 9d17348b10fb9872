#!/usr/bin/env python3
"""A tiny authoritative DNS server for tests, on loopback only.

Usage: dns_server.py ZONE.json
ZONE.json maps lower-case names (no trailing dot) to lists of [type, value]:
  {"example.test": [["MX", "10 mx.example.test"], ["TXT", "v=spf1 -all"]],
   "mx.example.test": [["A", "127.0.0.2"]],
   "broken.test": [["SERVFAIL", ""]]}
A name absent from the zone is NXDOMAIN; a present name without the asked type is an empty
NOERROR answer. Serves UDP and TCP on 127.0.0.1 on one free port and prints "PORT <n>".
"""
import json
import os
import socket
import sys
import time

from dnslib import DNSRecord, QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSServer


class ZoneResolver(BaseResolver):
    def __init__(self, zone):
        self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        records = self.zone.get(qname)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if any(t == "SERVFAIL" for t, _ in records):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        for rtype, value in records:
            if rtype != qtype:
                continue
            if rtype == "TXT":
                # Long TXT values are split into 255-octet strings, as in a real zone.
                chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
                text = " ".join('"%s"' % c.replace('"', '\\"') for c in chunks)
                zone_line = "%s. 60 IN TXT %s" % (qname, text)
            else:
                zone_line = "%s. 60 IN %s %s" % (qname, rtype, value)
            reply.add_answer(*RR.fromZone(zone_line))
        return reply


def free_port():
    # A port free for both UDP and TCP on 127.0.0.1.
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            continue
        t.close()
        u.close()
        return port
    raise SystemExit("no free port")


def main():
    with open(sys.argv[1]) as f:
        zone = json.load(f)
    resolver = ZoneResolver(zone)
    port = free_port()
    udp = DNSServer(resolver, port=port, address="127.0.0.1")
    tcp = DNSServer(resolver, port=port, address="127.0.0.1", tcp=True)
    udp.start_thread()
    tcp.start_thread()
    print("PORT %d" % port, flush=True)
    # The test reads only the first line; dnslib's request log must not hit a closed pipe.
    sys.stdout = open(os.devnull, "w")
    while udp.isAlive():
        time.sleep(0.5)


if __name__ == "__main__":
    main()
