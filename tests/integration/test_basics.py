"""The master path for ordinary traffic: keep-alive, pooling, pipelining,
headers kage must keep, add or drop, and responses without bodies."""
import http.client
import socket
import subprocess
import time

from harness import (Case, Reader, count, exchange, request, reset_count, wait_for)


class Basics(Case):
    threads = True

    def test_get_through_kage(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        r = exchange(s, request("GET", "/size/1000"))
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), 1000)
        self.assertEqual(r.header("Content-Length"), "1000")
        self.assertEqual(r.header("X-Backend"), "backend")
        self.assertTrue(r.body.startswith(b"abcdefghijklmnopqrstuvwxyz0123456789\n"))

    def test_keep_alive_both_ways(self):
        """One client connection, many requests: one master connection."""
        be, kg = self.proxy()
        reset_count(be.port)
        s = self.connect(kg.port)
        rd = Reader(s)
        for i in range(50):
            s.sendall(request("GET", f"/size/{i}"))
            r = rd.response()
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.body), i)
        c = count(be.port)
        self.assertEqual(c["requests"], 50)
        self.assertEqual(c["connections"], 1)

    def test_pool_shared_across_clients(self):
        """Sequential clients reuse the shard's pooled master connection."""
        be, kg = self.proxy()
        reset_count(be.port)
        for i in range(10):
            s = self.connect(kg.port)
            r = exchange(s, request("GET", "/", headers=[("Connection", "close")]))
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Connection"), "close")
            self.assertTrue(Reader(s).at_eof())
        c = count(be.port)
        self.assertEqual(c["requests"], 10)
        self.assertEqual(c["connections"], 1)

    def test_pipelined_in_order(self):
        """The first response is slow, the others fast: order still holds."""
        be, kg = self.proxy()
        s = self.connect(kg.port)
        s.sendall(request("GET", "/a?delay=300&size=3") + request("GET", "/b?size=5") +
                  request("GET", "/c?size=7"))
        rd = Reader(s)
        sizes = [len(rd.response().body) for _ in range(3)]
        self.assertEqual(sizes, [3, 5, 7])

    def test_pipelined_many_in_one_write(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        s.sendall(b"".join(request("GET", f"/size/{i}") for i in range(100)))
        rd = Reader(s)
        for i in range(100):
            r = rd.response()
            self.assertEqual((r.status, len(r.body)), (200, i))

    def test_head_204_304_have_no_body(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = Reader(s)
        s.sendall(request("HEAD", "/size/100"))
        r = rd.response(head_request=True)
        self.assertEqual((r.status, r.header("Content-Length"), r.body), (200, "100", b""))
        for st in (204, 304):
            s.sendall(request("GET", f"/?status={st}"))
            r = rd.response()
            self.assertEqual((r.status, r.body), (st, b""))
        # The connection is still in step: one more ordinary request.
        s.sendall(request("GET", "/size/10"))
        self.assertEqual(len(rd.response().body), 10)

    def test_host_kept_and_forwarded_for_appended(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        r = exchange(s, request("GET", "/echo", host="example.org:81",
                                headers=[("X-Forwarded-For", "10.1.2.3")]))
        e = r.json()
        hdrs = {n.lower(): v for n, v in e["headers"]}
        self.assertEqual(hdrs["host"], "example.org:81")
        self.assertEqual(hdrs["x-forwarded-for"], "10.1.2.3, 127.0.0.1")
        r = exchange(s, request("GET", "/echo"))
        hdrs = {n.lower(): v for n, v in r.json()["headers"]}
        self.assertEqual(hdrs["x-forwarded-for"], "127.0.0.1")

    def test_request_hop_by_hop_not_forwarded(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        r = exchange(s, request("GET", "/echo", headers=[
            ("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "300"),
            ("TE", "trailers"), ("Trailer", "X-T"), ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "h2c"), ("X-Kept", "yes")]))
        names = {n.lower() for n, _ in r.json()["headers"]}
        for gone in ("connection", "x-secret", "keep-alive", "te", "trailer",
                     "proxy-connection", "upgrade"):
            self.assertNotIn(gone, names)
        self.assertIn("x-kept", names)

    def test_response_hop_by_hop_not_forwarded(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        r = exchange(s, request("GET", "/?header=Keep-Alive:timeout%3D5&header=X-Bar:1"
                                       "&header=Connection:X-Bar&header=X-Kept:1"))
        names = {n.lower() for n, _ in r.headers}
        self.assertNotIn("keep-alive", names)
        self.assertNotIn("x-bar", names)
        self.assertIn("x-kept", names)

    def test_http10_client(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        r = exchange(s, request("GET", "/size/5", version="HTTP/1.0", host=None))
        self.assertEqual((r.status, r.body), (200, b"abcde"))
        self.assertTrue(Reader(s).at_eof())
        # HTTP/1.0 with keep-alive stays open and says so.
        s = self.connect(kg.port)
        rd = Reader(s)
        for _ in range(3):
            s.sendall(request("GET", "/size/5", version="HTTP/1.0",
                              headers=[("Connection", "keep-alive")]))
            r = rd.response()
            self.assertEqual(r.header("Connection"), "keep-alive")

    def test_multiple_shards(self):
        be, kg = self.proxy(threads=2)
        socks = [self.connect(kg.port) for _ in range(40)]
        for s in socks:
            s.sendall(request("GET", "/size/64"))
        for s in socks:
            self.assertEqual(len(Reader(s).response().body), 64)


class Clients(Case):
    """Real clients work through kage unchanged."""

    def test_curl(self):
        be, kg = self.proxy()
        out = subprocess.run(["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-o", "/dev/null",
                              "-w", "%{http_code} %{size_download} %{num_connects}\n",
                              f"http://127.0.0.1:{kg.port}/size/70000",
                              f"http://127.0.0.1:{kg.port}/json/users/7"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        first, second = out.stdout.splitlines()
        self.assertEqual(first, "200 70000 1")
        code, size, connects = second.split()
        # The second request reuses curl's keep-alive connection to kage.
        self.assertEqual((code, connects), ("200", "0"))
        self.assertGreater(int(size), 100)

    def test_curl_upload(self):
        be, kg = self.proxy()
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--data-binary", "@-",
                              f"http://127.0.0.1:{kg.port}/echo"],
                             input=b"x" * 300000, capture_output=True, timeout=15)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b'"body_len":300000', out.stdout)

    def test_python_http_client(self):
        be, kg = self.proxy()
        conn = http.client.HTTPConnection("127.0.0.1", kg.port, timeout=5)
        for path, n in (("/size/10", 10), ("/size/100000?chunked=1", 100000), ("/size/0", 0)):
            conn.request("GET", path)
            r = conn.getresponse()
            self.assertEqual((r.status, len(r.read())), (200, n))
        conn.request("POST", "/echo", body=b"hello", headers={"Content-Type": "text/plain"})
        r = conn.getresponse()
        self.assertIn(b'"body_len":5', r.read())
        conn.close()

    def test_ab(self):
        be, kg = self.proxy()
        out = subprocess.run(["ab", "-q", "-k", "-n", "2000", "-c", "20",
                              f"http://127.0.0.1:{kg.port}/size/1024"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("Complete requests:      2000", out.stdout)
        self.assertIn("Failed requests:        0", out.stdout)
        self.assertNotIn("Non-2xx responses:", out.stdout)

    def test_wrk(self):
        be, kg = self.proxy(threads=2)
        out = subprocess.run(["wrk", "-t2", "-c32", "-d2s", f"http://127.0.0.1:{kg.port}/size/1024"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn("Socket errors", out.stdout)
        self.assertNotIn("Non-2xx", out.stdout)
        self.assertIn("requests in", out.stdout)


def pattern(n):
    unit = b"abcdefghijklmnopqrstuvwxyz0123456789\n"
    return (unit * (n // len(unit) + 1))[:n]


class Backpressure(Case):
    """Regression: a response that filled the client's output paused
    master's receive; when it ended before the pause's cancel completed,
    the pooled connection went back with its receive paused and the next
    request on it timed out (504 after --backend-timeout)."""

    def fetch_many(self, kg, size, n, slow=False):
        want = pattern(size)
        for i in range(n):
            s = self.connect(kg.port)
            if slow:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.sendall(request("GET", f"/size/{size}", headers=[("Connection", "close")]))
            t0 = time.monotonic()
            rd = Reader(s, timeout=3)
            if slow:
                time.sleep(0.05)	# let kage's output back up
            r = rd.response()
            self.assertEqual(r.status, 200, f"request {i}")
            self.assertEqual(r.body, want, f"request {i}")
            self.assertLess(time.monotonic() - t0, 3)

    def test_large_responses_back_to_back(self):
        be, kg = self.proxy("--backend-timeout", "3")
        self.fetch_many(kg, 1000000, 12)
        self.fetch_many(kg, 3000000, 4, slow=True)

    def test_send_zc_bodies_intact(self):
        be, kg = self.proxy("--send-zc", "--backend-timeout", "3")
        self.fetch_many(kg, 1000000, 6)
        self.fetch_many(kg, 70000, 6)
        kg.stop()
        self.assertRegex(kg.stderr(), r"--send-zc: [1-9]\d* SEND_ZC sends")
