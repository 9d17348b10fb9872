#!/usr/bin/env python3
"""Measurement helpers for bench/run: one load run with its latency probe, idle-connection
memory, priming a greylisting plugin, fsync counts, the summary tables.

    bench.py load  --port P --sink-out FILE --msgs N --sessions S --size B [--reuse]
                   [--wait-delivery] [--pid PID] [--sink-pid PID] [--probe-rate R] [--count-syncs]
    bench.py conns --port P --pid PID --conns N
    bench.py prime --port P --sink-out FILE [--wait-delivery]
    bench.py strace-count < STRACE_SUMMARY
    bench.py table RESULTS
    bench.py criterion < OUTPUT

`load` and `conns` print one JSON object on stdout; bench/run appends them to RESULTS as
`<system> <scenario> <round> <json>` lines and `table` turns those into medians, ranges and
ratios to Postfix. Every wait has a deadline; every address is 127.0.0.1.
"""

import argparse
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state is [0])."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tree(root):
    """`root` and all its descendants, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(stat_fields(entry)[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def cpu_seconds(root):
    """CPU time of `root`'s process tree, including children it has reaped (Postfix's master
    reaps each smtpd, so a process that exits mid-run moves into its parent's total)."""
    total = 0
    for pid in tree(root):
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def machine_busy_seconds():
    """CPU seconds all cores spent on anything but idle and I/O wait, since boot."""
    with open("/proc/stat") as f:
        cpu = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in cpu[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class SyncCounter:
    """Counts fsync and fdatasync calls on the whole machine with `perf stat` on the syscall
    tracepoints, while the load runs: unlike strace it does not slow the calls down, so the
    batches the spool forms are the ones of the measured run. The load generator and the
    sink never fsync; on a quiet machine the count is the MTA's. None without perf."""

    EVENTS = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync"

    def __init__(self):
        try:
            self.proc = subprocess.Popen(
                ["perf", "stat", "-a", "-x", ",", "-e", self.EVENTS],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except OSError:
            self.proc = None
        time.sleep(0.2)  # perf attaches before the first message
        if self.proc and self.proc.poll() is not None:
            self.proc = None

    def stop(self):
        if not self.proc:
            return None
        self.proc.send_signal(2)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None
        total, seen = 0, 0
        for line in err.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2].startswith("syscalls:sys_enter_"):
                if not fields[0].isdigit():
                    return None
                total, seen = total + int(fields[0]), seen + 1
        return total if seen == 2 else None


def own_cpu_seconds():
    """This process and the children it reaped (smtp-source)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def tree_rss_kib(root):
    """Resident memory summed over `root`'s tree (shared pages count once per process)."""
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
        except (OSError, IndexError, ValueError):
            continue
    return total


class PeakRss(threading.Thread):
    """Samples the tree's resident memory every 100 ms until stopped; keeps the maximum."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root, self.peak, self.done = root, 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss_kib(self.root))
            self.done.wait(0.1)

    def stop(self):
        self.done.set()
        self.join()
        self.peak = max(self.peak, tree_rss_kib(self.root))
        return self.peak


def read_reply(sock, deadline, buf=b""):
    """Reads one (possibly multi-line) SMTP reply; returns (code, bytes after it)."""
    while True:
        lines = buf.split(b"\r\n")
        for i, line in enumerate(lines[:-1]):
            if len(line) >= 4 and line[3:4] == b" ":
                return int(line[:3]), b"\r\n".join(lines[i + 1 :])
            if len(line) == 3:
                return int(line), b"\r\n".join(lines[i + 1 :])
        if time.monotonic() >= deadline:
            raise TimeoutError("no complete reply")
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by server")
        buf += chunk


def message(size, n):
    """A message of about `size` bytes of body, like smtp-source's: 78-character lines."""
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, size // len(line))
    head = f"From: <bench@example.org>\r\nTo: <user@example.com>\r\nSubject: probe {n}\r\n\r\n"
    return head.encode() + body


class Probe(threading.Thread):
    """Latency probe: sends messages one after another beside the load, at most `rate` a
    second, and times the end of DATA (`.` CRLF sent) to the `250` read. New connection per
    message unless `reuse`. Its messages count at the sink like the load's."""

    def __init__(self, port, size, rate, reuse, timeout):
        super().__init__(daemon=True)
        self.port, self.size, self.reuse, self.timeout = port, size, reuse, timeout
        self.interval = 1.0 / rate if rate > 0 else None
        self.samples, self.sent, self.errors = [], 0, []
        self.done = threading.Event()

    def run(self):
        sock, rest = None, b""
        while not self.done.is_set() and len(self.errors) < 5:
            started = time.monotonic()
            deadline = started + self.timeout
            try:
                if sock is None:
                    sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    code, rest = read_reply(sock, deadline)
                    self.expect(code, 220, "greeting")
                    sock.sendall(b"EHLO probe.localhost\r\n")
                    code, rest = read_reply(sock, deadline, rest)
                    self.expect(code, 250, "EHLO")
                for cmd, want in ((b"MAIL FROM:<bench@example.org>", 250),
                                  (b"RCPT TO:<user@example.com>", 250),
                                  (b"DATA", 354)):
                    sock.sendall(cmd + b"\r\n")
                    code, rest = read_reply(sock, deadline, rest)
                    self.expect(code, want, cmd.decode())
                sock.sendall(message(self.size, self.sent))
                t0 = time.perf_counter()
                sock.sendall(b".\r\n")
                code, rest = read_reply(sock, deadline, rest)
                t1 = time.perf_counter()
                self.expect(code, 250, "end of data")
                self.samples.append((t1 - t0) * 1000)
                self.sent += 1
                if not self.reuse:
                    sock.sendall(b"QUIT\r\n")
                    read_reply(sock, deadline, rest)
                    sock.close()
                    sock, rest = None, b""
            except (OSError, TimeoutError, ConnectionError, ValueError) as e:
                self.errors.append(str(e))
                if sock is not None:
                    sock.close()
                sock, rest = None, b""
            if self.interval:
                self.done.wait(max(0.0, started + self.interval - time.monotonic()))
        if sock is not None:
            try:
                sock.sendall(b"QUIT\r\n")
            except OSError:
                pass
            sock.close()

    @staticmethod
    def expect(code, want, what):
        if code != want:
            raise ValueError(f"{what}: {code}")

    def stop(self):
        self.done.set()
        self.join(self.timeout + 5)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def load(args):
    """Sends `msgs` messages with smtp-source (and a latency probe beside it); times
    acceptance and, optionally, delivery; CPU, peak memory and the machine's other load."""
    before = sink_count(args.sink_out)
    out = {"load1": load1()}
    cpu_before = cpu_seconds(args.pid) if args.pid else None
    sink_before = cpu_seconds(args.sink_pid) if args.sink_pid else 0.0
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    peak = PeakRss(args.pid) if args.pid else None
    cmd = [
        "/usr/sbin/smtp-source",
        "-s", str(args.sessions),
        "-m", str(args.msgs),
        "-l", str(args.size),
        "-M", "bench-client.localhost",
        "-f", "bench@example.org",
        "-t", "user@example.com",
    ]
    if args.reuse:
        cmd.append("-d")
    cmd.append(f"{HOST}:{args.port}")
    probe = Probe(args.port, args.size, args.probe_rate, args.reuse, 30) if args.probe_rate > 0 else None
    if peak:
        peak.start()
    syncs = SyncCounter() if args.count_syncs else None
    t0 = time.monotonic()
    if probe:
        probe.start()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        done = None
    t1 = time.monotonic()
    if probe:
        probe.stop()
    out.update(msgs=args.msgs, accept_s=t1 - t0, accept_rate=args.msgs / (t1 - t0))
    if done is None:
        out["error"] = f"smtp-source did not finish within {args.timeout}s"
    elif done.returncode != 0:
        out["error"] = f"smtp-source exit {done.returncode}: {done.stderr.strip()[-300:]}"
    expected = args.msgs + (probe.sent if probe else 0)
    if args.wait_delivery and "error" not in out:
        deadline = t0 + args.timeout
        delivered = sink_count(args.sink_out) - before
        while delivered < expected and time.monotonic() < deadline:
            time.sleep(0.01)
            delivered = sink_count(args.sink_out) - before
        t2 = time.monotonic()
        if delivered >= expected:
            out.update(e2e_s=t2 - t0, e2e_rate=expected / (t2 - t0))
        else:
            out["error"] = f"delivered {delivered}/{expected} within {args.timeout}s"
    wall = time.monotonic() - t0
    if syncs:
        count = syncs.stop()
        if count is not None:
            out["syncs_per_msg"] = count / expected
    if probe:
        out["probe_msgs"] = probe.sent
        if probe.samples:
            out["p50_ms"] = percentile(probe.samples, 50)
            out["p99_ms"] = percentile(probe.samples, 99)
        if probe.errors:
            out["probe_errors"] = probe.errors[:3]
    if cpu_before is not None:
        # Until the sink has everything when delivering: delivery is part of the cost.
        mta = cpu_seconds(args.pid) - cpu_before
        out["cpu_s_per_1k"] = mta * 1000 / expected
        sink = (cpu_seconds(args.sink_pid) - sink_before) if args.sink_pid else 0.0
        # Cores busy with work outside this benchmark (MTA, sink, smtp-source, probe).
        other = machine_busy_seconds() - busy_before - mta - sink - (own_cpu_seconds() - own_before)
        out["other_cores"] = max(0.0, other / wall)
    if peak:
        out["peak_rss_mib"] = peak.stop() / 1024
    print(json.dumps(out))


def prime(args):
    """Sends messages until one gets `250` (a greylisting plugin refuses a new triple once),
    then waits for it at the sink, so the measured run starts with nothing in flight."""
    before = sink_count(args.sink_out)
    deadline = time.monotonic() + args.timeout
    codes = []
    while time.monotonic() < deadline and len(codes) < 5:
        sock = socket.create_connection((HOST, args.port), timeout=10)
        try:
            code, rest = read_reply(sock, deadline)
            for cmd in (b"EHLO bench-client.localhost", b"MAIL FROM:<bench@example.org>",
                        b"RCPT TO:<user@example.com>"):
                sock.sendall(cmd + b"\r\n")
                code, rest = read_reply(sock, deadline, rest)
                if code >= 400:
                    break
            if code < 400:
                sock.sendall(b"DATA\r\n")
                code, rest = read_reply(sock, deadline, rest)
                sock.sendall(message(512, 0) + b".\r\n")
                code, rest = read_reply(sock, deadline, rest)
            sock.sendall(b"QUIT\r\n")
        finally:
            sock.close()
        codes.append(code)
        if code == 250:
            break
        time.sleep(0.2)
    if codes[-1] != 250:
        print(json.dumps({"error": f"priming replies {codes}"}))
        return 1
    while args.wait_delivery and sink_count(args.sink_out) <= before:
        if time.monotonic() > deadline:
            print(json.dumps({"error": "primed message not delivered"}))
            return 1
        time.sleep(0.02)
    print(json.dumps({"primed": codes}))
    return 0


def memory(root):
    """(process count, RSS, PSS, RssAnon) over the tree under `root`, KiB. RssAnon is the
    private anonymous memory: shared libraries and file mappings do not count, so it compares
    one process with many."""
    count = rss = pss = anon = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = dict(
                    (line.split(":")[0], int(line.split()[1]))
                    for line in f
                    if line.split(":")[0] in ("Rss", "Pss")
                )
            with open(f"/proc/{pid}/status") as f:
                anon_kib = next((int(l.split()[1]) for l in f if l.startswith("RssAnon:")), 0)
        except (OSError, ValueError, IndexError):
            continue
        count += 1
        rss += fields.get("Rss", 0)
        pss += fields.get("Pss", 0)
        anon += anon_kib
    return count, rss, pss, anon


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


def raise_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def conns(args):
    """Opens `conns` idle sessions (greeting + EHLO) and reports the memory they cost."""
    limit = raise_nofile(args.conns + 256)
    if limit < args.conns + 64:
        print(json.dumps({"error": f"open files limit {limit} < {args.conns} connections"}))
        return
    deadline = time.monotonic() + args.timeout
    base = settle(args.pid, time.monotonic() + 10)
    socks = []
    try:
        # Connect in batches and read the replies after each batch's writes: 10,000
        # sequential round trips would take longer than the measurement.
        for start in range(0, args.conns, 200):
            batch = []
            for _ in range(min(200, args.conns - start)):
                if time.monotonic() > deadline:
                    raise TimeoutError("opening connections")
                s = socket.create_connection((HOST, args.port), timeout=10)
                socks.append(s)
                batch.append(s)
            for s in batch:
                if read_reply(s, deadline)[0] != 220:
                    raise ConnectionError("no 220 greeting")
                s.sendall(b"EHLO bench-client.localhost\r\n")
            for s in batch:
                if read_reply(s, deadline)[0] != 250:
                    raise ConnectionError("EHLO refused")
        held = settle(args.pid, min(deadline, time.monotonic() + 30))
        n = len(socks)
        out = {
            "conns": n,
            "procs_before": base[0],
            "procs_after": held[0],
            "anon_kib_per_conn": (held[3] - base[3]) / n,
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


def strace_count(_args):
    """Sums the `calls` column of an `strace -c` summary for fsync-like calls."""
    total = 0
    for line in sys.stdin:
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync", "sync_file_range", "syncfs"):
            # % time, seconds, usecs/call, calls, [errors,] syscall
            total += int(parts[3])
    print(total)


# (key, label, table) in the order the report shows them.
METRICS = [
    ("e2e_rate", "end to end, msgs/s (counted at the sink)"),
    ("accept_rate", "accepted, msgs/s (smtp-source done)"),
    ("p50_ms", "time to 250 after DATA, p50 ms (probe)"),
    ("p99_ms", "time to 250 after DATA, p99 ms (probe)"),
    ("cpu_s_per_1k", "CPU seconds per 1,000 messages"),
    ("peak_rss_mib", "peak RSS, MiB (all processes)"),
    ("syncs_per_msg", "fsync + fdatasync per message (perf, whole machine, during the load)"),
    ("fsyncs_per_msg", "fsync + fdatasync per message (strace -f -c, a separate slower run)"),
    ("anon_kib_per_conn", "idle connection, KiB RssAnon each (all processes)"),
    ("rss_kib_per_conn", "idle connection, KiB RSS each (all processes)"),
    ("pss_kib_per_conn", "idle connection, KiB PSS each (all processes)"),
]

# Systems in the order the tables show them; each wasmrelay system gets a ratio to Postfix.
SYSTEMS = [
    ("wasmrelay", "wasmrelay"),
    ("wasmrelay-plugins", "+4 plugins"),
    ("wasmrelay-python", "+Python"),
    ("postfix", "Postfix"),
]


# Cores other processes may keep busy during a run before the table flags its figures.
BUSY_CORES = 0.25


def num(v):
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def cell(xs, fmt=num):
    if not xs:
        return "-"
    m = statistics.median(xs)
    return fmt(m) if len(xs) == 1 else f"{fmt(m)} ({fmt(min(xs))} to {fmt(max(xs))})"


def table(args):
    """Per metric: one row per scenario, each system's median (range) over the rounds, each
    wasmrelay system's ratio to Postfix (the median of per-round ratios: each round's
    wasmrelay figure over the same round's Postfix figure), and the background load the
    scenario's runs saw: cores other processes used, 1-minute load average at the start."""
    runs = {}  # (scenario, system, key) -> {round: value}
    scenarios, load, load_avg = [], {}, {}
    with open(args.results) as f:
        for line in f:
            parts = line.strip().split(" ", 3)
            if len(parts) < 4:
                continue
            system, scenario, rnd, blob = parts
            run = json.loads(blob)
            if scenario not in scenarios:
                scenarios.append(scenario)
            if "error" in run:  # listed separately by bench/run; its figures mean nothing
                continue
            for key, value in run.items():
                if isinstance(value, (int, float)):
                    runs.setdefault((scenario, system, key), {})[rnd] = value
            if "other_cores" in run:
                load.setdefault(scenario, []).append(run["other_cores"])
            if "load1" in run:
                load_avg.setdefault(scenario, []).append(run["load1"])
    present = [(k, label) for k, label in SYSTEMS if any(s == k for _, s, _ in runs)]
    others = [(k, label) for k, label in present if k != "postfix"]
    has_postfix = any(k == "postfix" for k, _ in present)
    for key, label in METRICS:
        rows = []
        for scenario in scenarios:
            if not any((scenario, s, key) in runs for s, _ in present):
                continue
            cells = [scenario]
            for system, _ in present:
                cells.append(cell(list(runs.get((scenario, system, key), {}).values())))
            if has_postfix:
                base = runs.get((scenario, "postfix", key), {})
                for system, _ in others:
                    mine = runs.get((scenario, system, key), {})
                    ratios = [mine[r] / base[r] for r in mine if base.get(r)]
                    cells.append(f"{statistics.median(ratios):.3g}" if ratios else "-")
            for seen in (load, load_avg):
                cells.append(cell(seen[scenario]) if seen.get(scenario) else "-")
            rows.append(cells)
        if not rows:
            continue
        head = ["scenario"] + [l for _, l in present]
        if has_postfix:
            head += [f"{l} / Postfix" for _, l in others]
        head += ["other cores", "load average"]
        print(f"\n{label}; median (min to max) over rounds")
        print_table([head] + rows)
    plugins_cost(runs, scenarios, [k for k, _ in others if k != "wasmrelay"])
    busiest = max((max(v) for v in load.values()), default=0.0)
    if busiest > BUSY_CORES:
        print(f"\n*** other processes kept up to {busiest:.2f} cores busy during a run "
              f"(column `other cores`): figures beside them are not results. ***")


def plugins_cost(runs, scenarios, systems):
    """What each plugin system costs against wasmrelay without plugins, from the rounds both
    ran in: the share of the end-to-end throughput lost (1 - with / without, per round) and
    the CPU added per message. Paired by round, so a round the whole machine was slower in
    counts against neither."""
    rows = []
    for scenario in scenarios:
        base_rate = runs.get((scenario, "wasmrelay", "e2e_rate"), {})
        base_cpu = runs.get((scenario, "wasmrelay", "cpu_s_per_1k"), {})
        for system in systems:
            rate = runs.get((scenario, system, "e2e_rate"), {})
            cpu = runs.get((scenario, system, "cpu_s_per_1k"), {})
            lost = [100 * (1 - rate[r] / base_rate[r]) for r in rate if base_rate.get(r)]
            added = [cpu[r] - base_cpu[r] for r in cpu if r in base_cpu]
            if lost:
                rows.append([scenario, dict(SYSTEMS)[system], str(len(lost)),
                             cell(lost, lambda v: f"{v:.1f}"), cell(added, lambda v: f"{v:.3f}")])
    if rows:
        print("\nwhat the plugins cost against no plugins, per round; median (min to max) over rounds")
        print_table([["scenario", "system", "rounds", "throughput lost, %",
                      "CPU added, ms per message"]] + rows)


def print_table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
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
    l.add_argument("--reuse", action="store_true", help="smtp-source -d: several messages per connection")
    l.add_argument("--wait-delivery", action="store_true")
    l.add_argument("--pid", type=int, help="the MTA's (root) process, to count its CPU time")
    l.add_argument("--sink-pid", type=int, help="smtp-sink, whose CPU is not background load")
    l.add_argument("--probe-rate", type=float, default=50, help="latency probe messages/s (0: none)")
    l.add_argument("--timeout", type=float, default=300)
    l.add_argument("--count-syncs", action="store_true", help="count fsync/fdatasync calls with perf")
    c = sub.add_parser("conns")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--pid", type=int, required=True)
    c.add_argument("--conns", type=int, default=500)
    c.add_argument("--timeout", type=float, default=180)
    r = sub.add_parser("prime")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--sink-out", required=True)
    r.add_argument("--wait-delivery", action="store_true")
    r.add_argument("--timeout", type=float, default=60)
    sub.add_parser("strace-count")
    t = sub.add_parser("table")
    t.add_argument("results")
    sub.add_parser("criterion")
    args = p.parse_args()
    commands = {"load": load, "conns": conns, "prime": prime, "strace-count": strace_count,
                "table": table, "criterion": criterion}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
