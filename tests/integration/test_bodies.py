"""Bodies through the master path: request bodies (Content-Length, chunked,
slow, large, Expect: 100-continue) reach master intact and are streamed;
response bodies (chunked, close-delimited, gzip, large) reach the client
intact and framed for its HTTP version."""
import gzip
import subprocess
import tempfile
import threading
import time

from harness import ScriptedBackend, b64, chunked, count, exchange, request, reset_count
from support import FastReader, KageCase, noise, pattern, read_to_eof


def echo_headers(r):
    return {n.lower(): v for n, v in r.json()["headers"]}


def read_chunked_raw(rd):
    """After a response head with Transfer-Encoding: chunked: the chunk
    sizes, the body and the trailer lines, exactly as they arrived."""
    sizes, body, trailers = [], b"", []
    while True:
        line = rd._line()
        size = int(line.split(b";")[0], 16)
        sizes.append(size)
        if size == 0:
            break
        body += rd._exact(size)
        if rd._exact(2) != b"\r\n":
            raise AssertionError("chunk not followed by CRLF")
    while True:
        t = rd._line()
        if not t:
            break
        trailers.append(t)
    return sizes, body, trailers


def read_head(rd):
    """A response head only: (status, [(name, value)])."""
    line = rd._line()
    status = int(line.split(b" ")[1])
    headers = []
    while True:
        h = rd._line()
        if not h:
            return status, headers
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name, value.strip()))


def hdr(headers, name):
    for n, v in headers:
        if n.lower() == name.lower():
            return v
    return None


class RequestBodies(KageCase):
    threads = True

    def test_content_length_body_intact(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = FastReader(s)
        for n in (1, 100, 65536, 300001):
            body = noise(n, seed=n)
            s.sendall(request("POST", "/echo", body=body,
                              headers=[("Content-Type", "application/octet-stream")]))
            r = rd.response()
            self.assertEqual(r.status, 200)
            e = r.json()
            self.assertEqual(e["method"], "POST")
            self.assertEqual(e["body_len"], n)
            self.assertEqual(b64(e["body_b64"]), body)
            self.assertEqual(echo_headers(r).get("content-length"), str(n))

    def test_chunked_body_arrives_rechunked(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = FastReader(s)
        for n, piece in ((1, 1), (1000, 7), (200000, 4096)):
            body = noise(n, seed=3)
            s.sendall(request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) +
                      chunked(body, piece))
            r = rd.response()
            self.assertEqual(r.status, 200)
            e = r.json()
            self.assertEqual(e["body_len"], n)
            self.assertEqual(b64(e["body_b64"]), body)
            h = echo_headers(r)
            self.assertEqual(h.get("transfer-encoding", "").lower(), "chunked")
            self.assertNotIn("content-length", h)
        # An empty chunked body is still a chunked request.
        s.sendall(request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) +
                  b"0\r\n\r\n")
        e = rd.response().json()
        self.assertEqual(e["body_len"], 0)

    def test_chunk_extensions_do_not_corrupt_the_body(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        body = b"hello, world"
        raw = (request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) +
               b"5;name=value\r\nhello\r\n7;x\r\n, world\r\n0\r\n\r\n")
        r = exchange(s, raw)
        self.assertEqual(r.status, 200)
        self.assertEqual(b64(r.json()["body_b64"]), body)

    def test_byte_at_a_time_upload(self):
        """Head and body dribble in one byte per send: the request still
        arrives whole and in order."""
        be, kg = self.proxy()
        for te in (False, True):
            body = noise(300, seed=11)
            if te:
                raw = request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) + \
                    chunked(body, 50)
            else:
                raw = request("POST", "/echo", body=body)
            s = self.connect(kg.port)
            for i in range(len(raw)):
                s.send(raw[i:i + 1])
                time.sleep(0.0005)
            r = FastReader(s).response()
            self.assertEqual(r.status, 200)
            e = r.json()
            self.assertEqual((e["body_len"], b64(e["body_b64"])), (300, body))

    def _upload_and_watch_rss(self, kg, total, use_chunked, target="/echo"):
        """Stream `total` bytes to `target` while sampling kage's RSS.
        Returns (response, the highest RSS growth seen during it, VmHWM),
        sizes in KiB."""
        base = kg.rss_kib()
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], kg.rss_kib())
                except OSError:
                    return
                time.sleep(0.005)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        s = self.connect(kg.port, timeout=30)
        block = noise(1 << 20, seed=5)
        try:
            if use_chunked:
                s.sendall(request("POST", target, headers=[("Transfer-Encoding", "chunked")]))
                for _ in range(total // len(block)):
                    s.sendall(b"%x\r\n" % len(block) + block + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            else:
                s.sendall(request("POST", target, headers=[("Content-Length", str(total))]))
                for _ in range(total // len(block)):
                    s.sendall(block)
            r = FastReader(s, timeout=30).response()
        finally:
            done.set()
            t.join(5)
        with open(f"/proc/{kg.pid}/status") as f:
            hwm = [int(l.split()[1]) for l in f if l.startswith("VmHWM:")][0]
        self.assertEqual(r.status, 200)
        return r, peak[0] - base, hwm

    def _streams_large_upload(self, use_chunked):
        """64 MiB from the client: master gets every byte, and kage's RSS
        grows by far less than the body. kage touches its buffer pools
        (some 30 MiB with the defaults) on its first large transfer, so
        an 8 MiB upload warms them up before the measured one (to a route
        that answers briefly: only the upload is of interest)."""
        be, kg = self.proxy()
        s = self.connect(kg.port)
        self.assertEqual(exchange(s, request("POST", "/echo", body=b"warm")).status, 200)
        start = kg.rss_kib()
        r, _, _ = self._upload_and_watch_rss(kg, 8 << 20, use_chunked, target="/size/2")
        self.assertEqual(r.body, b"ab")
        total = 64 << 20
        r, rss_growth, hwm = self._upload_and_watch_rss(kg, total, use_chunked)
        self.assertEqual(r.json()["body_len"], total)
        self.assertLess(rss_growth, 32 << 10, f"RSS grew by {rss_growth} KiB during the upload")
        # Pools included, and between two samples (VmHWM), kage never came
        # near holding the body.
        self.assertLess(hwm - start, 56 << 10, f"peak RSS {hwm - start} KiB over the start")

    def test_large_upload_streamed_not_held(self):
        self._streams_large_upload(False)

    def test_large_chunked_upload_streamed_not_held(self):
        self._streams_large_upload(True)

    def test_expect_100_continue_raw(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = FastReader(s, timeout=3)
        body = noise(100000, seed=9)
        s.sendall(request("POST", "/echo", headers=[("Expect", "100-continue"),
                                                    ("Content-Length", str(len(body)))]))
        r = rd.response()
        self.assertEqual((r.version, r.status), ("HTTP/1.1", 100))
        self.assertEqual(r.body, b"")
        s.sendall(body)
        r = rd.response()
        self.assertEqual(r.status, 200)
        e = r.json()
        self.assertEqual((e["body_len"], b64(e["body_b64"])), (len(body), body))
        # The connection goes on after the exchange.
        s.sendall(request("GET", "/size/10"))
        self.assertEqual(rd.response().body, pattern(10))

    def test_expect_100_continue_chunked_raw(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = FastReader(s, timeout=3)
        body = noise(5000, seed=1)
        s.sendall(request("POST", "/echo", headers=[("Expect", "100-continue"),
                                                    ("Transfer-Encoding", "chunked")]))
        self.assertEqual(rd.response().status, 100)
        s.sendall(chunked(body, 1000))
        r = rd.response()
        self.assertEqual(r.status, 200)
        self.assertEqual(b64(r.json()["body_b64"]), body)

    def test_expect_100_continue_curl(self):
        """curl sends Expect: 100-continue for a large body and waits up to
        a second for the 100: it must come promptly."""
        be, kg = self.proxy()
        with tempfile.NamedTemporaryFile(prefix="kage-upload-") as f:
            f.write(noise(3 << 20, seed=2))
            f.flush()
            out = subprocess.run(["curl", "-sS", "-v", "--max-time", "10", "--expect100-timeout", "5",
                                  "--data-binary", f"@{f.name}", "-w", "\n%{http_code} %{time_total}",
                                  f"http://127.0.0.1:{kg.port}/echo"],
                                 capture_output=True, timeout=15)
        self.assertEqual(out.returncode, 0, out.stderr)
        err = out.stderr.decode("latin-1")
        self.assertIn("Expect: 100-continue", err)
        self.assertIn("< HTTP/1.1 100 Continue", err)
        body, _, tail = out.stdout.rpartition(b"\n")
        code, secs = tail.decode().split()
        self.assertEqual(code, "200")
        self.assertIn(b'"body_len":%d' % (3 << 20), body)
        self.assertLess(float(secs), 4.0)


class ResponseBodies(KageCase):
    threads = True

    def test_chunked_response_stays_chunked_for_http11(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = FastReader(s)
        for n, chunk in ((100000, 1000), (5, 1), (0, 10)):
            s.sendall(request("GET", f"/size/{n}?chunked=1&chunk={chunk}"))
            status, headers = read_head(rd)
            self.assertEqual(status, 200)
            self.assertEqual((hdr(headers, "Transfer-Encoding") or "").lower(), "chunked")
            self.assertIsNone(hdr(headers, "Content-Length"))
            sizes, body, trailers = read_chunked_raw(rd)
            self.assertEqual(body, pattern(n))
            self.assertEqual(trailers, [])
        # Still in step for a following request.
        s.sendall(request("GET", "/size/3"))
        self.assertEqual(rd.response().body, b"abc")

    def test_chunked_response_dechunked_for_http10(self):
        """The test backend chunks (kage asks it in HTTP/1.1); a 1.0 client
        gets the plain body, no Transfer-Encoding, and the close ends it."""
        be, kg = self.proxy()
        for ka in (False, True):
            s = self.connect(kg.port)
            hdrs = [("Connection", "keep-alive")] if ka else []
            s.sendall(request("GET", "/size/50000?chunked=1&chunk=777", version="HTTP/1.0",
                              host=None, headers=hdrs))
            rd = FastReader(s)
            status, headers = read_head(rd)
            self.assertEqual(status, 200)
            self.assertIsNone(hdr(headers, "Transfer-Encoding"))
            cl = hdr(headers, "Content-Length")
            if cl is not None:
                body = rd._exact(int(cl))
            else:
                # Delimited by the close: kage must close when the body ends.
                self.assertTrue(read_to_eof(rd), "connection not closed after the body")
                body, rd.buf = bytes(rd.buf), bytearray()
                self.assertNotEqual((hdr(headers, "Connection") or "").lower(), "keep-alive")
            self.assertEqual(body, pattern(50000))

    def test_chunked_response_from_scripted_master_for_http10(self):
        """A master that always chunks, with a trailer: the 1.0 client sees
        the plain body, no framing headers, no trailer, then EOF."""
        chunks = [b"first-", b"second-", b"x" * 5000, b"-last"]

        def handler(conn, index):
            while conn.read_request() is not None:
                out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
                for c in chunks:
                    out += b"%x\r\n" % len(c) + c + b"\r\n"
                conn.send(out + b"0\r\nX-T: done\r\n\r\n")

        sb = ScriptedBackend(handler)
        self.addCleanup(sb.close)
        kg = self.kage(master=("production", sb.port))
        s = self.connect(kg.port)
        s.sendall(request("GET", "/", version="HTTP/1.0", host=None))
        rd = FastReader(s)
        status, headers = read_head(rd)
        self.assertEqual(status, 200)
        names = {n.lower() for n, _ in headers}
        self.assertNotIn("transfer-encoding", names)
        self.assertNotIn("trailer", names)
        self.assertNotIn("x-t", names)
        if "content-length" in names:
            body = rd._exact(int(hdr(headers, "Content-Length")))
            self.assertTrue(rd.at_eof(3))
        else:
            self.assertTrue(read_to_eof(rd), "connection not closed after the body")
            body, rd.buf = bytes(rd.buf), bytearray()
        self.assertEqual(body, b"".join(chunks))

    def test_close_delimited_response_http11(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        s.sendall(request("GET", "/size/200000?close=1"))
        rd = FastReader(s, timeout=5)
        r = rd.response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, pattern(200000))
        framed = r.header("Content-Length") is not None or r.header("Transfer-Encoding") is not None
        if framed and (r.header("Connection") or "").lower() != "close":
            # kage re-framed it: the connection may go on, and must work.
            s.sendall(request("GET", "/size/7"))
            self.assertEqual(rd.response().body, pattern(7))
        else:
            self.assertTrue(rd.at_eof())

    def test_close_delimited_response_http10(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        s.sendall(request("GET", "/size/100000?close=1", version="HTTP/1.0", host=None))
        rd = FastReader(s, timeout=5)
        r = rd.response()
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("Transfer-Encoding"))
        self.assertEqual(r.body, pattern(100000))
        self.assertTrue(rd.at_eof())

    def test_trailers_dropped(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = FastReader(s)
        s.sendall(request("GET", "/size/3000?chunked=1&chunk=1000&trailer=1"))
        status, headers = read_head(rd)
        self.assertEqual(status, 200)
        self.assertIsNone(hdr(headers, "Trailer"))
        sizes, body, trailers = read_chunked_raw(rd)
        self.assertEqual(body, pattern(3000))
        self.assertEqual(trailers, [])
        # Nothing of the trailer leaks into the next response either.
        s.sendall(request("GET", "/size/4"))
        r = rd.response()
        self.assertEqual((r.status, r.body), (200, b"abcd"))
        self.assertIsNone(r.header("X-Trailer"))

    def test_gzip_passed_through_untouched(self):
        be, kg = self.proxy()
        for q in ("gzip=1", "gzip=1&chunked=1&chunk=500"):
            target = f"/size/100000?{q}"
            direct = exchange(self.connect(be.port), request("GET", target))
            s = self.connect(kg.port)
            r = exchange(s, request("GET", target, headers=[("Accept-Encoding", "gzip")]))
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Encoding"), "gzip")
            self.assertEqual(gzip.decompress(r.body), pattern(100000))
            # The very bytes master produced: kage neither decodes nor re-encodes.
            self.assertEqual(r.body, direct.body)
            self.assertLess(len(r.body), 100000)

    def test_large_response_bodies_intact(self):
        # --drain-timeout 1: a stuck exchange must not hold the stop for 10 s.
        be, kg = self.proxy("--drain-timeout", "1")
        s = self.connect(kg.port)
        rd = FastReader(s, timeout=5)
        for target, n in (("/size/65536", 65536), ("/size/8388608", 8 << 20),
                          ("/size/8388608?chunked=1&chunk=65536", 8 << 20),
                          ("/size/1000003?chunked=1&chunk=4097", 1000003)):
            s.sendall(request("GET", target))
            r = rd.response()
            self.assertEqual(r.status, 200, target)
            self.assertEqual(len(r.body), n, target)
            self.assertTrue(r.body == pattern(n), f"{target}: body differs from the pattern")

    def test_curl_large_downloads_on_one_connection(self):
        """curl fetches two 8 MiB bodies over one keep-alive connection."""
        be, kg = self.proxy("--drain-timeout", "1")
        url = f"http://127.0.0.1:{kg.port}/size/8388608"
        with tempfile.TemporaryDirectory(prefix="kage-dl-") as d:
            out = subprocess.run(["curl", "-sS", "--max-time", "5", "-o", f"{d}/1", "-o", f"{d}/2",
                                  "-w", "%{http_code} %{num_connects}\n", url, url],
                                 capture_output=True, text=True, timeout=15)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout.split("\n")[:2], ["200 1", "200 0"])
            for name in ("1", "2"):
                with open(f"{d}/{name}", "rb") as f:
                    self.assertTrue(f.read() == pattern(8 << 20), f"download {name} differs")

    def test_pipelined_posts_answered_in_order(self):
        be, kg = self.proxy()
        reset_count(be.port)
        s = self.connect(kg.port)
        bodies = [noise(n, seed=n) for n in (10, 0, 70000, 3, 5000, 1)]
        raw = b""
        for i, body in enumerate(bodies):
            if i % 2:
                raw += request("POST", f"/echo/{i}", headers=[("Transfer-Encoding", "chunked")]) + \
                    chunked(body, 999)
            else:
                raw += request("POST", f"/echo/{i}", body=body,
                               headers=[("Content-Length", str(len(body)))])
        s.sendall(raw)
        rd = FastReader(s)
        for i, body in enumerate(bodies):
            r = rd.response()
            self.assertEqual(r.status, 200)
            e = r.json()
            self.assertEqual(e["target"], f"/echo/{i}")
            self.assertEqual(b64(e["body_b64"]), body)
        self.assertEqual(count(be.port)["requests"], len(bodies))
