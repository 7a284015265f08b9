"""The admin listener (SPEC section 7): /metrics in Prometheus text format,
/stats as JSON, /healthz through a drain, the dashboard (rendered by a
headless Chromium when one is installed), and an admin that survives
garbage, oversized heads, slow clients and floods without disturbing the
proxy."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from html.parser import HTMLParser

from harness import ROOT, Case, Reader, exchange, request, wait_for

IGNORE = ("--ignore-header", "X-Backend", "--ignore-header", "X-Request-Count")
ADMIN_RE = re.compile(r"admin on http://[^ ]*:(\d+)/")
PROMTOOL = shutil.which("promtool")
CHROMIUM = "/usr/bin/chromium"


# --- scraping -----------------------------------------------------------------------

def get(port, path, method="GET", timeout=5.0):
    """One request to the admin on a fresh connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: admin\r\n\r\n".encode())
        return Reader(s, timeout).response(head_request=(method == "HEAD"))
    finally:
        s.close()


SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels)): value}, plus the families' HELP and TYPE.
    Strict enough to catch malformed lines (promtool is the real judge)."""
    samples, types, helps = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, h = line[7:].partition(" ")
            helps[name] = h
            continue
        if line.startswith("# TYPE "):
            name, _, t = line[7:].partition(" ")
            types[name] = t
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"malformed sample line: {line!r}"
        labels = {}
        if m.group(2):
            pairs = LABEL_RE.findall(m.group(2))
            rebuilt = ",".join(f'{k}="{v}"' for k, v in pairs)
            assert rebuilt == m.group(2), f"malformed labels: {line!r}"
            labels = {k: re.sub(r'\\(.)', lambda x: "\n" if x.group(1) == "n" else x.group(1), v)
                      for k, v in pairs}
        key = (m.group(1), frozenset(labels.items()))
        assert key not in samples, f"duplicate sample: {line!r}"
        samples[key] = float(m.group(3))
    return samples, types, helps


class Metrics:
    def __init__(self, text):
        self.text = text
        self.samples, self.types, self.helps = parse_metrics(text)

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name, **labels):
        """Sum over every sample of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= set(ls))

    def label_values(self, name, label):
        return {dict(ls).get(label) for (n, ls) in self.samples if n == name}


def promtool_check(testcase, text):
    if not PROMTOOL:
        print("\n  promtool not installed (Debian package 'prometheus', tools/install-deps "
              "installs it): skipping the exposition format check", flush=True)
        return
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=60)
    testcase.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())


class AdminCase(Case):
    threads = True  # the admin reads other threads' counters: the TSan job runs these

    def setup_pair(self, *args, variant=1, threads=1, shadow_args=()):
        m = self.backend(name="production")
        s = self.backend("--variant", str(variant), *shadow_args, name="sandbox")
        kg = self.kage(*IGNORE, "--admin", "127.0.0.1:0", *args, master=("production", m.port),
                       shadows=[("sandbox", s.port)], threads=threads)
        kg.admin = self.admin_port(kg)
        return m, s, kg

    def admin_port(self, kg):
        m = wait_for(lambda: ADMIN_RE.search(kg.stderr()), 5)
        self.assertTrue(m, kg.stderr())
        return int(m.group(1))

    def metrics(self, kg):
        r = get(kg.admin, "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return Metrics(r.body.decode("utf-8"))

    def stats(self, kg):
        r = get(kg.admin, "/stats")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        return r.json()

    def settle(self, kg, compared):
        """Wait until the comparator has compared and logged `compared` records."""
        def done():
            st = self.stats(kg)["counters"]
            r = st["records"]
            return (r["compared"] >= compared and r["queue_depth"] == 0 and
                    st["diff_log"]["written"] + st["diff_log"]["lost"] >= r["mismatched"])
        self.assertTrue(wait_for(done, 5), self.stats(kg)["counters"])

    def drive_in_order(self, kg, targets):
        """One request at a time, each compared before the next is sent:
        records reach the comparator when their slowest backend answers, so
        only this makes their order the requests' order."""
        c = self.connect(kg.port)
        rd = Reader(c)
        for t in targets:
            n = self.stats(kg)["counters"]["records"]["compared"]
            c.sendall(request("GET", t))
            self.assertEqual(rd.response().status, 200)
            self.assertTrue(wait_for(lambda: self.stats(kg)["counters"]["records"]["compared"] > n, 5))
        c.close()

    def background_load(self, kg, clients):
        """`clients` threads, each sending GETs on its own keep-alive
        connection, one at a time, until the returned stop() is called;
        stop() joins them and returns the errors they met."""
        halt = threading.Event()
        errors = []

        def load():
            try:
                while not halt.is_set():
                    self.drive(kg, [f"/json/users/{i}" for i in range(20)])
            except Exception as e:  # returned by stop()
                errors.append(e)

        workers = [threading.Thread(target=load) for _ in range(clients)]
        for w in workers:
            w.start()

        def stop():
            halt.set()
            for w in workers:
                w.join(30)
            return errors
        return stop

    def drive(self, kg, targets, method="GET", body=b""):
        """Requests on one keep-alive connection; every answer must be 200."""
        c = self.connect(kg.port)
        rd = Reader(c)
        for t in targets:
            c.sendall(request(method, t, body=body))
            self.assertEqual(rd.response().status, 200)
        c.close()


# --- /metrics -------------------------------------------------------------------------

class MetricsEndpoint(AdminCase):
    def test_counters_move_by_exactly_the_traffic(self):
        m, s, kg = self.setup_pair()
        before = self.metrics(kg)
        # 37 GETs, shadowed: odd ids differ under --variant 1 (18 of 0..36).
        self.drive(kg, [f"/json/users/{i}" for i in range(37)])
        # 5 POSTs, not shadowed (--shadow-methods GET,HEAD).
        self.drive(kg, ["/echo"] * 5, method="POST", body=b"hello")
        self.settle(kg, 37)
        after = self.metrics(kg)

        def moved(name, **labels):
            return after.get(name, **labels) - before.get(name, **labels)

        ep = "GET /json/users/:id"
        expect = [
            (("kage_requests_total",), {}, 42),
            (("kage_responses_total",), {"class": "2xx"}, 42),
            (("kage_connections_accepted_total",), {}, 2),
            (("kage_backend_requests_total",), {"backend": "production"}, 42),
            (("kage_backend_requests_total",), {"backend": "sandbox"}, 37),
            (("kage_backend_responses_total",), {"backend": "production", "class": "2xx"}, 42),
            (("kage_backend_responses_total",), {"backend": "sandbox", "class": "2xx"}, 37),
            (("kage_shadow_eligible_total",), {}, 42),
            (("kage_shadows_sent_total",), {}, 37),
            (("kage_shadows_skipped_total",), {"reason": "method"}, 5),
            (("kage_shadows_skipped_total",), {"reason": "sample"}, 0),
            (("kage_records_queued_total",), {}, 37),
            (("kage_records_dropped_total",), {}, 0),
            (("kage_records_compared_total",), {"result": "match"}, 19),
            (("kage_records_compared_total",), {"result": "mismatch"}, 18),
            (("kage_comparisons_total",), {"backend": "sandbox", "endpoint": ep, "result": "match"}, 19),
            (("kage_comparisons_total",), {"backend": "sandbox", "endpoint": ep, "result": "mismatch"}, 18),
            (("kage_diff_log_lines_written_total",), {}, 18),
            (("kage_diff_log_lines_lost_total",), {}, 0),
            (("kage_backend_response_duration_seconds_count",), {"backend": "production"}, 37),
            (("kage_backend_response_duration_seconds_count",), {"backend": "sandbox"}, 37),
            (("kage_backend_errors_total",), {"backend": "sandbox", "kind": "timeout"}, 0),
            (("kage_body_bytes_total",), {"mode": "copied"}, 0),
        ]
        for (name,), labels, n in expect:
            self.assertEqual(moved(name, **labels), n, f"{name}{labels}")
        self.assertGreater(moved("kage_body_bytes_total", mode="zerocopy"), 37 * 400)
        self.assertGreater(moved("kage_io_uring_submissions_total"), 0)
        self.assertEqual(after.get("kage_comparator_queue_depth"), 0)
        self.assertEqual(after.get("kage_connections_open"), 0)
        self.assertEqual(after.get("kage_draining"), 0)
        # The 37 records are the only diff-log lines on stdout once flushed.
        self.assertEqual(len([l for l in kg.stdout().splitlines() if l.strip()]), 18)

    def test_families_and_histograms_are_well_formed(self):
        m, s, kg = self.setup_pair()
        self.drive(kg, [f"/json/users/{i}" for i in range(10)] + ["/size/100?delay=30"])
        self.settle(kg, 11)
        mt = self.metrics(kg)
        promtool_check(self, mt.text)
        names = {n for (n, _) in mt.samples}
        for fam in ("kage_requests_total", "kage_responses_total", "kage_backend_responses_total",
                    "kage_backend_errors_total", "kage_backend_connections_opened_total",
                    "kage_backend_connection_reuses_total", "kage_shadows_sent_total",
                    "kage_shadows_skipped_total", "kage_shadow_failures_total",
                    "kage_comparisons_total", "kage_comparator_queue_depth",
                    "kage_records_dropped_total", "kage_diff_log_lines_written_total",
                    "kage_diff_log_lines_lost_total", "kage_connections_open",
                    "kage_connections_accepted_total", "kage_io_uring_submissions_total",
                    "kage_io_uring_enters_total", "kage_io_uring_cq_overflows_total",
                    "kage_io_uring_enobufs_total", "kage_body_bytes_total"):
            self.assertIn(fam, names)
            self.assertIn(fam, mt.types, fam)
            self.assertIn(fam, mt.helps, fam)
        for (n, ls) in mt.samples:
            self.assertTrue(n.startswith("kage_"), n)
        # Every skip reason the SPEC names is a label value, even at zero.
        reasons = mt.label_values("kage_shadows_skipped_total", "reason")
        for r in ("method", "path", "sample", "body_too_large", "overload", "memory", "queue_full"):
            self.assertIn(r, reasons)
        self.assertEqual(mt.label_values("kage_backend_errors_total", "kind"),
                         {"connect", "timeout", "reset", "malformed"})
        # Histograms: cumulative, ending at +Inf == _count, le in seconds.
        h = "kage_backend_response_duration_seconds"
        self.assertEqual(mt.types[h], "histogram")
        for be in ("production", "sandbox"):
            buckets = sorted(((float(dict(ls)["le"]), v) for (n, ls), v in mt.samples.items()
                              if n == h + "_bucket" and dict(ls)["backend"] == be))
            self.assertGreaterEqual(len(buckets), 10)
            self.assertEqual(buckets[-1][0], float("inf"))
            self.assertIn(0.0005, [le for le, _ in buckets])
            self.assertIn(10.0, [le for le, _ in buckets])
            counts = [v for _, v in buckets]
            self.assertEqual(counts, sorted(counts), be)
            self.assertEqual(counts[-1], mt.get(h + "_count", backend=be))
            self.assertEqual(counts[-1], 11)
            total = mt.get(h + "_sum", backend=be)
            self.assertGreater(total, 0.030)       # the delayed one alone
            self.assertLess(total, 11 * 5.0)
        # The 30 ms response is above the 25 ms bucket for master.
        self.assertLessEqual(mt.get(h + "_bucket", backend="production", le="0.025"), 10)

    def test_endpoint_labels_are_capped(self):
        m, s, kg = self.setup_pair(variant=0)
        # 50 endpoints with two requests each, then 10 with one: the 10
        # least requested fold into endpoint="other".
        targets = [f"/e{i}/x" for i in range(50)] * 2 + [f"/f{i}/x" for i in range(10)]
        self.drive(kg, targets)
        self.settle(kg, 110)
        mt = self.metrics(kg)
        eps = mt.label_values("kage_comparisons_total", "endpoint")
        self.assertEqual(len(eps), 51, sorted(eps))
        self.assertIn("other", eps)
        self.assertFalse(any(e.startswith("GET /f") for e in eps))
        self.assertEqual(mt.get("kage_comparisons_total", backend="sandbox", endpoint="other",
                                result="match"), 10)
        self.assertEqual(mt.total("kage_comparisons_total", backend="sandbox"), 110)
        promtool_check(self, mt.text)

    def test_label_values_escaped(self):
        m, s, kg = self.setup_pair(variant=0)
        c = self.connect(kg.port)
        rd = Reader(c)
        odd = ['/q"uo\\te/x', "/caf\u00e9/x".encode("utf-8").decode("latin-1"), "/a%22b/x"]
        sent = 0
        for t in odd:
            c.sendall(request("GET", t))
            if rd.response().status == 200:
                sent += 1
            else:
                c = self.connect(kg.port)
                rd = Reader(c)
        self.assertGreater(sent, 0)
        self.settle(kg, sent)
        mt = self.metrics(kg)
        promtool_check(self, mt.text)
        self.assertEqual(mt.total("kage_comparisons_total"), sent)
        # Whatever bytes a path carried, the exposition stays ASCII.
        self.assertTrue(all(ord(ch) < 128 for ch in mt.text))

    def test_comparator_takes_records_in_batches(self):
        """While records flow, the comparator naps between batches instead
        of being woken for each record (a wake-up costs both threads a
        context switch, more than a comparison). Four clients each send
        one request at a time: records arrive a few hundred microseconds
        apart, so a comparator woken per record would show about one
        record per batch; napping 2 ms it takes several at once."""
        m, s, kg = self.setup_pair(threads=2)
        before = self.stats(kg)["counters"]["records"]
        stop = self.background_load(kg, clients=4)
        time.sleep(2.0)
        self.assertEqual(stop(), [])
        sent = self.stats(kg)["counters"]["shadows"]["sent"]
        self.settle(kg, before["compared"] + sent)
        after = self.stats(kg)["counters"]["records"]
        compared = after["compared"] - before["compared"]
        batches = after["batches"] - before["batches"]
        per_batch = compared / max(batches, 1)
        print(f"\n    {compared} records compared in {batches} batches "
              f"({per_batch:.1f} per batch)")
        self.assertGreater(compared, 500)
        self.assertGreater(batches, 0)
        self.assertGreaterEqual(per_batch, 2.0, (compared, batches))
        self.assertEqual(self.metrics(kg).get("kage_comparator_batches_total"), after["batches"])

    def test_scrapes_while_traffic_flows(self):
        m, s, kg = self.setup_pair(threads=2)
        stop = self.background_load(kg, clients=3)
        try:
            last = None
            for _ in range(25):
                t0 = time.monotonic()
                mt = self.metrics(kg)
                st = self.stats(kg)
                self.assertLess(time.monotonic() - t0, 2.0)
                cur = (mt.get("kage_requests_total"), mt.total("kage_records_compared_total"))
                if last:
                    self.assertGreaterEqual(cur[0], last[0])
                    self.assertGreaterEqual(cur[1], last[1])
                last = cur
                self.assertIn("endpoints", st)
        finally:
            errors = stop()
        self.assertEqual(errors, [])
        self.assertGreater(last[0], 0)


# --- /stats -----------------------------------------------------------------------------

class StatsEndpoint(AdminCase):
    def test_shape_and_contents(self):
        m, s, kg = self.setup_pair()
        self.drive_in_order(kg, [f"/json/users/{i}" for i in range(30)])
        self.settle(kg, 30)
        st = self.stats(kg)
        for k in ("version", "uptime_seconds", "draining", "shards", "backends", "counters", "latency",
                  "endpoints", "mismatches"):
            self.assertIn(k, st)
        self.assertFalse(st["draining"])
        self.assertEqual([(b["name"], b["role"]) for b in st["backends"]],
                         [("production", "master"), ("sandbox", "shadow")])
        c = st["counters"]
        self.assertEqual(c["requests"], 30)
        self.assertEqual(c["shadows"]["sent"], 30)
        self.assertEqual(set(c["shadows"]["skipped"]) >= {"method", "path", "sample", "body_too_large",
                                                          "overload", "memory", "queue_full"}, True)
        self.assertEqual((c["records"]["compared"], c["records"]["matched"], c["records"]["mismatched"]),
                         (30, 15, 15))
        self.assertEqual(c["backends"]["sandbox"]["mismatched"], 15)
        self.assertEqual(c["backends"]["production"]["requests"], 30)
        # SPEC section 5: endpoints[E].places[] as the comparator counts them.
        ep = st["endpoints"]["GET /json/users/:id"]
        self.assertEqual(ep["requests"], 30)
        self.assertEqual(ep["backends"]["sandbox"]["mismatched"], 15)
        place = [p for p in ep["places"] if p["where"] == "/user/name"]
        self.assertEqual(len(place), 1, ep["places"])
        self.assertEqual(set(place[0]), {"backend", "kind", "where", "shadow_count", "reference_count",
                                         "requests", "reported"})
        self.assertEqual((place[0]["backend"], place[0]["kind"], place[0]["shadow_count"],
                          place[0]["requests"], place[0]["reported"]), ("sandbox", "body", 15, 30, True))
        # Latency buckets for the charts: cumulative, the last (le null) is the count.
        for be in ("production", "sandbox"):
            lat = st["latency"][be]
            counts = [b["count"] for b in lat["buckets"]]
            self.assertEqual(counts, sorted(counts))
            self.assertEqual(lat["buckets"][-1], {"le_ms": None, "count": 30})
            self.assertEqual(lat["count"], 30)
            self.assertTrue(0 < lat["p50_ms"] <= lat["p99_ms"])
        # The latest mismatches, newest first, whole records with the request.
        mm = st["mismatches"]
        self.assertEqual(len(mm), 15)
        self.assertEqual(mm[0]["target"], "/json/users/29")
        self.assertEqual(mm[-1]["target"], "/json/users/1")
        self.assertEqual(mm[0]["diffs"][0]["where"], "/user/name")
        self.assertEqual(mm[0]["request"]["method"], "GET")

    def test_latest_mismatches_ring_keeps_twenty(self):
        m, s, kg = self.setup_pair()
        self.drive_in_order(kg, [f"/json/users/{2 * i + 1}" for i in range(25)])
        self.settle(kg, 25)
        mm = self.stats(kg)["mismatches"]
        self.assertEqual([r["target"] for r in mm], [f"/json/users/{2 * i + 1}" for i in range(24, 4, -1)])

    def test_sensitive_headers_never_shown(self):
        m, s, kg = self.setup_pair()
        c = self.connect(kg.port)
        c.sendall(request("GET", "/json/users/3", headers=[("Authorization", "Bearer hunter2"),
                                                            ("Cookie", "sid=topsecret")]))
        self.assertEqual(Reader(c).response().status, 200)
        self.settle(kg, 1)
        body = get(kg.admin, "/stats").body.decode()
        self.assertNotIn("hunter2", body)
        self.assertNotIn("topsecret", body)
        hdrs = dict(self.stats(kg)["mismatches"][0]["request"]["headers"])
        self.assertRegex(hdrs["Authorization"], r"^redacted:[0-9a-f]{16}$")


# --- /healthz and the drain -------------------------------------------------------------------

class Health(AdminCase):
    def test_healthz_then_draining(self):
        m, s, kg = self.setup_pair()
        r = get(kg.admin, "/healthz")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        # A slow request keeps the drain going for a while.
        c = self.connect(kg.port)
        c.sendall(request("GET", "/size/10?delay=1500"))
        time.sleep(0.2)
        kg.signal(signal.SIGTERM)
        r = wait_for(lambda: (lambda x: x.status == 503 and x)(get(kg.admin, "/healthz")), 1.0)
        self.assertTrue(r, "no 503 while draining")
        self.assertEqual(r.body, b"draining\n")
        mt = self.metrics(kg)
        self.assertEqual(mt.get("kage_draining"), 1)
        self.assertTrue(self.stats(kg)["draining"])
        # The in-flight request still completes, then kage exits 0.
        resp = Reader(c, timeout=5).response()
        self.assertEqual(resp.status, 200)
        self.assertEqual(kg.wait(10), 0)

    def test_admin_port_in_use_is_a_config_error(self):
        hold = socket.socket()
        hold.bind(("127.0.0.1", 0))
        hold.listen(1)
        self._socks.append(hold)
        port = hold.getsockname()[1]
        rc, out, err = self.run_kage("--master", "m=127.0.0.1:1", "--listen", "127.0.0.1:0",
                                     "--admin", f"127.0.0.1:{port}")
        self.assertEqual(rc, 2, err)
        self.assertIn("--admin", err)
        self.assertIn("in use", err)

    def test_help_no_longer_says_not_implemented(self):
        rc, out, err = self.run_kage("--help")
        entry = out[out.index("--admin ADDR"):]
        entry = entry[:re.search(r"\n\s+-", entry).start()]
        self.assertIn("admin HTTP listener", entry)
        self.assertNotIn("not yet implemented", entry)


# --- robustness ------------------------------------------------------------------------------

def raw(port, data, timeout=5.0):
    """Send bytes, read until the admin closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            out += d
        return out
    finally:
        s.close()


class Robustness(AdminCase):
    def test_methods_paths_and_garbage(self):
        m, s, kg = self.setup_pair()
        r = get(kg.admin, "/metrics", method="POST")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("Allow"), "GET, HEAD")
        self.assertTrue(raw(kg.admin, b"BREW /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 "))
        self.assertTrue(raw(kg.admin, b"\x00\x01\x02garbage\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        self.assertTrue(raw(kg.admin, b"GET /metrics HTTP/9.9\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        self.assertTrue(raw(kg.admin, b"GET metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        self.assertEqual(get(kg.admin, "/nope").status, 404)
        self.assertEqual(get(kg.admin, "/metrics?debug=1").status, 200)
        # HEAD: the same head, no body.
        h = get(kg.admin, "/stats", method="HEAD")
        self.assertEqual(h.status, 200)
        self.assertGreater(int(h.header("Content-Length")), 100)
        self.assertEqual(h.body, b"")
        # Bare LF heads are accepted too.
        self.assertTrue(raw(kg.admin, b"GET /healthz HTTP/1.0\n\n").startswith(b"HTTP/1.1 200 "))
        self.assertEqual(self.get_through(kg).status, 200)

    def get_through(self, kg):
        c = self.connect(kg.port)
        return exchange(c, request("GET", "/size/5"))

    def test_oversized_head_gets_431(self):
        m, s, kg = self.setup_pair()
        head = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        out = raw(kg.admin, head)
        self.assertTrue(out.startswith(b"HTTP/1.1 431 "), out[:100])
        self.assertEqual(get(kg.admin, "/healthz").status, 200)
        self.assertEqual(self.get_through(kg).status, 200)

    def test_slowloris_and_flood(self):
        m, s, kg = self.setup_pair()
        # Partial heads, never finished.
        slow = []
        for _ in range(5):
            c = socket.create_connection(("127.0.0.1", kg.admin), timeout=10)
            self._socks.append(c)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            slow.append(c)
        # Meanwhile, others are answered at once, and the proxy is unaffected.
        t0 = time.monotonic()
        self.assertEqual(get(kg.admin, "/healthz").status, 200)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(self.get_through(kg).status, 200)
        # More idle connections than the admin keeps: the oldest idle ones
        # make room, so an operator still gets in.
        flood = []
        for _ in range(80):
            c = socket.create_connection(("127.0.0.1", kg.admin), timeout=10)
            self._socks.append(c)
            flood.append(c)
        t0 = time.monotonic()
        self.assertEqual(get(kg.admin, "/healthz").status, 200)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertLessEqual(self.metrics(kg).get("kage_admin_connections"), 64)
        # The slow ones are closed by the head deadline (5 s), if not evicted already.
        deadline = time.monotonic() + 8
        for c in slow:
            c.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                self.assertEqual(c.recv(100), b"")
            except ConnectionResetError:
                pass
        self.assertEqual(self.get_through(kg).status, 200)

    def big_stats(self, kg):
        """Twenty mismatches carrying 180 KB request bodies (240 KB of base64
        each) make /stats ~4.8 MB: more than loopback's largest send buffer,
        so the admin must park the rest and write it on POLLOUT."""
        c = self.connect(kg.port)
        rd = Reader(c)
        for i in range(20):
            c.sendall(request("GET", f"/json/users/{2 * i + 1}", body=b"b" * 180000))
            self.assertEqual(rd.response().status, 200)
        self.settle(kg, 20)

    def slow_reader(self, kg, path="/stats"):
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(10)
        self._socks.append(slow)
        slow.connect(("127.0.0.1", kg.admin))
        slow.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return slow

    def read_all(self, sock):
        data = b""
        while True:
            d = sock.recv(1 << 20)
            if not d:
                return data
            data += d

    def test_slow_reader_does_not_block_the_comparator(self):
        m, s, kg = self.setup_pair()
        self.big_stats(kg)
        slow = self.slow_reader(kg)
        time.sleep(0.3)
        # The admin is parked on a partial write; everything else goes on.
        t0 = time.monotonic()
        self.assertEqual(get(kg.admin, "/healthz").status, 200)
        self.drive(kg, ["/json/users/2"] * 5)
        self.settle(kg, 25)
        self.assertLess(time.monotonic() - t0, 3.0)
        # And the slow reader still gets all of it, intact.
        head, _, body = self.read_all(slow).partition(b"\r\n\r\n")
        n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        self.assertGreater(n, 4500000)
        self.assertEqual(len(body), n)
        self.assertEqual(len(json.loads(body)["mismatches"]), 20)

    def test_slow_readers_hold_bounded_memory(self):
        m, s, kg = self.setup_pair()
        self.big_stats(kg)
        # Each parked /stats holds ~4.8 MB; past 32 MiB in all, the admin
        # answers 503 instead of buffering more.
        slow = []
        for _ in range(9):
            slow.append(self.slow_reader(kg))
            time.sleep(0.1)
        self.assertEqual(get(kg.admin, "/healthz").status, 200)
        self.assertEqual(self.get_through(kg).status, 200)
        statuses = [int(self.read_all(c)[9:12]) for c in slow]
        self.assertIn(503, statuses)
        self.assertGreaterEqual(statuses.count(200), 6, statuses)
        self.assertEqual(get(kg.admin, "/stats").status, 200)


# --- the dashboard ----------------------------------------------------------------------------

class Dashboard(AdminCase):
    def test_page_is_self_contained_and_matches_its_source(self):
        m, s, kg = self.setup_pair()
        r = get(kg.admin, "/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        self.assertIn("default-src 'none'", r.header("Content-Security-Policy"))
        with open(os.path.join(ROOT, "src", "dashboard.html"), "rb") as f:
            self.assertEqual(r.body, f.read(), "src/dashboard.c is stale: python3 tools/embed_dashboard.py")
        # Nothing is loaded from elsewhere.
        self.assertIsNone(re.search(rb"""(src|href)=["']?(https?:)?//""", r.body))
        self.assertNotIn(b"@import", r.body)
        self.assertNotIn(b"url(", r.body)


class Element:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children, self.text_parts = [], []

    def text(self):
        return "".join(self.text_parts) + "".join(c.text() for c in self.children)

    def find_all(self, pred):
        out = [self] if pred(self) else []
        for c in self.children:
            out += c.find_all(pred)
        return out

    def classes(self):
        return self.attrs.get("class", "").split()


class DomBuilder(HTMLParser):
    VOID = {"meta", "link", "br", "img", "input", "hr", "col", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        e = Element(tag, attrs, self.cur)
        self.cur.children.append(e)
        if tag not in self.VOID:
            self.cur = e

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Element(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        e = self.cur
        while e is not self.root and e.tag != tag:
            e = e.parent
        if e is not self.root:
            self.cur = e.parent

    def handle_data(self, data):
        self.cur.text_parts.append(data)


class Browser(AdminCase):
    threads = False  # Chromium is slow enough without TSan; AdminCase covers the threads

    def chromium(self, *args, timeout=90):
        tmp = tempfile.mkdtemp(prefix="kage-chromium-")
        self.addCleanup(shutil.rmtree, tmp, True)
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp}", "--virtual-time-budget=5000", *args]
        # Its own session, so a timeout can stop it and every helper it started.
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            self.fail("chromium did not finish in %ds" % timeout)
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def test_rendered_dashboard(self):
        if not os.path.exists(CHROMIUM):
            self.skipTest(f"{CHROMIUM} not installed (tools/install-deps --browser installs it)")
        m, s, kg = self.setup_pair(threads=2)
        # /json/users: half mismatch; /size: all match; a request with a
        # secret, so the replay command shows the hash note.
        self.drive(kg, [f"/json/users/{i}" for i in range(40)] + [f"/size/{i}" for i in range(20)])
        self.settle(kg, 60)  # so the next one is the newest mismatch
        c = self.connect(kg.port)
        c.sendall(request("GET", "/json/users/41?full=1", headers=[("Authorization", "Bearer x")]))
        self.assertEqual(Reader(c).response().status, 200)
        self.settle(kg, 61)
        url = f"http://127.0.0.1:{kg.admin}/"
        rc, dom, err = self.chromium("--dump-dom", url)
        self.assertEqual(rc, 0, err[-2000:])
        b = DomBuilder()
        b.feed(dom)
        root = b.root
        body = root.find_all(lambda e: e.tag == "body")[0]
        self.assertEqual(body.attrs.get("data-loaded"), "1", "the page never rendered /stats:\n" + dom[:3000])
        # Mismatch rate per endpoint: 21 of 41 for users (odd ids 1..39, 41), 0 for /size.
        rows = {(e.attrs["data-endpoint"], e.attrs["data-backend"]): e
                for e in root.find_all(lambda e: "ep-row" in e.classes())}
        self.assertEqual(rows[("GET /json/users/:id", "sandbox")].attrs["data-rate"], "51.2")
        self.assertIn("21 of 41", rows[("GET /json/users/:id", "sandbox")].text())
        self.assertEqual(rows[("GET /size/:id", "sandbox")].attrs["data-rate"], "0.0")
        self.assertIn("/user/name", rows[("GET /json/users/:id", "sandbox")].text())
        # The latency chart has a series per backend with data points.
        charts = root.find_all(lambda e: e.tag == "svg" and "chart" in e.classes())
        self.assertEqual(len(charts), 1)
        self.assertGreater(int(charts[0].attrs["data-points"]), 1)
        series = {e.attrs["data-backend"]: e for e in charts[0].find_all(lambda e: "series" in e.classes())}
        self.assertEqual(set(series), {"production", "sandbox"})
        for g in series.values():
            pts = g.find_all(lambda e: e.tag == "circle")
            self.assertGreater(len(pts), 0)
            self.assertEqual(sum(int(p.attrs["data-count"]) for p in pts), 61)
        # The latest mismatches, side by side, with a replay command.
        cards = root.find_all(lambda e: e.tag == "article" and "mismatch" in e.classes())
        self.assertGreater(len(cards), 3)
        first = [e for e in cards if "/json/users/41?full=1" in e.text()]
        self.assertEqual(len(first), 1)
        first = first[0]
        item = first.find_all(lambda e: "diff-item" in e.classes())[0]
        self.assertEqual(item.attrs["data-where"], "/user/name")
        marks = item.find_all(lambda e: e.tag == "mark")
        self.assertIn("e", [m_.text() for m_ in marks if "add" in m_.classes()])
        curl = first.find_all(lambda e: e.tag == "pre" and "curl" in e.classes())[0].text()
        self.assertTrue(curl.startswith("curl "), curl)
        self.assertIn(f"'http://127.0.0.1:{s.port}/json/users/41?full=1'", curl)
        self.assertRegex(curl, r"-H 'Authorization: redacted:[0-9a-f]{16}'")
        self.assertIn("hashed in the record", first.text())
        self.assertNotIn("Bearer x", dom)
        # Drop counters by reason are on the page.
        reasons = {e.attrs["data-reason"] for e in root.find_all(lambda e: "reason-row" in e.classes())}
        self.assertTrue({"method", "sample", "queue_full", "overload"} <= reasons, reasons)
        # A screenshot, for people (build/, not committed).
        shot = os.path.join(ROOT, "build", "admin-dashboard.png")
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        rc, _, err = self.chromium(f"--screenshot={shot}", "--window-size=1400,1000",
                                   "--hide-scrollbars", url)
        self.assertEqual(rc, 0, err[-2000:])
        with open(shot, "rb") as f:
            png = f.read()
        self.assertTrue(png.startswith(b"\x89PNG\r\n\x1a\n"))
        self.assertGreater(len(png), 20000)


if __name__ == "__main__":
    unittest.main()
