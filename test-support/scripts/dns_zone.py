#!/usr/bin/env python3
"""A tiny authoritative DNS server for tests, on loopback only.

Usage: dns_zone.py ZONE.json
ZONE.json maps lower-case names (no trailing dot) to lists of [type, value]:
  {"example.test": [["MX", "10 mx.example.test"], ["TXT", "v=spf1 -all"]],
   "mx.example.test": [["A", "127.0.0.2"]],
   "broken.test": [["SERVFAIL", ""]]}
A name absent from the zone is NXDOMAIN; a present name without the asked type is an empty
NOERROR answer. Serves UDP and TCP on 127.0.0.1 on one port and prints "PORT <n>": UDP binds
port 0 and TCP takes the same number while UDP holds it; if TCP cannot, both let go and the
pair is tried again, so the number printed is held by this process from the start.
"""
import json
import os
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


def bind_pair(resolver):
    """UDP and TCP servers on one port number, both bound before the number is known to anyone."""
    for _ in range(50):
        udp = DNSServer(resolver, port=0, address="127.0.0.1")
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, port=port, address="127.0.0.1", tcp=True)
        except OSError:
            udp.server.server_close()
            continue
        return udp, tcp, port
    raise SystemExit("no port free for both UDP and TCP")


def main():
    with open(sys.argv[1]) as f:
        zone = json.load(f)
    resolver = ZoneResolver(zone)
    udp, tcp, port = bind_pair(resolver)
    udp.start_thread()
    tcp.start_thread()
    print("PORT %d" % port, flush=True)
    # The test reads only the first line; dnslib's request log must not hit a closed pipe.
    sys.stdout = open(os.devnull, "w")
    while udp.isAlive():
        time.sleep(0.5)


if __name__ == "__main__":
    main()
