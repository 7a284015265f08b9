#!/usr/bin/env python3
"""Comparator throughput: does the comparator keep up with the proxy?

    python3 bench/comparator.py [--build build/release] [--seconds 10] [--connections 32]

Runs two test backends (production and a sandbox running the same code),
kage in front with the sandbox as its one shadow and `--diff-log /dev/null`,
and drives 4 KiB JSON traffic (/json/users/N?json_size=4096) with wrk.
Reports, side by side:

- the client's request rate (wrk);
- the records the comparator compared per second of traffic (kage's exit
  summary: "N shadowed records compared"), and what it dropped;
- the comparator thread's CPU time over the run (/proc), so records per
  CPU-second of that thread: the rate one core of comparator could sustain;
- diffbench's per-core comparison rate for 4 KiB JSON (the engine alone).

The point: the comparator's capacity is well above the proxy's request rate,
so on this machine the proxy, not the comparison, is the limit.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTEN_RE = re.compile(r"listening on [^ ]*:(\d+)")
WRK_LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/json/users/" .. (n % 1000) .. "?json_size=4096")
end
"""


class Child:
    """A process whose stderr goes to a file; stopped by its PID."""

    def __init__(self, argv, name):
        self.name = name
        self.err = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".err", delete=False)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.err, stdin=subprocess.DEVNULL)
        self.port = self.wait_port(10.0)

    def stderr(self):
        with open(self.err.name, errors="replace") as f:
            return f.read()

    def wait_port(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.stderr())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited: {self.stderr()}")
            time.sleep(0.02)
        self.stop()
        raise SystemExit(f"{self.name} did not listen within {timeout}s")

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        self.err.close()
        os.unlink(self.err.name)


def thread_cpu(pid, comm):
    """CPU seconds (user + system) of the thread of `pid` named `comm`."""
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != comm:
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except OSError:
            continue
    return None


def run_wrk(port, args):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA)
    try:
        r = subprocess.run(["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{args.seconds}s",
                            "-s", f.name, f"http://127.0.0.1:{port}/"],
                           capture_output=True, text=True, timeout=args.seconds + 30)
    finally:
        os.unlink(f.name)
    total = re.search(r"(\d+) requests in ([\d.]+)s", r.stdout)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    if not total or not rate:
        raise SystemExit("wrk: " + r.stdout + r.stderr)
    bad = [l.strip() for l in r.stdout.splitlines() if "Non-2xx" in l or "Socket errors" in l]
    return int(total.group(1)), float(total.group(2)), float(rate.group(1)), bad


def exit_summary(text):
    m = re.search(r"(\d+) shadowed records compared \((\d+) matched, (\d+) mismatched\), (\d+) dropped, "
                  r"(\d+) lost", text)
    if not m:
        raise SystemExit("kage's exit summary has no 'shadowed records compared' line:\n" + text)
    out = dict(zip(("compared", "matched", "mismatched", "dropped", "lost"), map(int, m.groups())))
    sh = re.search(r"shadows: (\d+) sent; skipped: (.*)", text)
    out["sent"] = int(sh.group(1)) if sh else None
    out["skipped"] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", sh.group(2))} if sh else {}
    out["queue_full"] = out["skipped"].get("queue_full")
    return out


def proxy_run(args):
    build = os.path.join(ROOT, args.build)
    kids = []
    inflight = ["--shadow-max-inflight", str(args.shadow_max_inflight)] if args.shadow_max_inflight else []
    try:
        def child(argv, name):
            kids.append(Child(argv, name))
            return kids[-1]
        be = [os.path.join(build, "tools", "testbackend"), "--listen", "127.0.0.1:0", "--quiet",
              "--threads", str(args.backend_threads)]
        prod = child(be + ["--name", "production"], "production")
        sand = child(be + ["--name", "sandbox"], "sandbox")
        kg = child([os.path.join(build, "kage"), "--listen", "127.0.0.1:0", "--threads", str(args.kage_threads),
                    "--master", f"production=127.0.0.1:{prod.port}", "--shadow", f"sandbox=127.0.0.1:{sand.port}",
                    "--ignore-header", "X-Backend", "--ignore-header", "X-Request-Count",
                    "--diff-log", "/dev/null", *inflight], "kage")
        # kage says "listening" before it starts the comparator thread.
        cpu0, deadline = None, time.monotonic() + 5
        while cpu0 is None and time.monotonic() < deadline:
            cpu0 = thread_cpu(kg.proc.pid, "kage-compare")
            time.sleep(0.01)
        total, secs, rate, bad = run_wrk(kg.port, args)
        time.sleep(0.5)  # the last shadows finish
        cpu1 = thread_cpu(kg.proc.pid, "kage-compare")
        rc = kg.stop()
        summ = exit_summary(kg.stderr())
        summ.update(requests=total, seconds=secs, rate=rate, wrk_problems=bad, kage_rc=rc,
                    cmp_cpu=None if cpu0 is None or cpu1 is None else cpu1 - cpu0)
        return summ
    finally:
        for k in reversed(kids):
            k.cleanup()


def diffbench(args):
    """Comparisons per CPU-second of one core, per 4 KiB JSON case."""
    r = subprocess.run([os.path.join(ROOT, args.build, "tools", "diffbench"), str(args.diffbench_seconds), "abf"],
                       capture_output=True, text=True, timeout=120)
    rates = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s+\((\w)\) (.*?)\s+(\d+) comparisons/s", line)
        if m:
            rates[m.group(1)] = (m.group(2), int(m.group(3)))
    if not rates:
        raise SystemExit("diffbench: " + r.stdout + r.stderr)
    return rates


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--kage-threads", type=int, default=1)
    ap.add_argument("--backend-threads", type=int, default=1)
    ap.add_argument("--diffbench-seconds", type=float, default=1.0)
    # On a busy machine a descheduled shadow backend falls hundreds of ms
    # behind (nothing paces it: the client waits only for master); past
    # kage's bound (1024 per shard by default) shadows are skipped as
    # "overload", and fewer records reach the comparator than requests.
    # Raising the bound is no cure: each shadow in flight holds a
    # connection, and master's latency suffers (see the report).
    ap.add_argument("--shadow-max-inflight", type=int, default=None,
                    help="passed to kage (default: kage's own)")
    args = ap.parse_args()

    print(f"comparator bench: wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds}s "
          f"GET /json/users/N?json_size=4096 through kage --threads {args.kage_threads}, one shadow, "
          f"--diff-log /dev/null{' --shadow-max-inflight %d' % args.shadow_max_inflight if args.shadow_max_inflight else ''}; "
          f"{os.cpu_count()} CPUs\n")
    s = proxy_run(args)
    capacity = print_proxy(s)
    rates = diffbench(args)
    print("\n  diffbench, one core (the engine alone, 4 KiB JSON):")
    for k in sorted(rates):
        name, rate = rates[k]
        print(f"    ({k}) {name:<48} {rate:>10} comparisons/s")
    print("\nheadroom of the comparator over the client's request rate:")
    if capacity:
        print(f"  as run in kage (records per comparator CPU-second / req/s):   {capacity / s['rate']:6.1f}x")
    if "f" in rates:
        print(f"  diffbench (f), a changed field + noise + stats, one core:      {rates['f'][1] / s['rate']:6.1f}x")
    ok = s["kage_rc"] == 0 and s["dropped"] == 0 and (s["queue_full"] or 0) == 0
    if not ok:
        print(f"\nWARNING: kage exit {s['kage_rc']}, dropped {s['dropped']}, queue_full {s['queue_full']}")
    return 0 if ok else 1


def print_proxy(s):
    """The run through kage; returns records per comparator CPU-second."""
    per_s = s["compared"] / s["seconds"]
    print(f"  client (wrk)         {s['requests']:>9} requests  {s['rate']:>10.0f} req/s")
    print(f"  comparator           {s['compared']:>9} records   {per_s:>10.0f} records/s over the traffic "
          f"({s['matched']} matched, {s['mismatched']} mismatched; dropped {s['dropped']}, "
          f"queue_full {s['queue_full']}, lost {s['lost']})")
    skipped = ", ".join(f"{k} {v}" for k, v in s["skipped"].items() if v) or "none"
    print(f"  shadows              {s['sent']:>9} sent      skipped: {skipped}")
    for p in s["wrk_problems"]:
        print(f"  wrk: {p}")
    if not s["cmp_cpu"]:
        print("  comparator thread    CPU time not measurable (under one clock tick)")
        return None
    capacity = s["compared"] / s["cmp_cpu"]
    print(f"  comparator thread    {s['cmp_cpu']:>9.2f} s CPU   {capacity:>10.0f} records per CPU-second "
          f"({100 * s['cmp_cpu'] / s['seconds']:.1f}% of one core busy)")
    return capacity


if __name__ == "__main__":
    sys.exit(main())
