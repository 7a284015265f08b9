"""The diff log tools: tools/kage-report on a log crafted to known numbers,
and tools/kage-replay against real backends, with records kage wrote."""
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from harness import ROOT, Case, Reader, binary, request

REPORT = os.path.join(ROOT, "tools", "kage-report")
IGNORE = ("--ignore-header", "X-Backend", "--ignore-header", "X-Request-Count")


# --- a crafted log -------------------------------------------------------------------------


def record(endpoint, n, lat, diffs, match, errors=None):
    errors = errors or {}
    backends = {}
    for name, ms in lat.items():
        err = errors.get(name)
        backends[name] = {"status": None if err else 200, "elapsed_ms": ms, "body_bytes": 10, "error": err}
    return {"time": "2026-11-28T01:02:03.456Z", "session": "%016x" % n, "method": "GET",
            "target": endpoint.split(" ")[1].replace(":id", str(n)), "endpoint": endpoint,
            "master": "production", "backends": backends, "match": match, "diffs": diffs}


def diff(backend, kind, where, noise=False):
    d = {"backend": backend, "kind": kind, "where": where, "master": "1", "shadow": "2"}
    if noise:
        d["noise"] = True
    return d


def crafted_log(with_matches=True):
    """GET /users/:id: 10 records, master 1..10 ms, sandbox twice as slow, ref
    as fast. sandbox differs at /items/N/price in records 0-3 (two indexes
    each), at header x-version in record 4; /items/1/price is noise in
    record 5; /ts is noise everywhere. GET /orders/:id: 4 records, the
    sandbox times out in one."""
    recs = []
    for i in range(10):
        ds = [diff("ref", "body", "/ts", True), diff("sandbox", "body", "/ts", True)]
        if i < 4:
            ds += [diff("sandbox", "body", "/items/0/price"), diff("sandbox", "body", "/items/3/price")]
        if i == 4:
            ds.append(diff("sandbox", "header", "x-version"))
        if i == 5:
            ds += [diff("ref", "body", "/items/1/price", True), diff("sandbox", "body", "/items/1/price", True)]
        m = float(i + 1)
        recs.append(record("GET /users/:id", i, {"production": m, "sandbox": 2 * m, "ref": m}, ds, i >= 5))
    for i in range(4):
        m = float(i + 1)
        err = {"sandbox": "timeout"} if i == 3 else {}
        ds = [{"backend": "sandbox", "kind": "error", "where": None, "master": None, "shadow": "timeout"}] if err else []
        recs.append(record("GET /orders/:id", 100 + i, {"production": m, "sandbox": 1.1 * m, "ref": m}, ds,
                           not err, err))
    if not with_matches:
        recs = [r for r in recs if not r["match"]]
    return recs


class Report(Case):
    def write_log(self, recs, tail=""):
        fd, path = tempfile.mkstemp(prefix="kage-report-", suffix=".jsonl")
        with os.fdopen(fd, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
            f.write(tail)
        self.addCleanup(os.unlink, path)
        return path

    def report(self, *args, stdin=None):
        r = subprocess.run([sys.executable, REPORT, *args], capture_output=True, text=True, timeout=30,
                           input=stdin)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_numbers(self):
        truncated = json.dumps(crafted_log()[0])[:57]  # kage killed mid-line
        path = self.write_log(crafted_log(), tail=truncated)
        rep = json.loads(self.report("--json", path))
        self.assertEqual(rep["records"], 14)
        self.assertEqual(rep["skipped_lines"], {"truncated": 1, "malformed": 0})
        self.assertEqual((rep["logging"], rep["rates_among"]), ("all", "all records"))
        self.assertEqual((rep["master"], rep["reference"], rep["shadows"]), ("production", "ref", ["sandbox", "ref"]))
        users, orders = rep["endpoints"]
        self.assertEqual((users["endpoint"], users["records"], users["matched"]), ("GET /users/:id", 10, 5))
        self.assertEqual(users["backends"]["sandbox"],
                         {"role": "shadow", "records": 10, "errors": {}, "mismatched": 5, "mismatch_rate": 0.5})
        self.assertEqual(users["backends"]["ref"]["mismatched"], 0)
        self.assertEqual(users["backends"]["production"], {"role": "master", "records": 10, "errors": {}})
        self.assertEqual(orders["backends"]["sandbox"],
                         {"role": "shadow", "records": 4, "errors": {"timeout": 1}, "mismatched": 1,
                          "mismatch_rate": 0.25})
        places = [(p["endpoint"], p["backend"], p["kind"], p["where"], p["count"], p["share"], p["noise"])
                  for p in rep["top_places"]]
        self.assertEqual(places, [("GET /users/:id", "sandbox", "body", "/items/*/price", 4, 0.4, 1),
                                  ("GET /orders/:id", "sandbox", "error", "error", 1, 0.25, 0),
                                  ("GET /users/:id", "sandbox", "header", "x-version", 1, 0.1, 0)])
        noise = {(p["endpoint"], p["backend"], p["where"]): p["noise"] for p in rep["noise_places"]}
        self.assertEqual(noise, {("GET /users/:id", "ref", "/ts"): 10, ("GET /users/:id", "sandbox", "/ts"): 10,
                                 ("GET /users/:id", "ref", "/items/*/price"): 1})
        self.check_latency(rep)

    def check_latency(self, rep):
        users, orders = rep["endpoints"]
        # Nearest rank over 1..10 ms: p50 5, p90 9, p99 10; the sandbox doubles each.
        lu = users["latency"]
        self.assertEqual([lu["production"][p] for p in ("p50", "p90", "p99")], [5.0, 9.0, 10.0])
        self.assertEqual([lu["sandbox"][p] for p in ("p50", "p90", "p99")], [10.0, 18.0, 20.0])
        self.assertEqual(lu["sandbox"]["ratio"], {"p50": 2.0, "p90": 2.0, "p99": 2.0})
        self.assertTrue(lu["sandbox"]["regression"])
        self.assertEqual(lu["ref"]["ratio"], {"p50": 1.0, "p90": 1.0, "p99": 1.0})
        self.assertFalse(lu["ref"]["regression"])
        # Orders: the timed-out sandbox is left out: 1.1, 2.2, 3.3 against 1, 2, 3, 4.
        lo = orders["latency"]
        self.assertEqual((lo["sandbox"]["n"], lo["production"]["n"]), (3, 4))
        self.assertAlmostEqual(lo["sandbox"]["ratio"]["p50"], 1.1)
        self.assertAlmostEqual(lo["sandbox"]["ratio"]["p99"], 3.3 / 4)
        self.assertFalse(lo["sandbox"]["regression"])
        self.assertEqual(rep["regressions"], [{"endpoint": "GET /users/:id", "backend": "sandbox", "p99_ratio": 2.0}])

    def test_terminal_output(self):
        out = self.report(self.write_log(crafted_log()))
        self.assertIn("logging: every record (--diff-log-all)", out)
        lines = out.splitlines()
        head = lines.index(next(l for l in lines if l.startswith("ENDPOINT ")))
        # Aligned: each row's cells start where its header's columns do.
        col = lines[head].index("BACKEND")
        self.assertEqual(lines[head + 1][col:].split()[0], "production")
        self.assertEqual(lines[head + 2][col:].split()[:5], ["sandbox", "10", "5", "50.0%", "-"])
        top = lines.index(next(l for l in lines if l.startswith("TOP DIFFERING PLACES")))
        self.assertEqual(lines[top + 2].split(), ["GET", "/users/:id", "sandbox", "body", "/items/*/price", "4",
                                                  "40.0%", "1"])
        self.assertEqual(lines[top + 1].index("COUNT") + len("COUNT"), lines[top + 2].index("4") + 1)
        flagged = [l for l in lines if "! p99 regression" in l]
        self.assertEqual([l.split()[0] for l in flagged], ["sandbox", "sandbox"])  # users and all endpoints
        self.assertIn("2.00x", flagged[0])

    def test_only_mismatches_logged(self):
        out = self.report(stdin="".join(json.dumps(r) + "\n" for r in crafted_log(with_matches=False)))
        self.assertIn("only mismatches and errors", out)
        self.assertIn("rates are among logged records", out)
        rep = json.loads(self.report("--json", stdin="".join(json.dumps(r) + "\n"
                                                             for r in crafted_log(with_matches=False))))
        self.assertEqual((rep["logging"], rep["rates_among"]), ("mismatches_and_errors", "logged records"))
        self.assertEqual(rep["endpoints"][0]["backends"]["sandbox"]["mismatch_rate"], 1.0)

    def test_endpoint_filter_and_top(self):
        path = self.write_log(crafted_log())
        rep = json.loads(self.report("--json", "--endpoint", "/orders", path))
        self.assertEqual([e["endpoint"] for e in rep["endpoints"]], ["GET /orders/:id"])
        self.assertEqual(rep["records"], 4)
        rep = json.loads(self.report("--json", "--endpoint", "GET /users", "--top", "1", path))
        self.assertEqual(rep["records"], 10)
        self.assertEqual([p["where"] for p in rep["top_places"]], ["/items/*/price"])
        self.assertEqual(len(rep["noise_places"]), 1)
        out = self.report("--top", "1", path)
        self.assertIn("... 2 more places (--top)", out)

    def test_noise_rule_as_kage_summary(self):
        """A noisy place where master and reference once agreed (two equal
        timestamps): that record's candidate "ts" is not marked noise, yet
        the place is noise, as in kage's exit summary (--noise-relative).
        The regression: it was listed as a real difference."""
        recs = []
        for i in range(20):
            same_ts = i == 8
            ds = [] if same_ts else [diff("ref", "body", "/ts", True)]
            ds.append(diff("cand", "body", "/ts", not same_ts))
            if i % 2:
                ds.append(diff("cand", "body", "/name"))
            recs.append(record("GET /u/:id", i, {"production": 1.0, "cand": 1.0, "ref": 1.0}, ds,
                               not (i % 2 or same_ts)))
        path = self.write_log(recs)
        rep = json.loads(self.report("--json", path))
        self.assertEqual(rep["reference"], "ref")
        self.assertEqual([(p["backend"], p["where"], p["count"]) for p in rep["top_places"]], [("cand", "/name", 10)])
        self.assertEqual(sorted((p["backend"], p["where"], p["noise"], p["count"]) for p in rep["noise_places"]),
                         [("cand", "/ts", 19, 1), ("ref", "/ts", 19, 0)])
        # the records' own verdict stands: record 8 did mismatch
        self.assertEqual(rep["endpoints"][0]["backends"]["cand"]["mismatched"], 11)
        # a candidate that really differs more often than the reference is listed
        rep = json.loads(self.report("--json", "--noise-relative", "0.01", path))
        self.assertEqual([p["where"] for p in rep["top_places"]], ["/name", "/ts"])

    def test_malformed_lines_and_empty_input(self):
        path = self.write_log(crafted_log()[:2], tail="not json\n" + json.dumps(crafted_log()[2]) + "\n")
        rep = json.loads(self.report("--json", path))
        self.assertEqual((rep["records"], rep["skipped_lines"]), (3, {"truncated": 0, "malformed": 1}))
        self.assertIn("(no records)", self.report(stdin=""))


# --- kage-replay ------------------------------------------------------------------------------


class Replay(Case):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="kage-replay-")
        self.master_rec = os.path.join(self.tmp, "master.rec")
        self.m = self.backend("--record", self.master_rec, name="production")
        self.s = self.backend("--variant", "1", name="sandbox")

    def records(self, *requests):
        """Run kage with the shadow and --diff-log, send the requests, return the records."""
        log = os.path.join(self.tmp, "diff.jsonl")
        kg = self.kage(*IGNORE, "--diff-log", log, "--diff-log-all", "--shadow-methods", "GET,POST",
                       master=("production", self.m.port), shadows=[("sandbox", self.s.port)])
        c = self.connect(kg.port)
        rd = Reader(c)
        for raw in requests:
            c.sendall(raw)
            self.assertEqual(rd.response().status, 200)
        self.assertEqual(kg.stop(), 0, kg.stderr())
        with open(log) as f:
            recs = [json.loads(line) for line in f]
        self.assertEqual(len(recs), len(requests))
        self.log = log
        return recs

    def replay(self, *args, shadow=None, stdin=None):
        argv = [binary("tools/kage-replay"), "--master", f"127.0.0.1:{self.m.port}",
                "--shadow", f"127.0.0.1:{shadow or self.s.port}", *args]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, input=stdin)
        for marker in ("runtime error:", "Sanitizer"):
            self.assertNotIn(marker, r.stderr)
        return r.returncode, r.stdout, r.stderr

    def test_mismatch_match_and_errors(self):
        recs = self.records(request("GET", "/json/users/7?full=1", headers=[("Authorization", "Bearer s3cret")]),
                            request("GET", "/json/users/8"))
        bad, good = recs
        self.assertFalse(bad["match"])
        self.assertTrue(good["match"])
        # The mismatch: exit 1, the field named, both statuses shown.
        rc, out, err = self.replay(*IGNORE, "--session", bad["session"], self.log)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("1 difference", out)
        row = next(l for l in out.splitlines() if "/user/name" in l).split()
        self.assertEqual(row[0], "body")
        self.assertEqual(json.loads(row[3]), json.loads(row[2]) + "e")
        self.assertEqual([l.split()[2] for l in out.splitlines() if l.split()[:1] in (["master"], ["shadow"])],
                         ["200", "200"])
        # The hashed credential is sent as it is, and named.
        self.assertIn("warning: sensitive headers Authorization:", err)
        self.assertNotIn("s3cret", out + err)
        # One record on stdin, the matching request: exit 0 (only method and
        # target are replayed: kage logs no request for matches).
        rc, out, err = self.replay(*IGNORE, "-", stdin=json.dumps(good) + "\n")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("no differences", out)
        # Without the ignore options, X-Backend differs: exit 1, a header diff.
        rc, out, _ = self.replay("--session", good["session"], self.log)
        self.assertEqual(rc, 1)
        self.assertIn("x-backend", out)
        # A shadow that is not there, a session that is not, a missing flag: exit 2.
        rc, _, err = self.replay(self.log, shadow=self.closed_port())
        self.assertEqual(rc, 2, err)
        self.assertIn("shadow", err)
        self.assertEqual(self.replay("--session", "nope", self.log)[0], 2)
        r = subprocess.run([binary("tools/kage-replay"), "--master", "127.0.0.1:1", self.log], capture_output=True)
        self.assertEqual(r.returncode, 2)

    def test_timeout_exit_2(self):
        rec = {"session": "1", "method": "GET", "target": "/json/users/3?hang=1", "endpoint": "GET /json/users/:id"}
        rc, _, err = self.replay("--timeout", "0.5", stdin=json.dumps(rec))
        self.assertEqual(rc, 2)
        self.assertIn("master 127.0.0.1:%d: timed out" % self.m.port, err)

    def closed_port(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def test_post_body_replayed(self):
        body = b"hello=world&n=\x01\x02"
        recs = self.records(request("POST", "/json/users/9", headers=[("Content-Type", "text/plain")], body=body))
        self.assertFalse(recs[0]["match"])
        open(self.master_rec, "w").close()  # only the replay's requests from here
        rc, out, err = self.replay(*IGNORE, self.log)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("/user/name", out)
        with open(self.master_rec) as f:
            raws = [json.loads(line)["raw"] for line in f]
        import base64
        raw = base64.b64decode(raws[0])
        self.assertTrue(raw.startswith(b"POST /json/users/9 HTTP/1.1\r\n"), raw)
        self.assertTrue(raw.endswith(b"\r\n\r\n" + body), raw)

    def curl_lines(self, *args):
        rc, out, err = self.replay("--curl", *args)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual([l.split()[:2] for l in lines[::2]],
                         [["#", "master"], ["#", "shadow"]], out)
        return lines[1], lines[3]

    def direct(self, target, method="GET", body=b""):
        c = self.connect(self.m.port)
        c.sendall(request(method, target, body=body))
        return Reader(c).response().body

    def test_curl_gets_masters_body(self):
        recs = self.records(request("GET", "/json/users/7?full=1&x=a%20b", headers=[("X-Custom", "it's")]))
        mcmd, scmd = self.curl_lines(self.log)
        argv = shlex.split(mcmd)
        self.assertEqual(argv[0], "curl")
        self.assertIn(f"http://127.0.0.1:{self.m.port}/json/users/7?full=1&x=a%20b", argv)
        self.assertIn("X-Custom: it's", argv)
        self.assertIn(f"127.0.0.1:{self.s.port}", scmd)
        got = subprocess.run(["sh", "-c", mcmd], capture_output=True, timeout=20)
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertEqual(got.stdout, self.direct(recs[0]["target"]))

    def test_curl_with_body(self):
        body = b"a=1&b='2'"
        self.records(request("POST", "/json/users/11", body=body))
        mcmd, _ = self.curl_lines(self.log)
        open(self.master_rec, "w").close()
        got = subprocess.run(["sh", "-c", mcmd], capture_output=True, timeout=20)
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertEqual(got.stdout, self.direct("/json/users/11", "POST", body))
        with open(self.master_rec) as f:
            import base64
            first = base64.b64decode(json.loads(f.readline())["raw"])
        self.assertTrue(first.endswith(b"\r\n\r\n" + body), first)
        self.assertNotIn(b"User-Agent", first)  # curl's own headers are held back


# --- tools/testbackend ----------------------------------------------------------------------

class TestBackendDelay(Case):
    """--delay-ms makes every answer late (the bench's 200 ms shadow); a
    request's own ?delay wins and the counters are answered at once."""

    def timed(self, port, target):
        c = self.connect(port)
        t0 = time.monotonic()
        c.sendall(request("GET", target))
        r = Reader(c).response()
        elapsed = time.monotonic() - t0
        c.close()
        return r, elapsed

    def test_delay_flag(self):
        b = self.backend("--delay-ms", "300")
        r, t = self.timed(b.port, "/size/10")
        self.assertEqual((r.status, len(r.body)), (200, 10))
        self.assertGreaterEqual(t, 0.3)
        r, t = self.timed(b.port, "/size/10?delay=20")
        self.assertEqual(r.status, 200)
        self.assertLess(t, 0.25)
        r, t = self.timed(b.port, "/__count")
        self.assertEqual(json.loads(r.body)["requests"], 2)
        self.assertLess(t, 0.25)

    def test_bad_delay_exits_2(self):
        for bad in ("x", "-1", "3600001"):
            r = subprocess.run([binary("tools/testbackend"), "--delay-ms", bad],
                               capture_output=True, timeout=10)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn(b"--delay-ms", r.stderr)
