"""Parses Prometheus exposition text from stdin with prometheus_client's own parsers.

The text must parse both as the Prometheus text format
(`prometheus_client.parser.text_string_to_metric_families`) and as OpenMetrics (the
format the relay writes, `# EOF` included). Prints the families as JSON:
{"NAME": {"type": "counter", "unit": "", "samples": [["SAMPLE", {"label": "v"}, 1.0]]}}
Counter types come from the OpenMetrics parse, which knows `x_total` belongs to counter `x`.
"""
import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
# Strict: raises on anything OpenMetrics does not allow.
openmetrics = {f.name: f.type for f in openmetrics_families(text)}
out = {}
for family in text_string_to_metric_families(text):
    # The Prometheus parser knows a counter `x` by samples named `x`, and reads each
    # `x_total` line as a family of its own (type unknown): gather them under one name.
    entry = out.setdefault(family.name, {"type": family.type, "unit": family.unit, "samples": []})
    entry["samples"] += [[s.name, s.labels, s.value] for s in family.samples]
missing = set(openmetrics) - set(out)
if missing:
    sys.exit(f"families only the OpenMetrics parser found: {sorted(missing)}")
print(json.dumps(out))
