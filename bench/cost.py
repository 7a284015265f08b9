#!/usr/bin/env python3
"""What a feature costs the master path: --admin, or hooks (a plugin).

    python3 bench/cost.py [--build build/release] [--reps 5] [--duration 5] [--modes off,on,scraped]
    python3 bench/cost.py --modes off,noop-plugin

Runs wrk (-t1 -c50 by default) on /size/1024 through kage, alternating in
one run between configurations, each with a fresh kage:

    off          nothing extra
    on           --admin, nobody scraping (the comparator polls its sockets)
    scraped      --admin, /metrics and /stats fetched every second while wrk
                 runs (a scraper and a dashboard at once; Prometheus usually
                 scrapes every 15 s)
    noop-plugin  --plugin noop.so: select_backends and munge_headers are
                 called on every request (and munge once per backend), and
                 change nothing

GETs are shadowed to a second backend (the same test backend, so the
comparator works on every request and polls the admin between batches);
--no-shadow measures the bare master path.
Reports, per rep and as medians: requests/s, and kage's CPU time per
request (user + system, from /proc/PID/stat), which shared or noisy
machines disturb far less than throughput. The ratios against `off` are
the medians of the per-rep ratios (runs of one rep are adjacent in time,
so slow drift cancels). Stdlib only; every process is stopped by its PID.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTEN_RE = re.compile(rb"listening on [^ ]*:(\d+)")
ADMIN_RE = re.compile(rb"admin on http://[^ ]*:(\d+)/")


class Proc:
    def __init__(self, argv, stdout=subprocess.DEVNULL):
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(argv, stdout=stdout, stderr=self.err, stdin=subprocess.DEVNULL)

    def wait_for(self, regex, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.err.seek(0)
            m = regex.search(self.err.read())
            if m:
                return int(m.group(1))
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        self.err.seek(0)
        raise RuntimeError(f"{self.p.args[0]}: no {regex.pattern!r}: {self.err.read()[-2000:]!r}")

    def stop(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.err.close()


def wrk(port, args):
    cmd = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{args.duration}s",
           f"http://127.0.0.1:{port}/size/1024"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    if not m or not n:
        raise RuntimeError("wrk: " + out)
    return float(m.group(1)), int(n.group(1))


def cpu_seconds(pid):
    """User + system CPU time of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scraper(port, stop, counts):
    while not stop.wait(1.0):
        for path in ("/metrics", "/stats"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    r.read()
                counts[path] = counts.get(path, 0) + 1
            except OSError as e:
                counts["errors"] = counts.get("errors", 0) + 1
                print(f"  scrape {path}: {e}", file=sys.stderr)


def run_once(mode, backend_port, args):
    kage = os.path.join(ROOT, args.build, "kage")
    argv = [kage, "--listen", "127.0.0.1:0", "--threads", str(args.threads),
            "--master", f"production=127.0.0.1:{backend_port}", "--diff-log", os.devnull]
    if not args.no_shadow:
        argv += ["--shadow", f"sandbox=127.0.0.1:{backend_port}"]
    if mode in ("on", "scraped"):
        argv += ["--admin", "127.0.0.1:0"]
    if mode == "noop-plugin":
        argv += ["--plugin", os.path.join(ROOT, args.build, "plugins", "noop.so")]
    k = Proc(argv)
    try:
        port = k.wait_for(LISTEN_RE)
        admin = k.wait_for(ADMIN_RE) if mode in ("on", "scraped") else None
        wrk(port, argparse.Namespace(**{**vars(args), "duration": 1}))  # warm pools and caches
        stop, counts, t = threading.Event(), {}, None
        if mode == "scraped":
            t = threading.Thread(target=scraper, args=(admin, stop, counts), daemon=True)
            t.start()
        cpu0 = cpu_seconds(k.p.pid)
        rps, n = wrk(port, args)
        cpu = cpu_seconds(k.p.pid) - cpu0
        stop.set()
        if t:
            t.join(10)
        return rps, cpu / max(n, 1) * 1e6, counts
    finally:
        k.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="kage shards")
    ap.add_argument("--modes", default="off,on,scraped")
    ap.add_argument("--no-shadow", action="store_true", help="no shadow: the master path alone")
    args = ap.parse_args()
    modes = args.modes.split(",")

    backend = Proc([os.path.join(ROOT, args.build, "tools", "testbackend"), "--listen", "127.0.0.1:0",
                    "--threads", "1", "--quiet"])
    try:
        bport = backend.wait_for(LISTEN_RE)
        print(f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s /size/1024 through kage "
              f"(--threads {args.threads}, {'no shadow' if args.no_shadow else 'GETs shadowed'}); "
              f"{args.reps} reps, modes alternating")
        rps = {m: [] for m in modes}
        cpu = {m: [] for m in modes}
        for rep in range(args.reps):
            # Alternate the order too, so drift over the run favours no mode.
            order = modes if rep % 2 == 0 else list(reversed(modes))
            line = []
            for mode in order:
                r, c, counts = run_once(mode, bport, args)
                rps[mode].append(r)
                cpu[mode].append(c)
                extra = f", {counts.get('/metrics', 0)} scrapes" if mode == "scraped" else ""
                line.append(f"{mode} {r:,.0f} req/s ({c:.1f} us CPU/req{extra})")
            print(f"rep {rep + 1}: " + "; ".join(line), flush=True)
        print()
        for m in modes:
            v = rps[m]
            print(f"{m:8s} median {statistics.median(v):9,.0f} req/s (min {min(v):,.0f}, max {max(v):,.0f}), "
                  f"kage {statistics.median(cpu[m]):.1f} us CPU per request")
        if "off" in modes:
            for m in modes:
                if m == "off":
                    continue
                rr = statistics.median(a / b for a, b in zip(rps[m], rps["off"]))
                cr = statistics.median(a / b for a, b in zip(cpu[m], cpu["off"]))
                print(f"{m}/off: throughput x{rr:.3f}, CPU per request x{cr:.3f} (medians of per-rep ratios)")
    finally:
        backend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
