"""An OTLP/HTTP trace receiver on loopback, for the trace tests.

usage: otlp_receiver.py SPANS_FILE

Binds 127.0.0.1:0, prints `PORT <n>`, and decodes every POST to /v1/traces as an
ExportTraceServiceRequest (opentelemetry-proto; protobuf, or JSON when the content type
says so). Each span is appended to SPANS_FILE as one JSON line: name, trace_id, span_id,
parent_span_id (hex, "" for a root), kind, start and end (ns), attributes (a dict of
plain values), and the resource's service.name.
"""
import base64
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

out_path = sys.argv[1]


def value(v):
    kind = v.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, kind)
    return json_format.MessageToDict(v)


def otlp_json_ids(node):
    """OTLP/JSON writes trace and span ids in hex where protobuf's JSON mapping expects
    base64: convert them so that ParseDict reads the same bytes."""
    if isinstance(node, list):
        return [otlp_json_ids(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, v in node.items():
        if key in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
            v = base64.b64encode(bytes.fromhex(v)).decode()
        out[key] = otlp_json_ids(v)
    return out


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = ExportTraceServiceRequest()
        try:
            if self.path != "/v1/traces":
                raise ValueError(f"unexpected path {self.path}")
            if "json" in self.headers.get("Content-Type", ""):
                json_format.ParseDict(otlp_json_ids(json.loads(body)), request)
            else:
                request.ParseFromString(body)
        except Exception as e:  # a malformed export is the relay's bug: say so loudly
            print(f"bad export: {e}", file=sys.stderr, flush=True)
            self.send_response(400)
            self.end_headers()
            return
        lines = []
        for rs in request.resource_spans:
            attrs = {a.key: value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    lines.append(json.dumps({
                        "service": attrs.get("service.name", ""),
                        "name": s.name,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": {a.key: value(a.value) for a in s.attributes},
                    }))
        with open(out_path, "a") as f:
            f.write("".join(line + "\n" for line in lines))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
