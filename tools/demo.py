#!/usr/bin/env python3
"""make demo: two demo backends (the sandbox answers one JSON field
differently on some paths), kage in front, a few seconds of traffic, then
the comparison summary and one mismatch record.

Everything runs on 127.0.0.1 and every process is stopped by its PID.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(argv, errpath):
    err = open(errpath, "w")
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = re.search(r"listening on [^ ]*:(\d+)", open(errpath).read())
        if m:
            return p, int(m.group(1))
        if p.poll() is not None:
            sys.exit(f"demo: {argv[0]} exited: {open(errpath).read()}")
        time.sleep(0.02)
    p.kill()
    sys.exit(f"demo: {argv[0]} did not start")


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def shoot(url, path, tmp):
    """A PNG of the dashboard, as headless Chromium renders it."""
    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        print("demo: no chromium for --screenshot (tools/install-deps --browser)")
        return
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={os.path.join(tmp, 'chromium')}", "--hide-scrollbars",
                    "--virtual-time-budget=4000", "--window-size=1400,1000",
                    f"--screenshot={os.path.abspath(path)}", url],
                   capture_output=True, timeout=60)
    print(f"dashboard screenshot: {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--hold", type=int, default=0,
                    help="keep everything up this many seconds after the traffic, to look at the dashboard")
    ap.add_argument("--screenshot", help="save a PNG of the dashboard there (needs chromium)")
    args = ap.parse_args()
    build = os.path.join(ROOT, args.build)
    tmp = tempfile.mkdtemp(prefix="kage-demo-")
    log = os.path.join(tmp, "diff.jsonl")
    procs = []
    try:
        be = os.path.join(build, "tools", "testbackend")
        prod, pport = start([be, "--name", "production", "--quiet"], os.path.join(tmp, "prod.err"))
        procs.append(prod)
        sand, sport = start([be, "--name", "sandbox", "--variant", "1", "--quiet"],
                            os.path.join(tmp, "sandbox.err"))
        procs.append(sand)
        kerr = os.path.join(tmp, "kage.err")
        kage, kport = start([os.path.join(build, "kage"), "--listen", "127.0.0.1:0",
                             "--master", f"production=127.0.0.1:{pport}",
                             "--shadow", f"sandbox=127.0.0.1:{sport}",
                             # The demo backends name themselves in these headers.
                             "--ignore-header", "X-Backend", "--ignore-header", "X-Request-Count",
                             "--diff-log", log, "--admin", "127.0.0.1:0"], kerr)
        procs.append(kage)
        m = re.search(r"admin on (http://[^ ]+)", open(kerr).read())
        dashboard = m.group(1) if m else None
        print(f"demo: production on :{pport}, sandbox on :{sport} (its user names differ on odd ids),")
        print(f"      kage on :{kport} shadowing GETs to the sandbox; {args.seconds}s of traffic with wrk")
        if dashboard:
            print(f"dashboard: {dashboard}  (make demo DEMO_ARGS=--hold=120 keeps it up to look at)")
        print()
        wrk = subprocess.run(["wrk", "-t1", "-c8", f"-d{args.seconds}s", "-s",
                              os.path.join(ROOT, "tools", "demo.lua"), f"http://127.0.0.1:{kport}/"],
                             capture_output=True, text=True, timeout=args.seconds + 30)
        total = re.search(r"(\d+) requests in", wrk.stdout)
        rate = re.search(r"Requests/sec:\s+(\S+)", wrk.stdout)
        problems = [l.strip() for l in wrk.stdout.splitlines() if "Non-2xx" in l or "Socket errors" in l]
        print(f"wrk: {total.group(1) if total else '?'} requests through kage, "
              f"{rate.group(1) if rate else '?'} req/s" + (f" ({'; '.join(problems)})" if problems else ""))
        if args.screenshot and dashboard:
            shoot(dashboard, args.screenshot, tmp)
        if args.hold and dashboard:
            print(f"holding for {args.hold}s: {dashboard}")
            time.sleep(args.hold)
        stop(kage)
        err = open(kerr).read()
        print()
        for line in err.splitlines():
            if " kage info: " in line and ("served" in line or "shadows:" in line):
                print(line.split(" kage info: ", 1)[1])
        table = err[err.find("kage comparison summary"):] if "kage comparison summary" in err else ""
        print()
        print(table.rstrip())
        records = [json.loads(l) for l in open(log) if l.strip()]
        mismatch = next((r for r in records if not r["match"]), None)
        if mismatch:
            print("\none mismatch record from the diff log (" + log + "):")
            shown = {k: mismatch[k] for k in ("time", "session", "method", "target", "endpoint",
                                              "backends", "match", "diffs")}
            print(json.dumps(shown, indent=2))
    finally:
        for p in reversed(procs):
            stop(p)


if __name__ == "__main__":
    main()
