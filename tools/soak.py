#!/usr/bin/env python3
"""Soak kage: mixed traffic for a set time, then check it came back to rest.

    python3 tools/soak.py [--build build/release] [--seconds 600] [--threads 2]

Starts the C test backend (master), a fault-injecting shadow (faultkit.py
serve, in its own process) and kage in front of both with --admin and a
diff log, then runs client worker processes for --seconds:

  keepalive   GETs and HEADs of sizes 0 B to 2 MB on keep-alive connections
              (some chunked); about one in eight asks the shadow for a fault
              (reset before/after the head/mid-body, stall, hang, garbage,
              short or long body, delay) with ?sfault=, which master ignores
  pipeline    batches of 1 to 8 pipelined GETs
  upload      POST /echo (not shadowed: --shadow-path) with Content-Length
              and chunked bodies, each checked byte for byte in master's echo;
              POST /size/N uploads (shadowed), some over --shadow-body-max
  disconnect  clients that leave mid-head, mid-body, or before reading a
              2 MB answer
  slowread    4 MB answers read 16 KiB at a time with a small receive buffer

Every answer is checked against the known bodies. Every few seconds kage's
RSS, descriptors (by kind) and /metrics gauges are sampled. When the
traffic stops and a settle period has passed (35 s by default, beyond the
30 s kage keeps idle pooled connections), the checks:

  - every response correct (no worker error);
  - kage_connections_open 0, no record in flight, comparator queue empty;
  - descriptors back to the count at start (pooled backend connections,
    if any are left, listed apart and allowed);
  - RSS within max(8 MiB, 20 %) of its value after the warm-up (the
    larger of 60 s and a fifth of the run). kage's pools keep their
    high-water mark (nothing is allocated on the request path after
    warm-up), so RSS steps up when concurrent work peaks, e.g. while a
    shadow stalls (--shadow-max-inflight 256 bounds that here); when this
    check fails the steps are listed with what was in flight;
  - and a leak bound: a leak grows with every request, a high-water mark
    only at peaks, so over every stretch of at least a quarter of the
    post-warm-up requests RSS must have grown less than 16 bytes per
    request somewhere (the flattest stretch bounds the leak rate); with
    fewer than 100000 post-warm-up requests it is only reported;
  - request heads kage counted == heads the clients sent whole;
  - shadows sent + skipped by reason == eligible; records queued + dropped
    == sent (dropped: only records left at the drain deadline, so 0 here);
    queued == compared;
  - the diff log's lines == kage_diff_log_lines_written_total;
  - SIGTERM: exit 0, the summary lines agree with /metrics, no sanitizer
    report.

Prints a summary; exits 0 when every check passes, 1 otherwise.
"""
import argparse
import base64
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import faultkit as fk  # noqa: E402

LISTEN_RE = re.compile(r"listening on [^ ]*:(\d+)")
SHADOW_FAULTS = ["reset_before", "reset_headers", "reset_body", "stall_body", "hang", "garbage",
                 "short", "long", "delay"]
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                     "WARNING: ThreadSanitizer")


# =============================================================================
# worker: one process of client threads
# =============================================================================

class Stop(Exception):
    pass


class Conn:
    """A blocking client connection with a response reader."""

    def __init__(self, port, rcvbuf=None, timeout=30.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def response(self, head=False):
        while True:
            got = fk.parse_response(self.buf, head)
            if got:
                r, used = got
                del self.buf[:used]
                return r
            d = self.sock.recv(1 << 20)
            if not d:
                raise EOFError(f"closed with {len(self.buf)} bytes of a response")
            self.buf += d

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Worker:
    def __init__(self, args):
        self.port = args.port
        self.until = time.monotonic() + args.seconds
        self.seed = args.seed
        self.lock = threading.Lock()
        self.stats = {}
        self.heads = 0		# request heads sent whole (kage counts these)
        self.errors = []
        self.rate = args.rate
        self.next_slot = time.monotonic()

    def pace(self, n=1):
        """Share this process's request rate (--rate per client process)
        among its threads."""
        if not self.rate:
            return
        with self.lock:
            slot = self.next_slot = max(self.next_slot, time.monotonic() - 0.2) + n / self.rate
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def count(self, scen, key, n=1):
        with self.lock:
            s = self.stats.setdefault(scen, {"requests": 0, "answered": 0, "errors": 0})
            s[key] = s.get(key, 0) + n

    def head_sent(self, scen, n=1):
        with self.lock:
            self.heads += n
        self.count(scen, "requests", n)

    def error(self, scen, msg):
        self.count(scen, "errors")
        with self.lock:
            if len(self.errors) < 50:
                self.errors.append(f"{scen}: {msg}")

    def running(self):
        return time.monotonic() < self.until

    def check(self, scen, r, status, body=None, length=None):
        if r.status != status:
            self.error(scen, f"status {r.status}, wanted {status}: {r.body[:80]!r}")
            return False
        if body is not None and r.body != body:
            self.error(scen, f"body of {len(r.body)} bytes differs (wanted {len(body)})")
            return False
        if length is not None and r.headers.get("content-length") != str(length):
            self.error(scen, f"Content-Length {r.headers.get('content-length')}, wanted {length}")
            return False
        if "x-smuggled" in r.headers:
            self.error(scen, "a smuggled response")
            return False
        self.count(scen, "answered")
        return True

    # --- scenarios ---
    def target(self, rng, sizes):
        size = rng.choice(sizes)
        q = []
        if rng.random() < 0.2:
            q.append("chunked=1")
        if rng.random() < 0.125:
            f = rng.choice(SHADOW_FAULTS)
            q.append(f"sfault={f}")
            if f == "delay":
                q.append(f"sdelay={rng.randrange(10, 500)}")
        return size, f"/size/{size}" + ("?" + "&".join(q) if q else "")

    def keepalive(self, k):
        scen = "keepalive"
        rng = random.Random(self.seed * 100 + k)
        sizes = [0, 1, 10, 100, 1000, 4096, 20000, 65536, 100000, 300000, 2000000]
        weights = [2, 2, 8, 10, 10, 6, 6, 4, 3, 2, 1]
        c = None
        n = 0
        while self.running():
            if c is None or n % 200 == 199:
                if c:
                    c.close()
                c = Conn(self.port)
            n += 1
            self.pace()
            size = rng.choices(sizes, weights)[0]
            _, t = self.target(rng, [size])
            head = rng.random() < 0.1
            c.send(fk.get_request(t).replace(b"GET ", b"HEAD ", 1) if head else fk.get_request(t))
            self.head_sent(scen)
            try:
                r = c.response(head)
            except (EOFError, OSError, ValueError) as e:
                self.error(scen, f"{t}: {e!r}")
                c.close()
                c = None
                continue
            if head:
                ok = self.check(scen, r, 200, b"", None if "chunked" in t else size)
            else:
                ok = self.check(scen, r, 200, fk.pattern(size))
            if not ok or (r.headers.get("connection", "").lower() == "close"):
                c.close()
                c = None
        if c:
            c.close()

    def pipeline(self, k):
        scen = "pipeline"
        rng = random.Random(self.seed * 100 + 50 + k)
        c = None
        while self.running():
            if c is None:
                c = Conn(self.port)
            batch = [self.target(rng, [0, 5, 100, 1000, 5000, 30000]) for _ in range(rng.randrange(1, 9))]
            self.pace(len(batch))
            c.send(b"".join(fk.get_request(t) for _, t in batch))
            self.head_sent(scen, len(batch))
            try:
                for size, t in batch:
                    r = c.response()
                    if not self.check(scen, r, 200, fk.pattern(size)):
                        raise ValueError("wrong answer")
            except (EOFError, OSError, ValueError) as e:
                self.error(scen, f"batch of {len(batch)}: {e!r}")
                c.close()
                c = None
        if c:
            c.close()

    def upload(self, k):
        scen = "upload"
        rng = random.Random(self.seed * 100 + 60 + k)
        c = None
        while self.running():
            if c is None:
                c = Conn(self.port)
            self.pace()
            kind = rng.random()
            n = rng.choice([0, 1, 100, 5000, 70000, 200000])
            body = bytes(rng.getrandbits(8) for _ in range(min(n, 256))) * (n // 256 + 1)
            body = body[:n]
            try:
                if kind < 0.6:
                    # master echoes it: checked byte for byte (not shadowed: --shadow-path)
                    chunked = rng.random() < 0.4
                    if chunked:
                        raw = (b"POST /echo/%d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" % n +
                               chunk(body, rng.choice([1, 100, 4096, 65536])))
                    else:
                        raw = b"POST /echo/%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (n, n) + body
                    c.send(raw)
                    self.head_sent(scen)
                    r = c.response()
                    if r.status != 200:
                        self.error(scen, f"echo status {r.status}")
                    else:
                        j = json.loads(r.body)
                        if j["body_len"] != n or base64.b64decode(j.get("body_b64", "")) != body:
                            self.error(scen, f"echo of {n} bytes came back as {j['body_len']}")
                        else:
                            self.count(scen, "answered")
                else:
                    # shadowed uploads; some over --shadow-body-max (1 MiB)
                    if rng.random() < 0.1:
                        body = body * (1200000 // max(len(body), 1) + 1) if body else b"x" * 1200000
                    size = rng.choice([10, 1000, 20000])
                    raw = (b"POST /size/%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                           % (size, len(body)) + body)
                    c.send(raw)
                    self.head_sent(scen)
                    r = c.response()
                    self.check(scen, r, 200, fk.pattern(size))
                if r.headers.get("connection", "").lower() == "close":
                    c.close()
                    c = None
            except (EOFError, OSError, ValueError) as e:
                self.error(scen, f"upload of {n}: {e!r}")
                c.close()
                c = None
        if c:
            c.close()

    def disconnect(self, k):
        scen = "disconnect"
        rng = random.Random(self.seed * 100 + 70 + k)
        while self.running():
            c = Conn(self.port)
            how = rng.randrange(4)
            try:
                if how == 0:		# mid-head
                    c.send(b"GET /size/100 HTTP/1.1\r\nHost: t\r\nX-A: b")
                    self.count(scen, "mid_head")
                elif how == 1:		# mid-body of a shadowed upload
                    c.send(b"POST /size/10 HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" +
                           b"y" * rng.randrange(1, 50000))
                    self.head_sent(scen)
                    self.count(scen, "mid_body")
                elif how == 2:		# a whole request, gone before the answer
                    c.send(fk.get_request("/size/2000000"))
                    self.head_sent(scen)
                    self.count(scen, "before_answer")
                else:			# reads half of a large answer, then leaves
                    c.send(fk.get_request("/size/1000000"))
                    self.head_sent(scen)
                    got = 0
                    while got < 300000:
                        d = c.sock.recv(65536)
                        if not d:
                            break
                        got += len(d)
                    self.count(scen, "mid_answer")
                time.sleep(rng.uniform(0, 0.02))
            except OSError as e:
                self.error(scen, f"case {how}: {e!r}")
            c.close()
            time.sleep(rng.uniform(0.005, 0.05))

    def slowread(self, k):
        scen = "slowread"
        rng = random.Random(self.seed * 100 + 80 + k)
        while self.running():
            c = Conn(self.port, rcvbuf=16384)
            size = rng.choice([500000, 4000000])
            try:
                c.send(fk.get_request(f"/size/{size}"))
                self.head_sent(scen)
                data = bytearray()
                want = None
                while want is None or len(data) < want:
                    d = c.sock.recv(16384)
                    if not d:
                        raise EOFError(f"closed after {len(data)} bytes")
                    data += d
                    if want is None and b"\r\n\r\n" in data:
                        end = data.index(b"\r\n\r\n") + 4
                        m = re.search(rb"Content-Length: (\d+)", bytes(data[:end]))
                        want = end + int(m.group(1))
                    time.sleep(0.004)
                end = data.index(b"\r\n\r\n") + 4
                if bytes(data[end:]) != fk.pattern(size) or not data.startswith(b"HTTP/1.1 200 "):
                    self.error(scen, f"slow read of {size} differs")
                else:
                    self.count(scen, "answered")
            except (EOFError, OSError, AttributeError) as e:
                self.error(scen, f"slow read of {size}: {e!r}")
            c.close()

    def run(self, nthreads):
        plan = [("keepalive", self.keepalive, 0), ("keepalive", self.keepalive, 1),
                ("pipeline", self.pipeline, 0), ("upload", self.upload, 0),
                ("disconnect", self.disconnect, 0), ("slowread", self.slowread, 0)]
        plan = plan[:max(nthreads, 1)] if nthreads < len(plan) else plan
        threads = []
        for name, fn, k in plan:
            def body(fn=fn, k=k, name=name):
                try:
                    fn(k)
                except Exception as e:	# noqa: BLE001 - reported
                    self.error(name, f"thread died: {e!r}")
            t = threading.Thread(target=body, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        print(json.dumps({"heads": self.heads, "stats": self.stats, "errors": self.errors}), flush=True)


def chunk(body, size):
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return bytes(out) + b"0\r\n\r\n"


# =============================================================================
# the soak: processes, sampling, checks
# =============================================================================

class Proc:
    def __init__(self, argv, name, tmp, stdout=None):
        self.name = name
        self.err_path = os.path.join(tmp, f"{name}.err")
        self.err = open(self.err_path, "wb")
        self.p = subprocess.Popen(argv, stdout=stdout or subprocess.DEVNULL, stderr=self.err,
                                  stdin=subprocess.DEVNULL)
        self.pid = self.p.pid

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_port(self, regex=LISTEN_RE, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = regex.search(self.stderr())
            if m:
                return int(m.group(1))
            if self.p.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.p.returncode}: {self.stderr()[-2000:]}")
            time.sleep(0.05)
        raise SystemExit(f"{self.name} did not listen: {self.stderr()[-2000:]}")

    def stop(self, timeout=30):
        """SIGTERM, wait, SIGKILL if needed; (exit status, seconds)."""
        t0 = time.monotonic()
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()
        return self.p.returncode, time.monotonic() - t0


def leak_bound(samples):
    """The least RSS growth per request over any stretch of samples that
    spans at least a quarter of their requests: a leak's rate cannot be
    above it (bytes per request), a high-water mark's steps do not count."""
    if len(samples) < 2:
        return None
    total = samples[-1]["requests"] - samples[0]["requests"]
    if total <= 0:
        return None
    best = None
    j = 0
    for i in range(len(samples)):
        while j < len(samples) and samples[j]["requests"] - samples[i]["requests"] < total / 4:
            j += 1
        if j == len(samples):
            break
        rate = (samples[j]["rss_kib"] - samples[i]["rss_kib"]) * 1024 / (samples[j]["requests"] - samples[i]["requests"])
        best = rate if best is None else min(best, rate)
    return best


def census_key(census):
    """The descriptors that must come back exactly: all but backend sockets."""
    return {k: v for k, v in census.items() if not k.startswith("backend:")}


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def soak(args):
    build = os.path.join(ROOT, args.build) if not os.path.isabs(args.build) else args.build
    kage_bin = os.path.join(build, "kage")
    tb_bin = os.path.join(build, "tools", "testbackend")
    for b in (kage_bin, tb_bin):
        if not os.path.exists(b):
            raise SystemExit(f"{b} not built (make -j2, or make SAN=address,undefined)")
    tmp = tempfile.mkdtemp(prefix="kage-soak-")
    procs = []
    checks = []

    def check(ok, what):
        checks.append((bool(ok), what))
        if not args.quiet or not ok:
            print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)

    try:
        master = Proc([tb_bin, "--listen", "127.0.0.1:0", "--name", "production", "--threads", "2",
                       "--quiet"], "master", tmp)
        procs.append(master)
        mport = master.wait_port()
        shadow_out = open(os.path.join(tmp, "shadow.out"), "wb")
        shadow = Proc([sys.executable, os.path.join(ROOT, "tests", "integration", "faultkit.py"), "serve",
                       "--hold-max", "30"], "shadow", tmp, stdout=shadow_out)
        procs.append(shadow)
        sport = shadow.wait_port()
        diff_log = os.path.join(tmp, "diff.jsonl")
        kage = Proc([kage_bin, "--listen", "127.0.0.1:0", "--threads", str(args.threads),
                     "--master", f"production=127.0.0.1:{mport}",
                     "--shadow", f"sandbox=127.0.0.1:{sport}",
                     "--admin", "127.0.0.1:0", "--diff-log", diff_log,
                     "--shadow-timeout", "2", "--backend-timeout", "10", "--shadow-max-inflight", "256",
                     "--shadow-methods", "GET,HEAD,POST", "--shadow-path", "/size",
                     "--ignore-header", "X-Backend", "--ignore-header", "X-Request-Count",
                     "--drain-timeout", "10"], "kage", tmp)
        procs.append(kage)
        kport = kage.wait_port()
        aport = kage.wait_port(fk.ADMIN_RE)
        print(f"soak: {args.build}, {args.seconds}s of traffic, kage pid {kage.pid} on :{kport} "
              f"(admin :{aport}), master :{mport}, fault shadow :{sport}, {args.workers} client "
              f"processes; logs in {tmp}", flush=True)

        def census():
            return fk.fd_census(kage.pid, {kport}, {aport}, {mport, sport})

        base_census = census()
        base_rss = fk.rss_kib(kage.pid)

        # --- traffic ---
        workers = []
        for w in range(args.workers):
            workers.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker", "--port", str(kport),
                 "--seconds", str(args.seconds), "--seed", str(args.seed * 10 + w),
                 "--rate", str(args.rate)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        t0 = time.monotonic()
        warm_at = t0 + max(min(60.0, args.seconds / 5), args.seconds / 5)
        warm_rss = None
        warm_index = 0
        samples = []
        last_req, last_t = 0, t0
        next_print = t0 + args.print_every
        while any(w.poll() is None for w in workers):
            time.sleep(args.sample)
            now = time.monotonic()
            if kage.p.poll() is not None:
                print(f"kage exited with {kage.p.returncode} during the soak", flush=True)
                break
            try:
                m = fk.scrape(aport, timeout=10)
            except OSError as e:
                print(f"  /metrics: {e!r}", flush=True)
                continue
            rss = fk.rss_kib(kage.pid)
            c = census()
            fds = sum(c.values())
            req = m.get("kage_requests_total")
            s = {"t": round(now - t0), "rss_kib": rss, "fds": fds,
                 "conns": m.get("kage_connections_open"),
                 "inflight": m.get("kage_shadow_records_inflight"),
                 "queue": m.get("kage_comparator_queue_depth"), "requests": req}
            samples.append(s)
            if warm_rss is None and now >= warm_at:
                warm_rss = rss
                warm_index = len(samples) - 1
            if now < next_print:
                continue
            next_print = now + args.print_every
            print(f"  [{s['t']:4d}s] requests {req:.0f} ({(req - last_req) / (now - last_t):.0f}/s)  "
                  f"rss {mib(rss)}  fds {fds} (backend {sum(v for k, v in c.items() if k.startswith('backend'))})  "
                  f"conns {s['conns']:.0f}  shadows in flight {s['inflight']:.0f}  queue {s['queue']:.0f}",
                  flush=True)
            last_req, last_t = req, now
            if now - t0 > args.seconds + 120:
                print("  workers overran by 120 s: stopping them", flush=True)
                for w in workers:
                    if w.poll() is None:
                        w.kill()
        results = []
        for w in workers:
            out, err = w.communicate(timeout=60)
            try:
                results.append(json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                results.append({"heads": 0, "stats": {}, "errors": [f"worker output: {out[-500:]!r} {err[-1500:]!r}"]})
        traffic_s = time.monotonic() - t0
        if warm_rss is None:
            warm_rss = samples[-1]["rss_kib"] if samples else fk.rss_kib(kage.pid)

        # --- settle ---
        print(f"soak: traffic stopped after {traffic_s:.0f}s; settling {args.settle}s", flush=True)
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:
            time.sleep(1)
        m = fk.scrape(aport)
        end_census = census()
        end_rss = fk.rss_kib(kage.pid)
        max_rss = max([s["rss_kib"] for s in samples] + [end_rss])
        with open(diff_log, "rb") as f:
            log_lines = sum(1 for _ in f)

        # --- checks ---
        heads = sum(r["heads"] for r in results)
        stats = {}
        for r in results:
            for scen, st in r["stats"].items():
                agg = stats.setdefault(scen, {})
                for k, v in st.items():
                    agg[k] = agg.get(k, 0) + v
        errors = [e for r in results for e in r["errors"]]
        nerrors = sum(st.get("errors", 0) for st in stats.values())
        print("soak: checks", flush=True)
        check(nerrors == 0, f"every response correct ({nerrors} errors{': ' + '; '.join(errors[:5]) if errors else ''})")
        check(m.get("kage_connections_open") == 0, f"kage_connections_open {m.get('kage_connections_open'):.0f}")
        check(m.get("kage_shadow_records_inflight") == 0 and m.get("kage_comparator_queue_depth") == 0,
              f"records in flight {m.get('kage_shadow_records_inflight'):.0f}, queued "
              f"{m.get('kage_comparator_queue_depth'):.0f}")
        pooled = {k: v for k, v in end_census.items() if k.startswith("backend:")}
        stale = {k: v for k, v in pooled.items() if k != "backend:ESTABLISHED"}
        # kage closes pooled connections idle for 30 s: after a longer settle
        # none may be left; after a shorter one, only healthy ones
        pool_ok = not pooled if args.settle > 31 else not stale
        check(census_key(end_census) == census_key(base_census) and pool_ok,
              f"descriptors {sum(base_census.values())} at start, {sum(end_census.values())} at the end "
              f"(pooled backend connections {pooled or 0}; start {sorted(base_census.items())}, "
              f"end {sorted(end_census.items())})")
        allowed = max(8 * 1024, warm_rss * 0.2)
        check(end_rss <= warm_rss + allowed,
              f"RSS {mib(base_rss)} at start, {mib(warm_rss)} after warm-up, {mib(max_rss)} at most, "
              f"{mib(end_rss)} at the end (allowed up to {mib(warm_rss + allowed)})")
        if end_rss > warm_rss + allowed:
            print("    where RSS stepped up (1 MiB or more within 5 s):")
            post = samples[warm_index:]
            for i in range(1, len(post)):
                j = max(0, i - 5)
                if post[i]["rss_kib"] - post[j]["rss_kib"] >= 1024 and post[i]["rss_kib"] > post[i - 1]["rss_kib"]:
                    x = post[i]
                    print(f"      {x['t']:4d}s  rss {mib(x['rss_kib'])}  shadows in flight {x['inflight']:.0f}  "
                          f"descriptors {x['fds']}  client connections {x['conns']:.0f}")
        leak = leak_bound(samples[warm_index:] + [{"rss_kib": end_rss, "requests": samples[-1]["requests"] if samples else 0}])
        post_requests = (samples[-1]["requests"] - samples[warm_index]["requests"]) if samples else 0
        if post_requests >= 100000:
            check(leak is not None and leak < 16,
                  f"leak bound: RSS grew at most {leak:.1f} bytes per request over the flattest quarter "
                  f"of the {post_requests:.0f} post-warm-up requests (allowed 16)")
        else:
            print(f"  [--] leak bound not checked: {post_requests:.0f} post-warm-up requests, fewer than "
                  f"100000 (pools still reach new highs; run longer)", flush=True)
        req_total = m.get("kage_requests_total")
        check(req_total == heads, f"request heads: {heads} sent whole by the clients, {req_total:.0f} counted by kage")
        skipped = m.by_label("kage_shadows_skipped_total", "reason")
        eligible = m.get("kage_shadow_eligible_total")
        sent = m.get("kage_shadows_sent_total")
        queued = m.get("kage_records_queued_total")
        dropped = m.get("kage_records_dropped_total")
        compared = m.total("kage_records_compared_total")
        not_sent = sum(skipped.values())
        shadow_connect = m.get("kage_shadow_failures_total", backend="sandbox", reason="connect")
        check(eligible == sent + not_sent,
              f"shadows: {eligible:.0f} eligible = {sent:.0f} sent + {not_sent:.0f} skipped "
              f"({', '.join(f'{k}={v:.0f}' for k, v in skipped.items() if v)}; "
              f"shadow connect failures {shadow_connect:.0f})")
        check(sent == queued + dropped and queued == compared,
              f"records: {sent:.0f} shadows sent = {queued:.0f} queued + {dropped:.0f} dropped; "
              f"{compared:.0f} compared")
        written = m.get("kage_diff_log_lines_written_total")
        lost = m.get("kage_diff_log_lines_lost_total")
        mismatched = m.get("kage_records_compared_total", result="mismatch")
        check(log_lines == written and written + lost == mismatched,
              f"diff log: {log_lines} lines, kage says {written:.0f} written + {lost:.0f} lost "
              f"= {mismatched:.0f} mismatched records")
        rc, took = kage.stop(timeout=60)
        err = kage.stderr()
        summ = fk.exit_summary(err)
        check(rc == 0, f"SIGTERM: exit {rc} after {took:.1f}s")
        check(summ is not None and summ["served"] == req_total and summ["compared"] == compared and
              summ["dropped"] == dropped and summ["lost"] == lost and summ.get("sent") == sent,
              f"exit summary agrees with /metrics: {summ}")
        sans = [mk for mk in SANITIZER_MARKERS if mk in err]
        check(not sans, "no sanitizer report" if not sans else f"sanitizer: {sans}: {err[-3000:]}")

        # --- summary ---
        print("\nsoak summary")
        print(f"  traffic        {traffic_s:.0f}s, {args.workers} client processes, kage --threads {args.threads}")
        print(f"  requests       {heads} sent ({req_total / max(traffic_s, 1):.0f}/s), "
              f"{sum(st.get('answered', 0) for st in stats.values())} answered and checked")
        for scen in sorted(stats):
            st = stats[scen]
            extra = ", ".join(f"{k} {v}" for k, v in sorted(st.items()) if k not in ("requests", "answered", "errors"))
            print(f"    {scen:11s}  {st.get('requests', 0):8d} requests  {st.get('answered', 0):8d} answered  "
                  f"{st.get('errors', 0)} errors{'  (' + extra + ')' if extra else ''}")
        print(f"  shadowed       {sent:.0f} sent of {eligible:.0f} eligible; skipped: "
              + ", ".join(f"{k} {v:.0f}" for k, v in skipped.items() if v))
        fails = m.by_label("kage_shadow_failures_total", "reason")
        print(f"  shadow errors  " + ", ".join(f"{k} {v:.0f}" for k, v in fails.items() if v))
        print(f"  recorded       {compared:.0f} compared ({m.get('kage_records_compared_total', result='match'):.0f} "
              f"matched, {mismatched:.0f} mismatched), {dropped:.0f} dropped")
        print(f"  diff log       {log_lines} lines, {lost:.0f} lost")
        print(f"  RSS            start {mib(base_rss)}, after warm-up {mib(warm_rss)}, max {mib(max_rss)}, "
              f"end {mib(end_rss)}; leak bound {leak if leak is not None else float('nan'):.1f} B/request")
        print(f"  descriptors    start {sum(base_census.values())}, max "
              f"{max([s['fds'] for s in samples] + [0])}, end {sum(end_census.values())}")
        print(f"  retries        {m.get('kage_backend_retries_total', backend='production'):.0f} master GETs retried; "
              f"client timeouts {m.get('kage_client_timeouts_total'):.0f}; ENOBUFS "
              f"{m.get('kage_io_uring_enobufs_total'):.0f}")
        failed = [w for ok, w in checks if not ok]
        print(f"\nsoak: {'PASSED' if not failed else 'FAILED'} ({len(checks) - len(failed)} of {len(checks)} checks)")
        if not args.keep and not failed:
            for f in os.listdir(tmp):
                os.unlink(os.path.join(tmp, f))
            os.rmdir(tmp)
        return 0 if not failed else 1
    finally:
        for p in reversed(procs):
            if p.p.poll() is None:
                p.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--settle", type=float, default=35, help="seconds at rest before the checks")
    ap.add_argument("--sample", type=float, default=1, help="seconds between samples")
    ap.add_argument("--print-every", type=float, default=10, help="seconds between progress lines")
    ap.add_argument("--threads", type=int, default=2, help="kage --threads")
    ap.add_argument("--workers", type=int, default=2, help="client processes")
    ap.add_argument("--rate", type=float, default=400,
                    help="requests/s per client process (0: as fast as they go)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the logs even when everything passed")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        Worker(args).run(6)
        return 0
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
