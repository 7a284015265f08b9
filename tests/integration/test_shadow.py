"""The shadow path (SPEC sections 4 and 5): selection per request,
duplication, isolation of the client from every shadow failure, capture,
and the diff log."""
import base64
import json
import os
import re
import signal
import socket
import tempfile
import time

from harness import (Case, Reader, ScriptedBackend, count, diff_records, exchange, ok_response,
                     request, reset_count, wait_for)

IGNORE = ("--ignore-header", "X-Backend", "--ignore-header", "X-Request-Count")


def shadow_summary(kg):
    """The counters kage prints when it exits: {'sent': n, 'method': n, ...}."""
    m = re.search(r"shadows: (\d+) sent; skipped:(.*)", kg.stderr())
    assert m, kg.stderr()
    out = {"sent": int(m.group(1))}
    for k, v in re.findall(r"(\w+)=(\d+)", m.group(2)):
        out[k] = int(v)
    return out


def recorded(path):
    """Requests a test backend received (its --record file)."""
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                out.append(base64.b64decode(json.loads(line)["raw"]))
    return out


def head_fields(raw):
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return head[0], [tuple(x.strip() for x in h.split(":", 1)) for h in head[1:]]


class ShadowCase(Case):
    def pair(self, *args, variant=0, threads=1, shadow_opts=(), record=False, master_args=(),
             shadow_args=()):
        """Master and one shadow (same code unless `variant`), kage in front."""
        self.tmp = tempfile.mkdtemp(prefix="kage-shadow-")
        mrec = ["--record", os.path.join(self.tmp, "master.rec")] if record else []
        srec = ["--record", os.path.join(self.tmp, "shadow.rec")] if record else []
        m = self.backend(*mrec, *master_args, name="production")
        s = self.backend("--variant", str(variant), *srec, *shadow_args, name="sandbox")
        kg = self.kage(*IGNORE, *args, master=("production", m.port),
                       shadows=[("sandbox", s.port, *shadow_opts)], threads=threads)
        return m, s, kg

    def get(self, kg, target, **kw):
        s = self.connect(kg.port)
        return exchange(s, request("GET", target, **kw))

    def records_after_stop(self, kg):
        self.assertEqual(kg.stop(), 0, kg.stderr())
        return diff_records(kg)


class Selection(ShadowCase):
    def test_get_shadowed_post_not(self):
        m, s, kg = self.pair("--diff-log-all")
        c = self.connect(kg.port)
        rd = Reader(c)
        # POST first on the connection, then GET: the GET is still shadowed
        # (the original decided once per connection).
        c.sendall(request("POST", "/echo", body=b"x"))
        self.assertEqual(rd.response().status, 200)
        c.sendall(request("GET", "/size/5"))
        self.assertEqual(rd.response().status, 200)
        recs = self.records_after_stop(kg)
        self.assertEqual([r["method"] for r in recs], ["GET"])
        self.assertTrue(recs[0]["match"], recs[0])
        summ = shadow_summary(kg)
        self.assertEqual((summ["sent"], summ["method"]), (1, 1))

    def test_shadow_path_prefix(self):
        m, s, kg = self.pair("--diff-log-all", "--shadow-path", "/json")
        for t in ("/json/a", "/size/3", "/jsonx", "/json"):
            self.assertEqual(self.get(kg, t).status, 200)
        recs = self.records_after_stop(kg)
        self.assertEqual(sorted(r["target"] for r in recs), ["/json", "/json/a", "/jsonx"])
        self.assertEqual(shadow_summary(kg)["path"], 1)

    def test_sample_percentages(self):
        m, s, kg = self.pair("--shadow-sample", "30")
        reset_count(s.port)
        c = self.connect(kg.port)
        rd = Reader(c)
        for i in range(400):
            c.sendall(request("GET", f"/size/{i % 10}"))
            rd.response()
        got = wait_for(lambda: count(s.port)["requests"] and count(s.port)["requests"])
        # 400 draws at 30%: 120 expected; 70..170 is a > 6 sigma band.
        self.assertTrue(70 <= got <= 170, got)
        kg.stop()
        summ = shadow_summary(kg)
        self.assertEqual(summ["sent"] + summ["sample"], 400)

    def test_sample_zero_and_per_shadow(self):
        m = self.backend(name="production")
        a = self.backend(name="a")
        b = self.backend(name="b")
        kg = self.kage(*IGNORE, "--shadow-sample", "0", master=("production", m.port),
                       shadows=[("a", a.port), ("b", b.port, "sample=100")])
        reset_count(a.port)
        reset_count(b.port)
        for _ in range(20):
            self.get(kg, "/size/1")
        wait_for(lambda: count(b.port)["requests"] == 20)
        self.assertEqual(count(a.port)["requests"], 0)
        self.assertEqual(count(b.port)["requests"], 20)

    def test_sample_key_is_consistent(self):
        """One user's requests are shadowed all or none."""
        for key, where in (("header:X-User", "header"), ("cookie:uid", "cookie"),
                           ("query:user", "query")):
            with self.subTest(key=key):
                m, s, kg = self.pair("--shadow-sample", "50", "--shadow-sample-key", key,
                                     record=True)
                c = self.connect(kg.port)
                rd = Reader(c)
                for rep in range(3):
                    for u in range(40):
                        target, headers = "/size/1", []
                        if where == "header":
                            headers = [("X-User", f"user{u}")]
                        elif where == "cookie":
                            headers = [("Cookie", f"a=1; uid=user{u}; b=2")]
                        else:
                            target = f"/size/1?x=1&user=user{u}"
                        c.sendall(request("GET", target, headers=headers))
                        rd.response()
                kg.stop()
                per_user = {}
                for raw in recorded(os.path.join(self.tmp, "shadow.rec")):
                    u = re.search(rb"user(\d+)", raw).group(1)
                    per_user[u] = per_user.get(u, 0) + 1
                self.assertTrue(all(v == 3 for v in per_user.values()), per_user)
                # 40 users at 50%: 20 expected; 8..32 is far outside chance.
                self.assertTrue(8 <= len(per_user) <= 32, len(per_user))
                self.tearDown()
                self.setUp()


class Duplication(ShadowCase):
    def test_same_request_to_both(self):
        m, s, kg = self.pair("--diff-log-all", record=True)
        r = self.get(kg, "/echo?a=1", headers=[("X-Custom", "v"), ("Accept", "*/*"),
                                                ("Connection", "keep-alive")])
        self.assertEqual(r.status, 200)
        recs = self.records_after_stop(kg)
        self.assertEqual(len(recs), 1)
        mreq = recorded(os.path.join(self.tmp, "master.rec"))
        sreq = recorded(os.path.join(self.tmp, "shadow.rec"))
        self.assertEqual(len(mreq), 1)
        self.assertEqual(len(sreq), 1)
        self.assertEqual(mreq[0], sreq[0])	# byte for byte the same request
        line, hdrs = head_fields(mreq[0])
        self.assertEqual(line, "GET /echo?a=1 HTTP/1.1")
        h = {n.lower(): v for n, v in hdrs}
        self.assertEqual(h["x-kage-session"], recs[0]["session"])
        self.assertEqual(h["x-custom"], "v")
        self.assertNotIn("connection", h)

    def test_shadow_keep_alive_pool(self):
        """Regression: the shadow's response head was moved out of its
        parser before the end, which then read keep-alive as false, so every
        shadowed request opened a new connection to the shadow."""
        log = os.path.join(tempfile.mkdtemp(prefix="kage-pool-"), "diff.jsonl")
        m, s, kg = self.pair("--diff-log-all", "--diff-log", log)
        reset_count(m.port)
        reset_count(s.port)

        def records():
            if not os.path.exists(log):
                return 0
            with open(log) as f:
                return sum(1 for line in f if line.endswith("\n"))

        for i in range(20):
            self.assertEqual(self.get(kg, f"/size/{i}").status, 200)
            # The record is written after the shadow's response was read and
            # its connection went back to the pool: the next request must
            # find it there.
            self.assertTrue(wait_for(lambda: records() == i + 1, 3), f"record {i + 1}")
        self.assertEqual(count(m.port)["connections"], 1)
        self.assertEqual(count(s.port)["connections"], 1)

    def test_header_rules_per_backend(self):
        m, s, kg = self.pair("--set-header", "sandbox=X-Kage-Sandbox: 1",
                             "--remove-header", "production=X-Secret",
                             "--set-header", "*=X-Everyone: yes",
                             "--set-header", "production=X-Everyone: master-only",
                             record=True)
        self.get(kg, "/size/1", headers=[("X-Secret", "s3"), ("X-Everyone", "client")])
        kg.stop()
        _, mh = head_fields(recorded(os.path.join(self.tmp, "master.rec"))[0])
        _, sh = head_fields(recorded(os.path.join(self.tmp, "shadow.rec"))[0])
        mh, sh = dict((n.lower(), v) for n, v in mh), dict((n.lower(), v) for n, v in sh)
        self.assertNotIn("x-kage-sandbox", mh)
        self.assertEqual(sh["x-kage-sandbox"], "1")
        self.assertNotIn("x-secret", mh)
        self.assertEqual(sh["x-secret"], "s3")
        self.assertEqual(mh["x-everyone"], "master-only")
        self.assertEqual(sh["x-everyone"], "yes")
        self.assertEqual(mh["x-kage-session"], sh["x-kage-session"])

    def test_session_header_disabled(self):
        m, s, kg = self.pair("--session-header", "", record=True)
        self.get(kg, "/size/1")
        kg.stop()
        _, sh = head_fields(recorded(os.path.join(self.tmp, "shadow.rec"))[0])
        self.assertNotIn("x-kage-session", {n.lower() for n, _ in sh})

    def test_bodies_teed(self):
        m, s, kg = self.pair("--shadow-methods", "GET,POST,PUT", "--diff-log-all", record=True)
        c = self.connect(kg.port)
        rd = Reader(c)
        body = bytes(range(256)) * 40
        c.sendall(request("POST", "/echo", body=body))
        r1 = rd.response()
        from harness import chunked
        c.sendall(request("PUT", "/echo", headers=[("Transfer-Encoding", "chunked")]) + chunked(body, 1000))
        r2 = rd.response()
        self.assertEqual((r1.status, r2.status), (200, 200))
        self.assertEqual(r1.json()["body_len"], len(body))
        self.assertEqual(r2.json()["body_len"], len(body))
        recs = self.records_after_stop(kg)
        self.assertEqual(len(recs), 2)
        self.assertTrue(all(r["match"] for r in recs), recs)
        sreq = recorded(os.path.join(self.tmp, "shadow.rec"))
        self.assertEqual(len(sreq), 2)
        self.assertTrue(sreq[0].endswith(body))
        self.assertIn(b"Transfer-Encoding: chunked", sreq[1])

    def test_body_over_limit_not_shadowed(self):
        m, s, kg = self.pair("--shadow-methods", "POST", "--shadow-body-max", "100")
        c = self.connect(kg.port)
        rd = Reader(c)
        c.sendall(request("POST", "/echo", body=b"a" * 50))
        rd.response()
        c.sendall(request("POST", "/echo", body=b"a" * 200))
        self.assertEqual(rd.response().json()["body_len"], 200)
        from harness import chunked
        c.sendall(request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) +
                  chunked(b"b" * 300, 64))
        self.assertEqual(rd.response().json()["body_len"], 300)
        kg.stop()
        summ = shadow_summary(kg)
        self.assertEqual((summ["sent"], summ["body_too_large"]), (1, 2))


def slow_shadow(delay):
    def handler(conn, index):
        while True:
            req = conn.read_request()
            if req is None:
                return
            time.sleep(delay)
            conn.send(ok_response(b"slow"))
    return ScriptedBackend(handler)


def reset_shadow():
    def handler(conn, index):
        if conn.read_request() is not None:
            conn.reset()
    return ScriptedBackend(handler)


def garbage_shadow():
    def handler(conn, index):
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 2x0 Nope\r\n\r\n")
    return ScriptedBackend(handler)


def hang_shadow():
    def handler(conn, index):
        conn.read_request()
        time.sleep(8)
    return ScriptedBackend(handler)


class Isolation(ShadowCase):
    def client_with(self, shadow_port, *args):
        m = self.backend(name="production")
        kg = self.kage("--diff-log-all", *args, master=("production", m.port),
                       shadows=[("sandbox", shadow_port)])
        return m, kg

    def direct(self, port, target):
        s = self.connect(port)
        return exchange(s, request("GET", target))

    def assert_same_as_master(self, m, kg, target):
        want = self.direct(m.port, target)
        t0 = time.monotonic()
        got = self.get(kg, target)
        elapsed = time.monotonic() - t0
        skip = {"date", "x-request-count"}
        self.assertEqual(got.status, want.status)
        self.assertEqual(got.body, want.body)
        self.assertEqual([h for h in got.headers if h[0].lower() not in skip],
                         [h for h in want.headers if h[0].lower() not in skip])
        return elapsed

    def test_slow_shadow_never_delays_client(self):
        sb = slow_shadow(1.5)
        self.addCleanup(sb.close)
        m, kg = self.client_with(sb.port)
        c = self.connect(kg.port)
        rd = Reader(c)
        t0 = time.monotonic()
        for i in range(5):
            c.sendall(request("GET", f"/size/{100 + i}"))
            self.assertEqual(len(rd.response().body), 100 + i)
        # Five requests on one keep-alive connection, each shadowed to a
        # 1.5 s shadow: the client sees master's pace, not the shadow's.
        self.assertLess(time.monotonic() - t0, 1.0)
        recs = self.records_after_stop(kg)
        self.assertEqual(len(recs), 5)
        for r in recs:
            self.assertGreaterEqual(r["backends"]["sandbox"]["elapsed_ms"], 1400)
            self.assertLess(r["backends"]["production"]["elapsed_ms"], 500)

    def test_closed_port_reset_garbage_timeout(self):
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()
        rs, gs, hs = reset_shadow(), garbage_shadow(), hang_shadow()
        for b in (rs, gs, hs):
            self.addCleanup(b.close)
        for port, err in ((closed_port, "connect"), (rs.port, "reset"), (gs.port, "malformed"),
                          (hs.port, "timeout")):
            with self.subTest(err=err):
                m, kg = self.client_with(port, "--shadow-timeout", "1")
                for target in ("/size/1234", "/json/users/7", "/?chunked=1&size=5000"):
                    self.assertLess(self.assert_same_as_master(m, kg, target), 0.5)
                recs = self.records_after_stop(kg)
                self.assertEqual(len(recs), 3)
                for r in recs:
                    sb = r["backends"]["sandbox"]
                    self.assertEqual((sb["error"], sb["status"]), (err, None))
                    self.assertFalse(r["match"])
                    self.assertIn({"backend": "sandbox", "kind": "error", "where": None,
                                   "master": None, "shadow": err}, r["diffs"])
                self.tearDown()
                self.setUp()

    def test_inflight_bound(self):
        hs = hang_shadow()
        self.addCleanup(hs.close)
        # The timeout outlasts the six requests even on a loaded machine, so
        # no slot frees up before they are all sent.
        m, kg = self.client_with(hs.port, "--shadow-max-inflight", "2", "--shadow-timeout", "5")
        for i in range(6):
            self.assertEqual(self.get(kg, f"/size/{i}").status, 200)
        kg.stop()
        summ = shadow_summary(kg)
        self.assertEqual((summ["sent"], summ["overload"]), (2, 4))

    def test_black_hole_shadow_bounded_connects(self):
        """A shadow that never answers its SYNs (accept queue full): kage
        keeps at most a bounded number of connection attempts in flight
        and skips the rest as overload; clients are served as usual."""
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        self.addCleanup(hole.close)
        port = hole.getsockname()[1]
        fill = []
        for _ in range(4):	# fill the accept queue: later SYNs get no answer
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fill.append(f)
            self.addCleanup(f.close)
        time.sleep(0.2)
        m, kg = self.client_with(port, "--shadow-timeout", "2", "--shadow-max-inflight", "100000")
        c = self.connect(kg.port)
        rd = Reader(c)
        t0 = time.monotonic()
        for i in range(300):
            c.sendall(request("GET", f"/size/{i % 50}"))
            self.assertEqual(rd.response().status, 200)
        self.assertLess(time.monotonic() - t0, 5)
        kg.stop()
        summ = shadow_summary(kg)
        # At most 64 attempts in flight per shard; the rest never opened a socket.
        self.assertLessEqual(summ["sent"], 64 + 8)
        self.assertEqual(summ["sent"] + summ["overload"], 300)

    def test_client_gone_does_not_cancel(self):
        sb = slow_shadow(0.5)
        self.addCleanup(sb.close)
        m, kg = self.client_with(sb.port)
        c = socket.create_connection(("127.0.0.1", kg.port))
        c.sendall(request("GET", "/size/2000?delay=200"))
        c.close()	# gone before master answered
        time.sleep(1.0)
        recs = self.records_after_stop(kg)
        self.assertEqual(len(recs), 1, kg.stderr())
        self.assertEqual(recs[0]["backends"]["production"]["status"], 200)
        self.assertEqual(recs[0]["backends"]["production"]["body_bytes"], 2000)


class Capture(ShadowCase):
    def test_record_fields(self):
        m, s, kg = self.pair(variant=1)
        self.get(kg, "/json/users/7?full=1")
        self.get(kg, "/json/users/8")
        recs = self.records_after_stop(kg)
        self.assertEqual(len(recs), 1)	# only the mismatch is logged
        r = recs[0]
        for field in ("time", "session", "method", "target", "endpoint", "master", "backends",
                      "match", "diffs", "request"):
            self.assertIn(field, r)
        self.assertRegex(r["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertRegex(r["session"], r"^[0-9a-f]{16}$")
        self.assertEqual(r["endpoint"], "GET /json/users/:id")
        self.assertEqual(r["master"], "production")
        self.assertEqual(r["target"], "/json/users/7?full=1")
        self.assertFalse(r["match"])
        body = [d for d in r["diffs"] if d["kind"] == "body"]
        self.assertEqual(len(body), 1, r["diffs"])
        self.assertEqual(body[0]["where"], "/user/name")
        # The variant appends an "e" to the name.
        self.assertEqual(json.loads(body[0]["shadow"]), json.loads(body[0]["master"]) + "e")
        self.assertEqual(r["request"]["method"], "GET")
        self.assertEqual(r["request"]["target"], "/json/users/7?full=1")
        for b in ("production", "sandbox"):
            self.assertEqual(r["backends"][b]["status"], 200)
            self.assertIsNone(r["backends"][b]["error"])
            self.assertGreater(r["backends"][b]["body_bytes"], 100)

    def test_capture_max_compares_length_and_hash(self):
        m, s, kg = self.pair("--capture-max", "64", variant=1)
        # The variant changes user.name, far beyond the first 64 bytes.
        self.get(kg, "/json/users/7")
        self.get(kg, "/json/users/8")
        recs = self.records_after_stop(kg)
        self.assertEqual(len(recs), 1)
        d = [x for x in recs[0]["diffs"] if x["kind"] == "body"]
        self.assertEqual(len(d), 1)
        self.assertIsInstance(d[0]["where"], int)
        self.assertEqual(recs[0]["backends"]["production"]["body_bytes"] + 1,
                         recs[0]["backends"]["sandbox"]["body_bytes"])

    def test_diff_log_file_flushed_and_reopened(self):
        tmp = tempfile.mkdtemp(prefix="kage-log-")
        log = os.path.join(tmp, "diff.jsonl")
        m, s, kg = self.pair("--diff-log", log, variant=1)
        self.get(kg, "/json/users/1")
        # Within a second, while kage runs.
        self.assertTrue(wait_for(lambda: os.path.exists(log) and os.path.getsize(log) > 0, 1.5))
        os.rename(log, log + ".1")
        kg.signal(signal.SIGHUP)
        time.sleep(0.2)
        self.get(kg, "/json/users/3")
        self.assertTrue(wait_for(lambda: os.path.exists(log) and os.path.getsize(log) > 0, 1.5))
        kg.stop()
        with open(log + ".1") as f:
            self.assertEqual(len(f.readlines()), 1)
        with open(log) as f:
            self.assertEqual(json.loads(f.readline())["target"], "/json/users/3")

    def test_drain_completes_records(self):
        sb = slow_shadow(1.5)
        self.addCleanup(sb.close)
        m = self.backend(name="production")
        kg = self.kage("--diff-log-all", master=("production", m.port),
                       shadows=[("sandbox", sb.port)])
        self.assertEqual(self.get(kg, "/size/10").status, 200)
        kg.signal(signal.SIGTERM)	# the shadow is still working
        self.assertEqual(kg.wait(10), 0)
        recs = diff_records(kg)
        self.assertEqual(len(recs), 1)
        self.assertEqual(recs[0]["backends"]["sandbox"]["status"], 200)


class Threads(ShadowCase):
    threads = True

    def test_two_shards_many_records(self):
        m, s, kg = self.pair("--diff-log-all", threads=2)
        socks = [self.connect(kg.port) for _ in range(20)]
        for rnd in range(10):
            for c in socks:
                c.sendall(request("GET", f"/json/users/{rnd}"))
            for c in socks:
                self.assertEqual(Reader(c).response().status, 200)
        recs = self.records_after_stop(kg)
        self.assertEqual(len(recs), 200)
        self.assertTrue(all(r["match"] for r in recs))
