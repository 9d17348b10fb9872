#!/usr/bin/env python3
"""Measurement helpers for bench/run: one load run, idle-connection memory, the summary table.

    bench.py load  --port P --sink-out FILE --msgs N --sessions S --size B [--wait-delivery] [--pid PID]
    bench.py conns --port P --pid PID --conns N
    bench.py table RESULTS
    bench.py criterion < OUTPUT

`load` and `conns` print one JSON object on stdout; bench/run appends them to RESULTS as
`<mta> <json>` lines and `table` turns those into medians and ratios. Every wait has a
deadline; every address is 127.0.0.1.
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

HOST = "127.0.0.1"


def sink_count(path):
    """Messages received so far by `smtp-sink -c`, which rewrites `... mesg=N` after `\\r`."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256))
            tail = f.read().decode("ascii", "replace")
    except FileNotFoundError:
        return 0
    found = re.findall(r"mesg=(\d+)", tail)
    return int(found[-1]) if found else 0


def cpu_seconds(root):
    """CPU time of `root`'s process tree, including children it has reaped (Postfix's master
    reaps each smtpd, so a process that exits mid-run moves into its parent's total)."""
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def load(args):
    """Sends `msgs` messages with smtp-source; times acceptance and, optionally, delivery."""
    before = sink_count(args.sink_out)
    cpu_before = cpu_seconds(args.pid) if args.pid else None
    cmd = [
        "/usr/sbin/smtp-source",
        "-s", str(args.sessions),
        "-m", str(args.msgs),
        "-l", str(args.size),
        "-M", "bench-client.localhost",
        "-f", "bench@example.org",
        "-t", "user@example.com",
        f"{HOST}:{args.port}",
    ]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    t1 = time.monotonic()
    out = {"msgs": args.msgs, "accept_s": t1 - t0, "accept_rate": args.msgs / (t1 - t0)}
    if done.returncode != 0:
        out["error"] = f"smtp-source exit {done.returncode}: {done.stderr.strip()[-300:]}"
    if args.wait_delivery and "error" not in out:
        deadline = t0 + args.timeout
        delivered = sink_count(args.sink_out) - before
        while delivered < args.msgs and time.monotonic() < deadline:
            time.sleep(0.01)
            delivered = sink_count(args.sink_out) - before
        t2 = time.monotonic()
        if delivered >= args.msgs:
            out.update(e2e_s=t2 - t0, e2e_rate=args.msgs / (t2 - t0))
        else:
            out["error"] = f"delivered {delivered}/{args.msgs} within {args.timeout}s"
    if cpu_before is not None:
        # Until the sink has everything when delivering: delivery is part of the cost.
        out["cpu_ms_per_msg"] = (cpu_seconds(args.pid) - cpu_before) * 1000 / args.msgs
    print(json.dumps(out))


def tree(root):
    """`root` and all its descendants, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def memory(root):
    """(process count, RSS KiB, PSS KiB) summed over the process tree under `root`."""
    count = rss = pss = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = dict(
                    (line.split(":")[0], int(line.split()[1]))
                    for line in f
                    if line.split(":")[0] in ("Rss", "Pss")
                )
        except (OSError, ValueError):
            continue
        count += 1
        rss += fields.get("Rss", 0)
        pss += fields.get("Pss", 0)
    return count, rss, pss


def read_reply(sock, deadline):
    """Reads one (possibly multi-line) SMTP reply; returns its code."""
    buf = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by server")
        buf += chunk
        lines = buf.split(b"\r\n")
        for line in lines[:-1]:
            if len(line) >= 4 and line[3:4] == b" ":
                return int(line[:3])
    raise TimeoutError("no complete reply")


def settle(root, deadline):
    """Waits until the tree's process count and RSS stop changing (or the deadline)."""
    last = memory(root)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = memory(root)
        if now[:2] == last[:2]:
            return now
        last = now
    return last


def conns(args):
    """Opens `conns` idle sessions (greeting + EHLO) and reports the memory they cost."""
    deadline = time.monotonic() + args.timeout
    base = settle(args.pid, time.monotonic() + 10)
    socks = []
    try:
        for _ in range(args.conns):
            if time.monotonic() > deadline:
                raise TimeoutError("opening connections")
            s = socket.create_connection((HOST, args.port), timeout=10)
            socks.append(s)
            if read_reply(s, deadline) != 220:
                raise ConnectionError("no 220 greeting")
            s.sendall(b"EHLO bench-client.localhost\r\n")
            if read_reply(s, deadline) != 250:
                raise ConnectionError("EHLO refused")
        held = settle(args.pid, min(deadline, time.monotonic() + 30))
        n = len(socks)
        out = {
            "conns": n,
            "procs_before": base[0],
            "procs_after": held[0],
            "rss_kib_per_conn": (held[1] - base[1]) / n,
            "pss_kib_per_conn": (held[2] - base[2]) / n,
            "rss_before_kib": base[1],
            "rss_after_kib": held[1],
        }
    except (OSError, TimeoutError, ConnectionError) as e:
        out = {"error": f"after {len(socks)} connections: {e}"}
    finally:
        for s in socks:
            try:
                s.sendall(b"QUIT\r\n")
            except OSError:
                pass
            s.close()
    print(json.dumps(out))


METRICS = [
    # (key, label)
    ("accept_rate", "accept throughput, msgs/s"),
    ("e2e_rate", "end to end, msgs/s"),
    ("cpu_ms_per_msg", "CPU per message, ms"),
    ("rss_kib_per_conn", "memory per connection, KiB RSS"),
    ("pss_kib_per_conn", "memory per connection, KiB PSS"),
]


def num(v):
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


# Systems in the order the table shows them; each wasmrelay system gets a ratio to Postfix.
SYSTEMS = [
    ("wasmrelay", "wasmrelay"),
    ("wasmrelay-plugins", "wasmrelay + 4 plugins"),
    ("postfix", "Postfix"),
]


def table(args):
    """Medians (with each side's range) per system and metric, then each wasmrelay system's
    ratio to Postfix and, when both ran, the plugins' ratio to none."""
    runs = {}
    with open(args.results) as f:
        for line in f:
            mta, _, blob = line.strip().partition(" ")
            if not blob:
                continue
            run = json.loads(blob)
            if "error" in run:  # listed separately by bench/run; its figures mean nothing
                continue
            for key, value in run.items():
                if isinstance(value, (int, float)):
                    runs.setdefault((mta, key), []).append(value)
    present = [(k, label) for k, label in SYSTEMS if any(m == k for m, _ in runs)]
    ratios = [(k, f"{label} / Postfix") for k, label in present if k != "postfix"]
    if any(k == "wasmrelay-plugins" for k, _ in present) and any(k == "wasmrelay" for k, _ in present):
        ratios.append(("plugins-vs-none", "plugins / none"))
    head = ("median (range, runs)",) + tuple(label for _, label in present) + tuple(l for _, l in ratios)
    rows = [head]
    for key, label in METRICS:
        cells, medians = [label], {}
        for mta, _ in present:
            xs = runs.get((mta, key), [])
            if xs:
                medians[mta] = statistics.median(xs)
                cells.append(f"{num(medians[mta])} ({num(min(xs))}-{num(max(xs))}, {len(xs)})")
            else:
                cells.append("-")
        if len(medians) == 0:
            continue
        for mta, _ in ratios:
            num_, den = ("wasmrelay-plugins", "wasmrelay") if mta == "plugins-vs-none" else (mta, "postfix")
            a, b = medians.get(num_), medians.get(den)
            cells.append(f"{a / b:.3g}" if a is not None and b else "-")
        rows.append(tuple(cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for n, r in enumerate(rows):
        print("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def criterion(args):
    """Condenses criterion's output to `name: median` lines; other report lines pass through."""
    pending = None  # a line at column 0: a benchmark name if a `time:` line follows
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip() or line.startswith(("Benchmarking", "Found", "Gnuplot")):
            continue
        head, sep, rest = line.partition("time:")
        if not line[0].isspace():
            if pending:
                print(f"  {pending}")  # a figure the bench printed itself
            pending = head.strip() if not sep else None
            name = head.strip()
        elif sep and pending:
            name, pending = pending, None
        elif not sep:
            continue  # change:, outliers and other commentary
        if sep:
            values = rest.strip().strip("[]").split()
            if len(values) >= 6:  # [low unit median unit high unit]
                print(f"  {name}: {values[2]} {values[3]}")
    if pending:
        print(f"  {pending}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("load")
    l.add_argument("--port", type=int, required=True)
    l.add_argument("--sink-out", required=True)
    l.add_argument("--msgs", type=int, default=2000)
    l.add_argument("--sessions", type=int, default=20)
    l.add_argument("--size", type=int, default=2048)
    l.add_argument("--wait-delivery", action="store_true")
    l.add_argument("--pid", type=int, help="the MTA's (root) process, to count its CPU time")
    l.add_argument("--timeout", type=float, default=300)
    c = sub.add_parser("conns")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--pid", type=int, required=True)
    c.add_argument("--conns", type=int, default=500)
    c.add_argument("--timeout", type=float, default=120)
    t = sub.add_parser("table")
    t.add_argument("results")
    sub.add_parser("criterion")
    args = p.parse_args()
    {"load": load, "conns": conns, "table": table, "criterion": criterion}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
