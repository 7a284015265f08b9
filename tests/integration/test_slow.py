"""Slow and many clients (hardening, part 4): a slowloris crowd cut by
--client-timeout while ordinary clients are served, --max-conns reached
(the rest wait in the backlog and are served in turn), and as many
concurrent connections as the 20000-descriptor limit allows.

The crowds run in separate processes (loadgen.py), so this process only
measures. KAGE_QUICK=1 runs them smaller."""
import json
import os
import select
import subprocess
import sys
import time

import faultkit as fk
from harness import Reader, request, wait_for
from healthcase import HealthCase, scaled

HERE = os.path.dirname(os.path.abspath(__file__))


# Sanitizer builds (build/san-*) hold several times the memory per
# allocation (TSan about 5x here): memory bounds widen by this much.
MEM_SLACK = 8 if "san-" in os.environ.get("KAGE_BUILD", "") else 1


def loadgen(*args):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "loadgen.py"), *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def read_line(p, timeout):
    """One line of a loadgen's stdout within `timeout` seconds, or None."""
    r, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline().strip() if r else None


class SlowClients(HealthCase):
    threads = True

    def lg(self, *args):
        p = loadgen(*args)

        def stop():
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        self.addCleanup(stop)
        return p

    def test_slowloris_crowd(self):
        """Thousands of connections each trickling a head a byte every
        0.25 s: with --client-timeout 2 every one is cut (408 or close)
        between 1.5 and 5 s after its first byte, and meanwhile ordinary
        clients, on fresh and on keep-alive connections, are answered
        right and quickly."""
        be = self.origin()
        kg = self.start("--client-timeout", "2", master=be.port, threads=2)
        n = scaled(3000, 500)
        rss0 = kg.rss_kib()
        p = self.lg("slowloris", "--port", kg.port, "--conns", n, "--interval", 0.25,
                    "--max-seconds", 20)
        lat, bad = [], []
        ka = self.connect(kg.port)
        rd = Reader(ka, timeout=5)
        t_end = time.monotonic() + 25
        i = 0
        while p.poll() is None and time.monotonic() < t_end:
            size = 200 + i % 300
            t0 = time.monotonic()
            for fresh in (True, False):
                s = self.connect(kg.port) if fresh else ka
                r = Reader(s, timeout=5) if fresh else rd
                s.sendall(request("GET", f"/size/{size}"))
                resp = r.response()
                lat.append(time.monotonic() - t0)
                if (resp.status, resp.body) != (200, fk.pattern(size)):
                    bad.append(resp)
                if fresh:
                    s.close()
            i += 1
            time.sleep(0.05)
        ka.close()
        out = p.stdout.readline()
        self.assertTrue(out, p.stderr.read())
        res = json.loads(out)
        rss1 = kg.rss_kib()
        print(f"\n  slowloris: {res}; ordinary requests meanwhile: {len(lat)}, worst "
              f"{max(lat) * 1000:.0f} ms; RSS {rss0} KiB before, {rss1} after the crowd", flush=True)
        self.assertLess((rss1 - rss0) * 1024 / n, 16384 * MEM_SLACK, "slowloris heads held too much memory")
        self.assertEqual(bad, [])
        self.assertGreater(len(lat), 20)
        self.assertLess(max(lat), 1.0, "an ordinary client waited behind the slowloris crowd")
        self.assertEqual(res["open"], 0, "slowloris connections never cut")
        self.assertEqual(res["other"], [])
        self.assertEqual(res["408"] + res["close"], n)
        self.assertGreaterEqual(res["cut_after_min"], 1.5)
        self.assertLessEqual(res["cut_after_max"], 5.0)
        self.assertLess(res["bytes_sent_max"], 100, "a head finished: the test trickled too fast")
        m = self.assert_healthy(kg)
        self.assertGreaterEqual(m.get("kage_client_timeouts_total"), n)
        self.stop_clean(kg, within=5)

    def test_max_conns_reached(self):
        """--max-conns 8: the ninth and later connections wait in the
        backlog (no answer while eight are open), are accepted as others
        close, and are served; kage never holds more than eight."""
        be = self.origin()
        kg = self.start("--max-conns", "8", "--client-timeout", "30", master=be.port)
        first = []
        for i in range(8):
            s = self.connect(kg.port)
            rd = Reader(s, timeout=5)
            s.sendall(request("GET", f"/size/{10 + i}"))
            self.assertEqual(rd.response().body, fk.pattern(10 + i))
            first.append((s, rd))
        extra = []
        for i in range(4):
            s = self.connect(kg.port)	# the kernel completes it; kage does not take it
            s.sendall(request("GET", f"/size/{50 + i}"))
            extra.append(s)
        r, _, _ = select.select(extra, [], [], 1.0)
        self.assertEqual(r, [], "a connection past --max-conns was answered")
        m = self.metrics(kg)
        self.assertEqual(m.get("kage_connections_open"), 8)
        self.assertGreaterEqual(m.get("kage_accept_backoffs_total"), 1)
        self.assertEqual(self.census(kg).get("client"), 8)
        # the first ones still work
        s, rd = first[0]
        s.sendall(request("GET", "/size/7"))
        self.assertEqual(rd.response().body, fk.pattern(7))
        t0 = time.monotonic()
        for s, _ in first[:4]:
            s.close()
        for i, s in enumerate(extra):
            resp = Reader(s, timeout=5).response()
            self.assertEqual((resp.status, resp.body), (200, fk.pattern(50 + i)))
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertLessEqual(self.metrics(kg).get("kage_connections_open"), 8)
        for s, _ in first[4:]:
            s.close()
        for s in extra:
            s.close()
        m = self.assert_healthy(kg)
        self.assertEqual(m.get("kage_connections_accepted_total"), 8 + 4 + 1)
        self.stop_clean(kg, within=5)

    def test_many_concurrent_connections(self):
        """As many connections at once as the per-process descriptor limit
        leaves kage (two shards), held open by two client processes: every
        one answered. kage needs descriptors of its own beside its clients:
        stdio, listeners, rings, eventfds, the admin listener, the diff
        log, and one per master connection, and each shard pools its own
        (up to the requests in flight on it): so 20000 clients cannot be.
        Past the limit a request gets a 502 (no descriptor to reach master)
        and a new connection waits in the backlog (test_faults)."""
        import resource
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        be = self.origin(threads=2)
        kg = self.start("--client-timeout", "60", "--diff-log", "/dev/null", master=be.port, threads=2)
        own = sum(kg.base.values())
        rss0 = kg.rss_kib()
        window = 10	# requests in flight per client process
        # Each shard keeps its own pool of master connections, which may grow
        # to all the requests in flight at once (2 x window): 2 shards x that,
        # an admin scrape, slack.
        headroom = 2 * (2 * window) + 16
        n = scaled(limit - own - headroom, 4000)
        halves = [n // 2, n - n // 2]
        t0 = time.monotonic()
        gens = [self.lg("many", "--port", kg.port, "--conns", k, "--window", window, "--seed", j)
                for j, k in enumerate(halves)]
        for g, k in zip(gens, halves):
            line = read_line(g, 60)
            self.assertTrue(line and line.startswith(f"connected {k}"), (line, g.stderr.read()
                                                                         if g.poll() is not None else ""))
        connected = time.monotonic() - t0
        self.assertTrue(wait_for(lambda: self.census(kg).get("client", 0) == n, 20),
                        f"kage holds {self.census(kg).get('client')} of {n}")
        fds_held = sum(self.census(kg).values())
        rss_held = kg.rss_kib()
        self.assertEqual(self.metrics(kg).get("kage_connections_open"), n)
        t1 = time.monotonic()
        for g in gens:
            g.stdin.write("go\n")
            g.stdin.flush()
        results = []
        for g in gens:
            line = read_line(g, 120)
            self.assertTrue(line, g.stderr.read() if g.poll() is not None else "no result")
            results.append(json.loads(line))
        answered = time.monotonic() - t1
        peak = sum(self.census(kg).values())
        rss_after = kg.rss_kib()
        self.assertEqual(self.metrics(kg).get("kage_connections_open"), n,
                         f"connections lost while they were answered: {results} "
                         f"{kg.stderr()[-1500:]}")
        for g in gens:
            g.stdin.write("close\n")
            g.stdin.flush()
            self.assertEqual(read_line(g, 30), "closed")
        print(f"\n  many connections: {n} held at once over 2 shards (limit {limit}, kage's own "
              f"descriptors {own}: {sorted(kg.base.items())}); kage's descriptors {fds_held} "
              f"while held, {peak} after the requests; connected in {connected:.1f}s, all "
              f"answered in {answered:.1f}s; {results}", flush=True)
        for r, k in zip(results, halves):
            self.assertEqual((r["ok"], r["nerrors"]), (k, 0), r)
        m = self.assert_healthy(kg, settle=20)
        rss_end = kg.rss_kib()
        per_conn = (rss_held - rss0) * 1024 / n
        print(f"  RSS: {rss0} KiB at start, {rss_held} holding {n} idle connections "
              f"({per_conn:.0f} bytes each), {rss_after} after every one was answered, "
              f"{rss_end} after they closed; descriptors {sum(self.census(kg).values())} "
              f"after they closed (start {own})", flush=True)
        # Wide bounds (sanitizer builds too): an idle connection holds no
        # receive buffer, and closing connections never grows kage.
        self.assertLess(per_conn, 8192 * MEM_SLACK)
        self.assertLessEqual(rss_end, rss_after + 4096)
        self.assertEqual(m.get("kage_connections_accepted_total"), n + 1)
        self.stop_clean(kg, within=10)
