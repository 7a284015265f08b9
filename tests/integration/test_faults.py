"""Fault injection (hardening, part 3). Backends that reset at every stage
of a response, stall, send more than they announced, or close keep-alive
connections as they are reused; kage out of descriptors, out of provided
buffers, with a tiny completion queue; a comparator that cannot keep up;
a diff log on a full disk or a closed pipe. Each test checks what a client
sees, then that kage is still healthy: a normal request answered, /metrics
adding up, no descriptor leaked (the census of /proc/PID/fd taken at
start), exit 0 on SIGTERM.

KAGE_QUICK=1 runs the heavy ones with less load.

Regression tests of the bugs this module found: the admin listener spun
on EMFILE (test_emfile_admin_scrape_does_not_spin); a shadowed request
refused for lack of a descriptor leaked its record
(test_emfile_shadowed_request_refused_releases_its_record); a slow
comparator was reported as shadow overload
(test_slow_comparator_is_not_reported_as_shadow_overload); SIGTERM waited
for the whole comparator queue past --drain-timeout
(test_sigterm_with_the_comparator_behind_is_bounded)."""
import json
import os
import random
import shutil
import socket
import tempfile
import threading
import time
import zlib

import faultkit as fk
from harness import Reader, ScriptedBackend, binary, ok_response, request, wait_for
from healthcase import HealthCase, scaled
from support import read_all


def kage_error(r, status):
    """A short error answer written by kage itself (not master's)."""
    return r.status == status and r.header("X-Backend") is None and 0 < len(r.body) <= 512


def read_answer(sock, timeout=5.0):
    """Bytes until EOF, or until a whole response kage wrote itself (a 5xx
    that may leave the connection open): (bytes, eof)."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while True:
            try:
                d = sock.recv(65536)
            except ConnectionResetError:
                return bytes(data), True
            if not d:
                return bytes(data), True
            data += d
            if data.startswith(b"HTTP/1.1 5"):
                try:
                    if fk.parse_response(data):
                        return bytes(data), False
                except ValueError:
                    pass
    except socket.timeout:
        return bytes(data), False


class Background:
    """Ordinary GETs on one keep-alive connection, in a thread, for as long
    as a fault runs: every answer must be right, and quick."""

    def __init__(self, port, period=0.01):
        self.port = port
        self.period = period
        self.errors = []
        self.n = 0
        self.worst = 0.0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        rd = Reader(s, timeout=5)
        try:
            while not self.stop_ev.is_set():
                size = 100 + self.n % 900
                t0 = time.monotonic()
                s.sendall(request("GET", f"/size/{size}"))
                r = rd.response()
                self.worst = max(self.worst, time.monotonic() - t0)
                if (r.status, r.body) != (200, fk.pattern(size)):
                    self.errors.append(f"{r.status} {r.body[:60]!r}")
                self.n += 1
                time.sleep(self.period)
        except Exception as e:	# noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            s.close()

    def stop(self, at_least=5):
        """Stop after at least `at_least` requests (bounded wait)."""
        deadline = time.monotonic() + 10
        while self.n < at_least and not self.errors and time.monotonic() < deadline:
            time.sleep(0.02)
        self.stop_ev.set()
        self.thread.join(10)
        return self


class MasterFaults(HealthCase):
    threads = True

    def test_master_resets_at_every_stage(self):
        """reset before any byte: a 502 from kage and the connection goes
        on; after the head: a 502, or the head and a short body then EOF;
        mid-body: the head, a short prefix of the body, EOF. Never a second
        status line; ordinary traffic meanwhile unaffected."""
        be = self.origin()
        sh = self.fault_server(idle_close=1.0)
        kg = self.start(master=be.port, shadows=[("sandbox", sh.port)])
        bg = Background(kg.port)
        n = scaled(6, 2)
        seen = {}
        for stage in ("before", "headers", "body"):
            for framing in ("", "&chunked=1"):
                for i in range(n):
                    size = 200000 + i
                    s = self.connect(kg.port)
                    s.sendall(request("GET", f"/size/{size}?reset={stage}{framing}"))
                    data, eof = read_answer(s, 5)
                    with self.subTest(stage=stage, framing=framing, i=i):
                        self.assertTrue(data.startswith(b"HTTP/1.1 "), data[:80])
                        self.assertEqual(data.count(b"HTTP/1.1 "), 1, "a second status line")
                        head, _, body = data.partition(b"\r\n\r\n")
                        status = int(data[9:12])
                        seen.setdefault((stage, status), 0)
                        seen[(stage, status)] += 1
                        if status == 502:
                            self.assertNotEqual(stage, "body", "a 502 after body bytes went out")
                            self.assertNotIn(b"X-Backend", head)
                            self.assertTrue(body.startswith(b"502 "), body[:80])
                        else:
                            self.assertEqual(status, 200)
                            self.assertNotEqual(stage, "before", "a response from a reset before any byte")
                            self.assertTrue(eof, "the connection stayed open after a cut body")
                            if not framing:
                                self.assertLess(len(body), size)
                                self.assertEqual(body, fk.pattern(len(body)))
                            else:
                                self.assertNotIn(b"\r\n0\r\n\r\n", body, "a complete chunked body")
                    s.close()
        # the 502 leaves the client connection usable
        s = self.connect(kg.port)
        rd = Reader(s, timeout=5)
        s.sendall(request("GET", "/size/10?reset=before"))
        r = rd.response()
        self.assertTrue(kage_error(r, 502), r)
        if (r.header("Connection") or "").lower() != "close":
            s.sendall(request("GET", "/size/11"))
            self.assertEqual(rd.response().body, fk.pattern(11))
        s.close()
        bg.stop()
        self.assertEqual(bg.errors, [])
        self.assertGreaterEqual(bg.n, 5)
        m = self.assert_healthy(kg)
        resets = m.get("kage_backend_errors_total", backend="production", kind="reset")
        self.assertGreaterEqual(resets, 3 * 2 * n, m.text)
        self.assertEqual(seen.get(("before", 502)), 2 * n, seen)
        summ = self.stop_clean(kg, within=5)
        self.assertEqual(summ["served"], m.get("kage_requests_total"))

    def test_master_stalls_mid_body_and_before_answering(self):
        """--backend-timeout 1: a master that stops mid-body leaves the
        client with the head and the bytes sent, then EOF, about a second
        later; one that never answers gives a 504. Both at once, several
        of each, with ordinary traffic going on."""
        fs = self.fault_server(idle_close=1.0)
        kg = self.start("--backend-timeout", "1", master=fs.port)
        bg = Background(kg.port)
        n = scaled(5, 2)
        socks = []
        t0 = time.monotonic()
        for i in range(n):
            for fault in ("stall_body", "hang"):
                s = self.connect(kg.port)
                s.sendall(request("GET", f"/size/{100000 + i}?sfault={fault}"))
                socks.append((fault, i, s))
        for fault, i, s in socks:
            with self.subTest(fault=fault, i=i):
                if fault == "hang":
                    # a 504 from kage; the request was whole, so the
                    # connection may go on
                    r = Reader(s, timeout=6).response()
                    self.assertTrue(kage_error(r, 504), r)
                    self.assertLess(time.monotonic() - t0, 6.0)
                    s.close()
                    continue
                data, eof = read_all(s, 6)
                took = time.monotonic() - t0
                self.assertTrue(eof, f"{fault}: still open after {took:.1f}s")
                self.assertLess(took, 6.0)
                head, _, body = data.partition(b"\r\n\r\n")
                self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:80])
                self.assertIn(b"Content-Length: %d" % (100000 + i), head)
                self.assertEqual(body, fk.pattern(len(body)))
                self.assertLess(len(body), 100000 + i)
            s.close()
        self.assertGreaterEqual(time.monotonic() - t0, 0.8)
        bg.stop()
        self.assertEqual(bg.errors, [])
        self.assertLess(bg.worst, 1.0, "ordinary traffic waited on the stalled master")
        m = self.assert_healthy(kg)
        self.assertGreaterEqual(m.get("kage_backend_errors_total", backend="production", kind="timeout"),
                                2 * n)
        self.stop_clean(kg, within=5)

    def test_master_sends_more_than_announced(self):
        """bad_framing=long: master's extra bytes (a whole smuggled
        response) never reach a client as the answer to anything, on the
        same connection or another."""
        be = self.origin()
        kg = self.start(master=be.port)
        clients = []
        for c in range(4):
            reqs = []
            for i in range(scaled(30, 10)):
                size = 10 + c * 100 + i
                q = "?bad_framing=long" if i % 2 == 0 else ""
                reqs.append((fk.get_request(f"/size/{size}{q}"), fk.expect_pattern(size), False))
            clients.append(fk.Client(reqs, depth=1 + c % 2))
        fk.run_clients(kg.port, clients, timeout=30)
        for c in clients:
            self.assertEqual(c.errors, [])
        m = self.assert_healthy(kg)
        self.assertEqual(m.total("kage_responses_total", **{"class": "5xx"}), 0)
        self.stop_clean(kg, within=5)


class ShadowFaults(HealthCase):
    threads = True

    # what the record says about the shadow, per fault
    ERRORS = {"reset_before": "reset", "reset_headers": "reset", "reset_body": "reset",
              "stall_body": "timeout", "hang": "timeout", "garbage": "malformed", "short": "reset",
              "long": None}

    def test_shadow_faults_never_reach_clients(self):
        """A shadow that resets before, after the head and mid-body, stalls
        mid-body, hangs, sends garbage, a short body or extra bytes: clients
        get master's answer, in master's time; each record names the
        shadow's error; the requests between them compare equal (no answer
        is taken for another's: no desync)."""
        be = self.origin()
        sh = self.fault_server(idle_close=1.0)
        log = tempfile.NamedTemporaryFile(prefix="kage-faults-", suffix=".jsonl", delete=False)
        log.close()
        self.addCleanup(os.unlink, log.name)
        kg = self.start("--shadow-timeout", "1", "--diff-log-all", "--diff-log", log.name,
                        master=be.port, shadows=[("sandbox", sh.port)])
        n = scaled(4, 2)
        plan = []	# (target, fault or None)
        for i in range(n):
            for fault in self.ERRORS:
                plan.append((f"/size/{5000 + len(plan)}?sfault={fault}", fault))
                plan.append((f"/size/{5000 + len(plan)}", None))
        random.Random(7).shuffle(plan)
        c = self.connect(kg.port)
        rd = Reader(c, timeout=5)
        worst = 0.0
        for target, fault in plan:
            size = int(target.split("/")[2].split("?")[0])
            t0 = time.monotonic()
            c.sendall(request("GET", target))
            r = rd.response()
            worst = max(worst, time.monotonic() - t0)
            self.assertEqual((r.status, r.body), (200, fk.pattern(size)), (target, r))
            self.assertEqual(r.header("X-Backend"), "production")
        c.close()
        self.assertLess(worst, 0.9, "a client waited on a shadow")
        # every record is in the log once the slowest shadow (1 s) is done
        def records():
            with open(log.name) as f:
                return [fk_json(line) for line in f if line.strip()]
        self.assertTrue(wait_for(lambda: len(records()) >= len(plan), 8), len(records()))
        recs = {r["target"]: r for r in records()}
        self.assertEqual(len(recs), len(plan))
        for target, fault in plan:
            rec = recs[target]
            sb = rec["backends"]["sandbox"]
            with self.subTest(target=target):
                self.assertEqual(rec["backends"]["production"]["status"], 200)
                want = self.ERRORS[fault] if fault else None
                self.assertEqual(sb["error"], want, rec)
                self.assertEqual(rec["match"], want is None, rec)
                if want is None:
                    self.assertEqual(rec["diffs"], [])
        m = self.assert_healthy(kg, logged_all=True)
        fails = m.by_label("kage_shadow_failures_total", "reason")
        self.assertEqual(fails.get("timeout"), 2 * n, fails)
        self.assertEqual(fails.get("malformed"), n, fails)
        self.assertEqual(fails.get("reset"), 4 * n, fails)
        summ = self.stop_clean(kg, within=5)
        self.assertEqual(summ["compared"], len(plan) + 3)
        self.assertEqual(summ["sent"], len(plan) + 3)


def fk_json(line):
    return json.loads(line)


def closing_master(idle):
    """A master that closes every keep-alive connection idle for `idle`
    seconds, and answers each request with what identifies it: method,
    target, body length and CRC."""
    def handler(conn, index):
        first = True
        while True:
            conn.sock.settimeout(10 if first else idle)
            try:
                req = conn.read_request()
            except socket.timeout:
                return	# idle: the backend closes (FIN)
            if req is None:
                return
            first = False
            conn.sock.settimeout(10)
            head, _, body = req.partition(b"\r\n\r\n")
            method, target = head.split(b"\r\n")[0].split(b" ")[:2]
            conn.send(ok_response(b"%s %s %d %08x" % (method, target, len(body), zlib.crc32(body))))
    return ScriptedBackend(handler)


class KeepAliveRace(HealthCase):
    threads = True

    IDLE = 0.020

    def test_backend_closes_idle_connections_as_they_are_reused(self):
        """Master closes idle keep-alive connections after 20 ms; requests
        come at intervals of 17 to 23 ms, so kage keeps reusing a pooled
        connection just as master closes it. GETs always succeed (a request
        that meets a connection closing under it is retried once on a fresh
        one); a POST may get a 502 but never another request's answer, and
        never reaches master twice."""
        sb = closing_master(self.IDLE)
        self.addCleanup(sb.close)
        kg = self.start(master=sb.port)
        kg.probe = lambda size: (f"/size/{size}", b"GET /size/%d 0 00000000" % size)
        n = scaled(300, 100)
        rng = random.Random(11)
        s = self.connect(kg.port, timeout=10)
        rd = Reader(s, timeout=10)
        results = []
        for i in range(n):
            if i % 3 == 2:
                body = b"post %d " % i + b"x" * rng.randrange(0, 3000)
                s.sendall(request("POST", f"/p/{i}", body=body))
                want = b"POST /p/%d %d %08x" % (i, len(body), zlib.crc32(body))
            else:
                s.sendall(request("GET", f"/g/{i}"))
                want = b"GET /g/%d 0 00000000" % i
            r = rd.response()
            results.append((i % 3 == 2, r.status, r.body, want))
            if (r.header("Connection") or "").lower() == "close":
                s.close()
                s = self.connect(kg.port, timeout=10)
                rd = Reader(s, timeout=10)
            time.sleep(rng.uniform(self.IDLE - 0.003, self.IDLE + 0.003))
        s.close()
        posts_502 = 0
        for i, (is_post, status, body, want) in enumerate(results):
            if is_post and status == 502:
                posts_502 += 1
                continue
            self.assertEqual((status, body), (200, want), f"request {i} ({'POST' if is_post else 'GET'})")
        with sb.lock:
            received = b"".join(sb.received)
        for i in range(2, n, 3):
            self.assertLessEqual(received.count(b"POST /p/%d " % i), 1, f"POST /p/{i} reached master twice")
        m = self.assert_healthy(kg)
        retries = m.get("kage_backend_retries_total", backend="production")
        print(f"\n  keep-alive race: {n} requests, {sb.connections} master connections, "
              f"{retries:.0f} GETs retried, {posts_502} POSTs answered 502", flush=True)
        self.stop_clean(kg, within=5)


    def test_shadow_closes_idle_connections_as_they_are_reused(self):
        """The same race on the shadow side: a shadow that closes idle
        keep-alive connections after 20 ms. A GET that meets a shadow
        connection closing under it is sent again on a fresh one, so the
        records show the shadow's answers, not a "reset" per race. Only
        idempotent methods are sent again: a POST may record a reset."""
        be = self.origin()
        sb = closing_master(self.IDLE)
        self.addCleanup(sb.close)
        log = tempfile.NamedTemporaryFile(prefix="kage-race-", suffix=".jsonl", delete=False)
        log.close()
        self.addCleanup(os.unlink, log.name)
        kg = self.start("--diff-log-all", "--diff-log", log.name, "--shadow-methods", "GET,POST",
                        master=be.port, shadows=[("sandbox", sb.port)], ignore=False)
        n = scaled(300, 100)
        rng = random.Random(12)
        s = self.connect(kg.port, timeout=10)
        rd = Reader(s, timeout=10)
        for i in range(n):
            if i % 3 == 2:
                s.sendall(request("POST", f"/size/{100 + i}", body=b"x" * rng.randrange(0, 3000)))
            else:
                s.sendall(request("GET", f"/size/{100 + i}"))
            r = rd.response()
            self.assertEqual((r.status, r.body), (200, fk.pattern(100 + i)), f"request {i}")
            time.sleep(rng.uniform(self.IDLE - 0.003, self.IDLE + 0.003))
        s.close()
        def records():
            with open(log.name) as f:
                return [json.loads(line) for line in f if line.strip()]
        self.assertTrue(wait_for(lambda: len(records()) >= n, 8), len(records()))
        errors = {}
        for rec in records():
            err = rec["backends"]["sandbox"]["error"]
            if err:
                errors.setdefault((rec["method"], err), []).append(rec["target"])
        get_errors = {k: v for k, v in errors.items() if k[0] == "GET"}
        self.assertEqual(get_errors, {}, "GET shadows recorded as failed")
        m = self.metrics(kg)
        retries = m.get("kage_backend_retries_total", backend="sandbox")
        print(f"\n  shadow keep-alive race: {n} requests, {sb.connections} shadow connections, "
              f"{retries:.0f} shadows sent again, POST shadow errors "
              f"{ {k[1]: len(v) for k, v in errors.items()} }", flush=True)
        self.stop_clean(kg, within=5)


class OutOfDescriptors(HealthCase):
    """kage started with RLIMIT_NOFILE 64: accept hits EMFILE."""

    NOFILE = 64

    def fill(self, kg, total):
        """Open `total` connections; returns them and how many kage took."""
        socks = [self.connect(kg.port) for _ in range(total)]
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 0.7:
            n = self.census(kg).get("client", 0)
            if n != last:
                last, stable_since = n, time.monotonic()
            time.sleep(0.05)
        return socks, last

    def test_emfile_backs_off_and_recovers(self):
        """More connections than descriptors: kage takes what it can, backs
        off without spinning (its CPU time over 2 s stays small), answers a
        request on a connection it holds (200, or a quick 502 when no
        descriptor is left for master), and once clients go away accepts
        the waiting connections and serves them all."""
        be = self.origin()
        kg = self.start(master=be.port, nofile=self.NOFILE)
        socks, took = self.fill(kg, 80)
        self.assertLess(took, 80 - 10, "kage accepted past its descriptor limit?")
        self.assertGreater(took, 30)
        w0 = kg.stderr().count("accept: Too many open files")
        cpu0, t0 = fk.cpu_seconds(kg.pid), time.monotonic()
        time.sleep(2.0)
        cpu = fk.cpu_seconds(kg.pid) - cpu0
        self.assertLess(cpu, 0.3, f"kage used {cpu:.2f}s of CPU in {time.monotonic() - t0:.1f}s "
                        f"out of descriptors: {fk.thread_cpu(kg.pid)}")
        # retried every 100 ms, warned once per episode (it was every retry)
        w1 = kg.stderr().count("accept: Too many open files")
        self.assertGreaterEqual(w1, 1)
        self.assertLessEqual(w1 - w0, 1, f"{w1 - w0} accept warnings in 2 s of one episode")
        # a request on a connection kage holds
        s0 = socks[0]
        rd = Reader(s0, timeout=5)
        s0.sendall(request("GET", "/size/10"))
        r = rd.response()
        self.assertIn(r.status, (200, 502), r)
        if r.status == 200:
            self.assertEqual(r.body, fk.pattern(10))
        else:
            self.assertTrue(kage_error(r, 502), r)
        # clients leave: the waiting connections are accepted and served
        for s in socks[1:51]:
            s.close()
        left = socks[51:]
        if (r.header("Connection") or "").lower() == "close":
            self.assertTrue(rd.at_eof(3))
            s0.close()
        else:
            left.append(s0)
        self.assertTrue(wait_for(lambda: self.census(kg).get("client", 0) == len(left), 5),
                        f"{self.census(kg)} with {len(left)} clients waiting")
        for i, s in enumerate(left):
            rd = Reader(s, timeout=5)
            s.sendall(request("GET", f"/size/{100 + i}"))
            r = rd.response()
            self.assertEqual((r.status, r.body), (200, fk.pattern(100 + i)), f"connection {i}")
            s.close()
        m = self.assert_healthy(kg)
        self.assertGreaterEqual(m.get("kage_accept_backoffs_total"), 1)
        self.assertEqual(m.get("kage_connections_accepted_total"), 80 + 1)
        warns = kg.stderr().count("accept: Too many open files")
        print(f"\n  EMFILE: kage held {took} of 80 connections at RLIMIT_NOFILE {self.NOFILE}, "
              f"{cpu:.2f}s CPU in 2 s, {warns} accept warnings logged", flush=True)
        self.stop_clean(kg, within=5)

    def test_emfile_admin_scrape_does_not_spin(self):
        """An operator scraping /metrics while kage is out of descriptors:
        the admin listener must back off like the shards do, not spin on a
        failing accept (and not flood the log); the scrape is answered once
        descriptors are back."""
        be = self.origin()
        kg = self.start(master=be.port, nofile=self.NOFILE)
        socks, took = self.fill(kg, 80)
        a = socket.create_connection(("127.0.0.1", kg.admin), timeout=5)
        self._socks.append(a)
        a.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.2)
        cpu0, t0 = fk.cpu_seconds(kg.pid), time.monotonic()
        time.sleep(2.0)
        cpu = fk.cpu_seconds(kg.pid) - cpu0
        per_thread = fk.thread_cpu(kg.pid)
        for s in socks:
            s.close()
        r = Reader(a, timeout=5).response()
        self.assertEqual(r.status, 200)
        a.close()
        warns = kg.stderr().count("--admin: accept")
        self.assertLess(cpu, 0.3, f"kage used {cpu:.2f}s of CPU in {time.monotonic() - t0:.1f}s with "
                        f"an admin connection waiting out of descriptors: {per_thread}; "
                        f"{warns} '--admin: accept' warnings logged")
        self.assertLessEqual(warns, 2, f"{warns} '--admin: accept' warnings logged (one per episode)")
        self.assert_healthy(kg)
        self.stop_clean(kg, within=5)

    def test_emfile_shadowed_request_refused_releases_its_record(self):
        """A shadowed GET that kage answers 502 because no descriptor is
        left to reach master: its record must end (compared or dropped and
        counted), not stay in flight until the drain deadline."""
        be = self.origin()
        sh = self.origin(name="sandbox")
        kg = self.start(master=be.port, shadows=[("sandbox", sh.port)], nofile=self.NOFILE, drain=4)
        socks, took = self.fill(kg, 80)
        rd = Reader(socks[0], timeout=5)
        socks[0].sendall(request("GET", "/size/10"))
        r = rd.response()
        for s in socks:
            s.close()
        if r.status == 200:
            self.skipTest("master had a pooled connection: no 502 to look at")
        self.assertTrue(kage_error(r, 502), r)
        m = self.assert_healthy(kg, settle=4)	# accounted: no shadow left pending
        skipped = m.by_label("kage_shadows_skipped_total", "reason")
        self.assertEqual(skipped["client_gone"], 1, skipped)	# never whole: not sent
        self.stop_clean(kg, within=3)


class Exhaustion(HealthCase):
    threads = True

    def test_provided_buffers_exhausted(self):
        """--buffers 2: far fewer receive buffers than connections moving
        large bodies both ways. kage waits for buffers and re-arms; every
        response arrives whole and right, every upload reaches master whole;
        kage_io_uring_enobufs_total moves."""
        be = self.origin()
        kg = self.start("--buffers", "2", master=be.port)
        clients = []
        big = scaled(1000000, 300000)
        for c in range(scaled(24, 10)):
            reqs = []
            for i in range(3):
                size = big + 1000 * c + i
                q = "?chunked=1&chunk=50000" if (c + i) % 3 == 0 else ""
                reqs.append((fk.get_request(f"/size/{size}{q}"), fk.expect_pattern(size), False))
            if c % 4 == 0:
                body = fk.pattern(300000 + c)[::-1]
                post = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)) + body

                def check(r, n=len(body)):
                    if r.status != 200 or json.loads(r.body)["body_len"] != n:
                        return f"upload: {r.status} {r.body[:100]!r}"
                    return None
                reqs.append((post, check, False))
            clients.append(fk.Client(reqs, depth=1 + c % 2))
        fk.run_clients(kg.port, clients, timeout=90)
        for i, c in enumerate(clients):
            self.assertEqual(c.errors, [], f"client {i}")
        m = self.assert_healthy(kg)
        enobufs = m.get("kage_io_uring_enobufs_total")
        print(f"\n  --buffers 2: kage_io_uring_enobufs_total {enobufs:.0f}", flush=True)
        self.assertGreater(enobufs, 0, "no receive found the buffer ring empty: the test did not "
                           "exhaust the buffers")
        self.stop_clean(kg, within=5)

    def test_tiny_completion_queue(self):
        """--ring-entries 2 (a completion queue of 8): hundreds of
        connections at once, pipelined, with a shadow doubling the work.
        Everything is answered right."""
        be = self.origin()
        sh = self.origin(name="sandbox")
        kg = self.start("--ring-entries", "2", master=be.port, shadows=[("sandbox", sh.port)])
        clients = []
        for c in range(scaled(300, 100)):
            reqs = []
            for i in range(4):
                size = 100 + (c * 7 + i) % 5 * 20000
                reqs.append((fk.get_request(f"/size/{size}"), fk.expect_pattern(size), False))
            clients.append(fk.Client(reqs, depth=2 + c % 3))
        fk.run_clients(kg.port, clients, timeout=90)
        for i, c in enumerate(clients):
            self.assertEqual(c.errors, [], f"client {i}")
        m = self.assert_healthy(kg)
        # the kernel keeps overflowed completions (koverflow stays 0): the
        # metric must still see the ring was too small
        self.assertGreater(m.get("kage_io_uring_cq_overflows_total"), 0)
        print(f"\n  --ring-entries 2: kage_io_uring_cq_overflows_total "
              f"{m.get('kage_io_uring_cq_overflows_total'):.0f}, "
              f"{m.get('kage_io_uring_enters_total'):.0f} enters for "
              f"{m.get('kage_io_uring_submissions_total'):.0f} submissions", flush=True)
        self.stop_clean(kg, within=5)


class SlowComparator(HealthCase):
    """A backends_finished that takes 20 ms per record (tests/plugins/
    slow_finish.c) while a flag file exists: the comparator falls behind."""
    threads = True

    def tearDown(self):
        # a failed test leaves the comparator slow: let it go, so kage stops
        flag = getattr(self, "flag", None)
        if flag and os.path.exists(flag):
            os.unlink(flag)
        super().tearDown()

    def start_slow(self, *args, drain=5):
        be = self.origin()
        sh = self.origin(name="sandbox")
        tmp = tempfile.mkdtemp(prefix="kage-slowcmp-")
        flag = os.path.join(tmp, "slow")
        open(flag, "w").close()
        self.addCleanup(shutil.rmtree, tmp, True)
        kg = self.start("--plugin", binary("plugins/slow_finish.so") + f":20:{flag}", *args,
                        master=be.port, shadows=[("sandbox", sh.port)], drain=drain)
        kg.flag = self.flag = flag
        return kg

    def blast(self, kg, nclients=8, per=800):
        """Fast traffic: pipelined GETs; returns the clients (all answered)."""
        clients = [fk.Client([(fk.get_request(f"/size/{100 + (i * 13 + c) % 900}"),
                               fk.expect_pattern(100 + (i * 13 + c) % 900), False)
                              for i in range(per)], depth=8) for c in range(nclients)]
        fk.run_clients(kg.port, clients, timeout=60)
        for i, c in enumerate(clients):
            self.assertEqual(c.errors, [], f"client {i}")
        return clients

    def test_comparator_backlog_skips_shadows_as_queue_full(self):
        """With --shadow-max-inflight above the queue's 4096 records, the
        comparator falls a whole queue behind: further shadows are skipped
        before they are sent and counted as queue_full (exit summary and
        /metrics agree); no record is dropped after its shadow was sent,
        every sent one is compared, and clients never wait."""
        kg = self.start_slow("--shadow-max-inflight", "100000")
        clients = self.blast(kg, per=scaled(800, 600))
        worst = max(max(c.latencies) for c in clients)
        self.assertLess(worst, 1.0, "a client waited on the comparator")
        m = self.metrics(kg)
        skipped = m.by_label("kage_shadows_skipped_total", "reason")
        self.assertGreater(skipped["queue_full"], 0, "the queue never filled")
        self.assertLessEqual(m.get("kage_comparator_queue_depth"), 4096)
        os.unlink(kg.flag)	# the comparator catches up
        m = self.assert_healthy(kg)
        skipped = m.by_label("kage_shadows_skipped_total", "reason")
        self.assertEqual(m.get("kage_records_dropped_total"), 0)
        self.assertEqual(skipped["overload"], 0)
        summ = self.stop_clean(kg, within=5)
        self.assertEqual(summ["dropped"], 0)
        self.assertEqual(summ["skipped"]["queue_full"], skipped["queue_full"])
        self.assertEqual(summ["compared"], summ["sent"])
        with open(kg.flag + ".count") as f:
            self.assertEqual(int(f.read()), summ["compared"], "backends_finished calls")
        print(f"\n  comparator a queue behind: {summ['sent']} shadows sent and compared, "
              f"{summ['skipped']['queue_full']} skipped (queue_full); worst client latency "
              f"{worst * 1000:.0f} ms", flush=True)

    def test_slow_comparator_is_not_reported_as_shadow_overload(self):
        """The same with the default --shadow-max-inflight (1024): records
        waiting for the comparator are not shadows in flight, so the skips
        show as queue_full (the comparator is behind), never as overload
        (the shadow backend too busy): the shadow answered everything in a
        millisecond."""
        kg = self.start_slow()
        self.blast(kg, per=scaled(800, 600))
        m = self.metrics(kg)
        self.assertLessEqual(m.get("kage_shadow_records_inflight"), 1024)
        os.unlink(kg.flag)
        m = self.assert_healthy(kg)
        skipped = m.by_label("kage_shadows_skipped_total", "reason")
        inflight_help = [line for line in m.text.splitlines()
                         if line.startswith("# HELP kage_shadow_records_inflight")]
        self.stop_clean(kg, within=5)
        self.assertGreater(skipped["queue_full"], 0, skipped)
        self.assertEqual(skipped["overload"], 0,
                         f"records held up by a slow comparator counted as shadow overload: "
                         f"{skipped}; {inflight_help}")

    def test_sigterm_with_the_comparator_behind_is_bounded(self):
        """SIGTERM while about a thousand records wait for a slow
        comparator (20 ms each): kage must still exit within
        --drain-timeout (3 s) and a little, counting what it did not
        compare, not take the queue's 20 s."""
        kg = self.start_slow(drain=3)
        self.blast(kg, nclients=4, per=400)
        depth = wait_for(lambda: self.metrics(kg).get("kage_comparator_queue_depth") > 300 and
                         self.metrics(kg).get("kage_comparator_queue_depth"), 3)
        m = self.metrics(kg)
        self.assertTrue(depth, "not enough records waiting to look at the drain: " +
                        " ".join(line for line in m.text.splitlines() if "records" in line and
                                 not line.startswith("#")))
        t0 = time.monotonic()
        kg.signal(15)
        rc = kg.wait(3 + 3)
        took = time.monotonic() - t0
        if rc is None:
            os.unlink(kg.flag)	# let it finish, to end the test quickly
            rc = kg.wait(30)
        kg.stopped_by_test = True
        self.assertEqual(rc, 0)
        summ = fk.exit_summary(kg.stderr())
        self.assertLess(took, 3 + 3, f"SIGTERM with {depth:.0f} records queued took over {took:.1f}s "
                        f"(--drain-timeout 3); it exited only once the comparator was let "
                        f"go: {summ}")


class DiffLogFailures(HealthCase):
    threads = True

    def traffic(self, kg, n, start=0):
        c = self.connect(kg.port)
        rd = Reader(c, timeout=5)
        for i in range(start, start + n):
            c.sendall(request("GET", f"/size/{100 + i}"))
            r = rd.response()
            self.assertEqual((r.status, r.body), (200, fk.pattern(100 + i)))
        c.close()

    def test_diff_log_on_a_full_disk(self):
        """--diff-log /dev/full: every record is lost (counted in /metrics
        and the exit summary), proxying is unaffected."""
        be = self.origin()
        sh = self.origin(name="sandbox")
        kg = self.start("--diff-log", "/dev/full", "--diff-log-all", master=be.port,
                        shadows=[("sandbox", sh.port)])
        self.traffic(kg, scaled(300, 100))
        self.assertTrue(wait_for(lambda: self.metrics(kg).get("kage_diff_log_lines_lost_total") >=
                                 scaled(300, 100), 5))
        m = self.assert_healthy(kg, logged_all=True)
        self.assertEqual(m.get("kage_diff_log_lines_written_total"), 0)
        summ = self.stop_clean(kg, within=5)
        self.assertEqual(summ["lost"], summ["compared"])
        self.assertGreaterEqual(summ["lost"], scaled(300, 100) + 3)

    def test_diff_log_pipe_whose_reader_goes_away(self):
        """--diff-log on a FIFO: a reader takes the first records, then
        goes away. The rest are counted lost (EPIPE, no SIGPIPE death),
        the lines the reader got are the lines kage counts written, and
        proxying is unaffected."""
        tmp = tempfile.mkdtemp(prefix="kage-fifo-")
        fifo = os.path.join(tmp, "diff.fifo")
        os.mkfifo(fifo)
        self.addCleanup(os.rmdir, tmp)
        self.addCleanup(os.unlink, fifo)
        got = []
        stop = threading.Event()

        def reader():
            with open(fifo, "rb") as f:	# blocks until kage opens it for writing
                buf = b""
                while not stop.is_set():
                    d = os.read(f.fileno(), 65536)
                    if not d:
                        return
                    buf += d
                    *lines, buf = buf.split(b"\n")
                    got.extend(lines)
        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        be = self.origin()
        sh = self.origin(name="sandbox")
        kg = self.start("--diff-log", fifo, "--diff-log-all", master=be.port,
                        shadows=[("sandbox", sh.port)])
        first = 50
        self.traffic(kg, first)
        self.assertTrue(wait_for(lambda: len(got) >= first, 5), len(got))
        stop.set()
        # the reader is blocked in read: one more record wakes it, then it closes
        self.traffic(kg, 1, start=first)
        rt.join(5)
        self.assertFalse(rt.is_alive())
        time.sleep(0.3)
        more = scaled(200, 60)
        self.traffic(kg, more, start=first + 1)
        m = self.assert_healthy(kg, logged_all=True)
        written = m.get("kage_diff_log_lines_written_total")
        lost = m.get("kage_diff_log_lines_lost_total")
        self.assertEqual(written, len(got), "kage counts written lines the reader never got")
        self.assertGreaterEqual(lost, more)
        for line in got:
            json.loads(line)
        summ = self.stop_clean(kg, within=5)
        self.assertEqual(summ["lost"], summ["compared"] - written)
