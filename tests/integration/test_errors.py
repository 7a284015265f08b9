"""Every error a client can get from kage (SPEC 3, "Errors a client can
get"): malformed requests (400), versions (505), sizes (414, 431),
unsupported framing (501), slow clients (408), master failures (502, 504),
failures after the response started, the idempotent retry, and the client
timeout on silent and idle connections."""
import base64
import json
import os
import socket
import tempfile
import time

from harness import Reader, ScriptedBackend, count, ok_response, request
from support import KageCase, pattern, read_all

def head(lines, body=b""):
    """A request from raw lines, joined by CRLF, with the blank line."""
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


H = b"Host: t"

# Malformed requests, rejected before anything reaches master: (name, bytes).
BAD_HEADS = [
    ("cl_with_te", head([b"POST /echo HTTP/1.1", H, b"Content-Length: 5",
                         b"Transfer-Encoding: chunked"], b"0\r\n\r\n")),
    ("te_with_cl", head([b"POST /echo HTTP/1.1", H, b"Transfer-Encoding: chunked",
                         b"Content-Length: 5"], b"0\r\n\r\n")),
    ("two_different_cls", head([b"POST /echo HTTP/1.1", H, b"Content-Length: 5",
                                b"Content-Length: 6"], b"hello!")),
    ("cl_list_different", head([b"POST /echo HTTP/1.1", H, b"Content-Length: 5, 6"], b"hello!")),
    ("cl_not_a_number", head([b"POST /echo HTTP/1.1", H, b"Content-Length: abc"], b"hello")),
    ("cl_negative", head([b"POST /echo HTTP/1.1", H, b"Content-Length: -1"], b"hello")),
    ("chunked_not_last", head([b"POST /echo HTTP/1.1", H, b"Transfer-Encoding: chunked, gzip"],
                              b"0\r\n\r\n")),
    ("chunked_not_last_two_lines", head([b"POST /echo HTTP/1.1", H, b"Transfer-Encoding: chunked",
                                         b"Transfer-Encoding: gzip"], b"0\r\n\r\n")),
    ("bare_lf_request_line", b"GET / HTTP/1.1\nHost: t\r\n\r\n"),
    ("bare_lf_header_line", b"GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n"),
    ("bare_lf_everywhere", b"GET / HTTP/1.1\nHost: t\n\n"),
    ("bare_cr_request_line", b"GET / HTTP/1.1\rHost: t\r\n\r\n"),
    ("bare_cr_in_value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n"),
    ("obs_fold_space", head([b"GET / HTTP/1.1", H, b"X-A: a", b" b"])),
    ("obs_fold_tab", head([b"GET / HTTP/1.1", H, b"X-A: a", b"\tb"])),
    ("missing_host_11", head([b"GET / HTTP/1.1", b"X-A: b"])),
    ("duplicate_host_same", head([b"GET / HTTP/1.1", H, H])),
    ("duplicate_host_different", head([b"GET / HTTP/1.1", H, b"Host: u"])),
    ("nul_in_value", head([b"GET / HTTP/1.1", H, b"X-A: a\x00b"])),
    ("soh_in_value", head([b"GET / HTTP/1.1", H, b"X-A: a\x01b"])),
    ("esc_in_value", head([b"GET / HTTP/1.1", H, b"X-A: a\x1bb"])),
    ("del_in_value", head([b"GET / HTTP/1.1", H, b"X-A: a\x7fb"])),
    ("space_in_name", head([b"GET / HTTP/1.1", H, b"X A: b"])),
    ("space_before_colon", head([b"GET / HTTP/1.1", H, b"X-A : b"])),
    ("empty_name", head([b"GET / HTTP/1.1", H, b": b"])),
    ("at_in_name", head([b"GET / HTTP/1.1", H, b"X@A: b"])),
    ("paren_in_name", head([b"GET / HTTP/1.1", H, b"X(A): b"])),
    ("non_ascii_name", head([b"GET / HTTP/1.1", H, b"X\xe9A: b"])),
    ("no_colon", head([b"GET / HTTP/1.1", H, b"X-A b"])),
    ("no_version", head([b"GET /", H])),
    ("no_version_trailing_space", head([b"GET / ", H])),
    ("tls_client_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n"),
]

# The head is valid, the chunked body is not: master may have seen the head,
# never a complete request.
BAD_CHUNKS = [
    ("chunk_size_zz", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_negative", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_empty", b"\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_overflow", b"fffffffffffffffff5\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_bare_lf", b"5\nhello\r\n0\r\n\r\n"),
    ("chunk_data_too_long", b"5\r\nhello!!\r\n0\r\n\r\n"),
]


def master_records(path):
    """The test backend's --record lines, without the tests' own /__count
    and /__reset requests."""
    out = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            raw = base64.b64decode(rec["raw"])
            if raw.startswith((b"GET /__count ", b"GET /__reset ")):
                continue
            out.append(rec)
    return out


def free_port():
    """A port with nothing listening on it (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ErrorCase(KageCase):
    def assert_kage_error(self, r, status, closes=True):
        """A short error response written by kage itself."""
        self.assertEqual(r.status, status, r)
        self.assertIsNone(r.header("X-Backend"), "the error came from master, not kage")
        self.assertGreater(len(r.body), 0, "error response without a body")
        self.assertLessEqual(len(r.body), 512, "error body is not short")
        if closes:
            self.assertEqual((r.header("Connection") or "").lower(), "close", r.headers)

    def assert_consistent(self, s, rd, r, follow=(("GET", "/size/3"),), expect_status=None):
        """Whatever kage does after a response must match the Connection
        header it sent: closed after "close", else the next request works."""
        if "close" in (r.header("Connection") or "").lower():
            self.assertTrue(rd.at_eof(3), "Connection: close but the connection stays open")
            return None
        method, target = follow[0]
        s.sendall(request(method, target))
        r2 = rd.response()
        if expect_status is not None:
            self.assertEqual(r2.status, expect_status)
        return r2


class BadRequests(ErrorCase):
    threads = True

    def _reject_all(self, cases, status, prefix=b"", record_empty=True):
        rec = tempfile.NamedTemporaryFile(prefix="kage-record-", suffix=".jsonl", delete=False)
        rec.close()
        self.addCleanup(os.unlink, rec.name)
        be, kg = self.proxy(backend_args=("--record", rec.name))
        for name, raw in cases:
            with self.subTest(name):
                s = self.connect(kg.port)
                s.sendall(prefix + raw)
                rd = Reader(s, timeout=3)
                r = rd.response()
                self.assert_kage_error(r, status)
                rest, eof = read_all(s, 3)
                rest = bytes(rd.buf) + rest
                self.assertEqual(rest[:200], b"", "bytes after the error response")
                self.assertTrue(eof, "kage did not close after the error")
        self.assertEqual(count(be.port)["requests"], 0, "a bad request reached master")
        records = master_records(rec.name)
        if record_empty:
            self.assertEqual(records, [], "master received bytes of a bad request")
        return records

    def test_400_malformed_heads(self):
        self._reject_all(BAD_HEADS, 400)

    def test_400_invalid_chunk_sizes(self):
        prefix = head([b"POST /echo HTTP/1.1", H, b"Transfer-Encoding: chunked"])
        records = self._reject_all(BAD_CHUNKS, 400, prefix=prefix, record_empty=False)
        # Master may have seen the head, then the connection cut: never a
        # request it answered, never the client's bad bytes.
        for rec in records:
            self.assertTrue(rec.get("incomplete"), rec)
            self.assertNotIn("error", rec)

    def test_valid_requests_near_the_rules_are_served(self):
        """Controls for the cases above: a tab in a value, obs-text, a
        request target of 60 KiB, 200 headers, a 60 KiB header block and a
        matching duplicate Content-Length are fine."""
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = Reader(s)
        s.sendall(head([b"GET /echo HTTP/1.1", H, b"X-A: a\tb", b"X-B: caf\xe9"]))
        r = rd.response()
        self.assertEqual(r.status, 200)
        hdrs = {n.lower(): v for n, v in r.json()["headers"]}
        self.assertEqual(hdrs["x-a"], "a\tb")
        s.sendall(request("GET", "/" + "a" * 60000))
        self.assertEqual(rd.response().status, 200)
        s.sendall(request("GET", "/", headers=[(f"X-H{i}", "v") for i in range(200)]))
        self.assertEqual(rd.response().status, 200)
        s.sendall(request("GET", "/", headers=[("X-Big", "v" * 60000)]))
        self.assertEqual(rd.response().status, 200)
        s.sendall(head([b"POST /echo HTTP/1.1", H, b"Content-Length: 5", b"Content-Length: 5"],
                       b"hello"))
        r = rd.response()
        if r.status == 200:
            self.assertEqual(r.json()["body_len"], 5)
        else:
            # RFC 9112 allows rejecting it too; then kage must close.
            self.assert_kage_error(r, 400)
            self.assertTrue(rd.at_eof(3))

    def test_505_versions(self):
        cases = [(v, head([b"GET / HTTP/" + v.encode(), H]))
                 for v in ("1.2", "2.0", "3.0", "0.9", "1.9")]
        self._reject_all(cases, 505)

    def test_414_request_line_too_long(self):
        self._reject_all([("target_70k", head([b"GET /" + b"a" * 70000 + b" HTTP/1.1", H])),
                          ("target_1m", head([b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1", H]))],
                         414)

    def test_431_header_block_too_large(self):
        self._reject_all([
            ("one_70k_header", head([b"GET / HTTP/1.1", H, b"X-Big: " + b"v" * 70000])),
            ("two_40k_headers", head([b"GET / HTTP/1.1", H, b"X-A: " + b"v" * 40000,
                                      b"X-B: " + b"v" * 40000])),
            ("many_small_headers_over_64k", head([b"GET / HTTP/1.1", H] +
                                                 [b"X-%05d: %s" % (i, b"v" * 100)
                                                  for i in range(700)])),
            ("too_many_headers", head([b"GET / HTTP/1.1", H] +
                                      [b"X-%d: v" % i for i in range(300)])),
        ], 431)

    def test_501_transfer_coding_and_connect(self):
        self._reject_all([
            ("x_custom_chunked", head([b"POST /echo HTTP/1.1", H,
                                       b"Transfer-Encoding: x-custom, chunked"], b"0\r\n\r\n")),
            ("gzip_chunked", head([b"POST /echo HTTP/1.1", H, b"Transfer-Encoding: gzip, chunked"],
                                  b"0\r\n\r\n")),
        ], 501)

    def test_501_connect(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = Reader(s, timeout=3)
        s.sendall(head([b"CONNECT example.org:443 HTTP/1.1", b"Host: example.org:443"]))
        r = rd.response()
        self.assert_kage_error(r, 501, closes=False)
        self.assert_consistent(s, rd, r, expect_status=200)
        self.assertEqual(count(be.port)["requests"], 0 if r.header("Connection") == "close" else 1)

    def test_400_with_a_large_body_behind_it(self):
        """The bad head arrives with a megabyte behind it (a POST that is
        refused): the client still gets the 400, then the close."""
        self._reject_all([
            ("cl_with_te_big_body", head([b"POST /echo HTTP/1.1", H, b"Content-Length: 1048576",
                                          b"Transfer-Encoding: chunked"], b"x" * (1 << 20))),
            ("invalid_name_big_body", head([b"POST /echo HTTP/1.1", H, b"X A: b",
                                            b"Content-Length: 1048576"], b"x" * (1 << 20))),
        ], 400)

    def test_bad_request_after_good_ones_on_a_connection(self):
        """Pipelined: the good requests before the bad one are answered,
        then the 400, then the close."""
        be, kg = self.proxy()
        s = self.connect(kg.port)
        s.sendall(request("GET", "/size/3") + request("GET", "/size/4") +
                  head([b"GET / HTTP/1.1", H, b"X A: b"]) + request("GET", "/size/5"))
        rd = Reader(s, timeout=3)
        self.assertEqual(rd.response().body, b"abc")
        self.assertEqual(rd.response().body, b"abcd")
        self.assert_kage_error(rd.response(), 400)
        self.assertTrue(rd.at_eof(3))
        self.assertEqual(count(be.port)["requests"], 2)


class SlowClients(ErrorCase):
    def test_408_stalled_mid_request(self):
        """Clients that stop mid-head or mid-body, on new and on used
        connections, all at once: each gets a 408 after about
        --client-timeout, then the close."""
        be, kg = self.proxy("--client-timeout", "1")
        used = self.connect(kg.port)
        rd = Reader(used)
        used.sendall(request("GET", "/size/3"))
        self.assertEqual(rd.response().body, b"abc")
        stalls = [
            ("first byte only", None, b"G"),
            ("mid head", None, b"GET / HTTP/1.1\r\nHost: t\r\n"),
            ("mid body", None, request("POST", "/echo", headers=[("Content-Length", "10")]) + b"abc"),
            ("mid chunk", None, request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) +
             b"5\r\nhel"),
            ("mid chunk size line", None, request("POST", "/echo", headers=[("Transfer-Encoding",
                                                                               "chunked")]) + b"5"),
            ("second request mid head", (used, rd), b"GET /size/4 HTTP/1.1\r\nHo"),
        ]
        started = []
        for name, conn, raw in stalls:
            s, r = conn if conn else (self.connect(kg.port), None)
            s.sendall(raw)
            started.append((name, s, r or Reader(s), time.monotonic()))
        for name, s, r, t0 in started:
            with self.subTest(name):
                r.timeout = max(0.1, t0 + 3.5 - time.monotonic())
                resp = r.response()
                took = time.monotonic() - t0
                self.assert_kage_error(resp, 408)
                self.assertGreaterEqual(took, 0.7)
                self.assertLessEqual(took, 3.0)
                self.assertTrue(r.at_eof(2))
        self.assertEqual(count(be.port)["requests"], 1)

    def test_408_slowloris(self):
        """A head trickling in a byte every 0.25 s is a client too slow
        sending a request: --client-timeout bounds the time a request head
        may take, not only the silence between two bytes."""
        be, kg = self.proxy("--client-timeout", "1")
        s = self.connect(kg.port)
        raw = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Slow: " + b"a" * 100
        t0 = time.monotonic()
        got = b""
        s.setblocking(False)
        for i in range(len(raw)):
            try:
                s.send(raw[i:i + 1])
            except OSError:
                break
            time.sleep(0.25)
            try:
                d = s.recv(65536)
            except BlockingIOError:
                d = None
            except OSError:
                break
            if d == b"":
                break
            got += d or b""
            if got or time.monotonic() - t0 > 3.5:
                break
        took = time.monotonic() - t0
        s.setblocking(True)
        rest, eof = read_all(s, 1.5)
        got += rest
        self.assertTrue(got.startswith(b"HTTP/1.1 408 "),
                        f"still trickling after {took:.1f}s with --client-timeout 1: {got[:80]!r}")
        self.assertLess(took, 3.5)
        self.assertTrue(eof)

    def test_silent_connection_closed_without_a_byte(self):
        be, kg = self.proxy("--client-timeout", "1")
        s = self.connect(kg.port)
        t0 = time.monotonic()
        data, eof = read_all(s, 4)
        took = time.monotonic() - t0
        self.assertTrue(eof, "a connection that never sent a byte was not closed")
        self.assertEqual(data, b"")
        self.assertGreaterEqual(took, 0.7)
        self.assertLessEqual(took, 3.0)

    def test_idle_keepalive_closed_silently(self):
        be, kg = self.proxy("--client-timeout", "1")
        s = self.connect(kg.port)
        rd = Reader(s)
        for _ in range(2):
            # Activity within the timeout keeps it open.
            s.sendall(request("GET", "/size/3"))
            self.assertEqual(rd.response().body, b"abc")
            time.sleep(0.6)
        t0 = time.monotonic()
        data, eof = read_all(s, 4)
        took = time.monotonic() - t0
        self.assertTrue(eof, "an idle keep-alive connection was not closed")
        self.assertEqual(data, b"", "an idle close must be silent")
        self.assertLessEqual(took, 3.0)


class MasterFailures(ErrorCase):
    threads = True

    def test_502_master_refuses(self):
        port = free_port()
        kg = self.kage("--backend-timeout", "2", master=("production", port))
        s = self.connect(kg.port)
        rd = Reader(s, timeout=4)
        t0 = time.monotonic()
        s.sendall(request("GET", "/"))
        r = rd.response()
        self.assert_kage_error(r, 502, closes=False)
        self.assertLess(time.monotonic() - t0, 1.5, "a refused connect is not a timeout")
        # The request was complete: the connection may go on, consistently.
        self.assert_consistent(s, rd, r, expect_status=502)

    def _one(self, kg, target, timeout=4):
        s = self.connect(kg.port)
        rd = Reader(s, timeout=timeout)
        s.sendall(request("GET", target))
        return s, rd, rd.response()

    def test_502_master_resets_before_answering(self):
        be, kg = self.proxy()
        s, rd, r = self._one(kg, "/?reset=before")
        self.assert_kage_error(r, 502, closes=False)
        self.assert_consistent(s, rd, r, expect_status=200)

    def test_502_master_sends_garbage(self):
        be, kg = self.proxy()
        s, rd, r = self._one(kg, "/?garbage=1")
        self.assert_kage_error(r, 502, closes=False)
        self.assert_consistent(s, rd, r, expect_status=200)

    def test_502_malformed_framing_from_master(self):
        be, kg = self.proxy()
        for stage in ("cl_te", "two_cl"):
            with self.subTest(stage):
                s, rd, r = self._one(kg, f"/?bad_framing={stage}&size=100")
                self.assert_kage_error(r, 502, closes=False)
                self.assert_consistent(s, rd, r, expect_status=200)

    def _failed_response(self, kg, target, full_len):
        """A master failure that may come after the head: either a 502 (the
        failure was seen before anything went out), or the head and a short
        body, then EOF, and never a second status line."""
        s = self.connect(kg.port)
        s.sendall(request("GET", target))
        data, eof = read_all(s, 3)
        self.assertTrue(data.startswith(b"HTTP/1.1 "), data[:80])
        status = int(data[9:12])
        if status == 502:
            rd = Reader(s)
            rd.buf = bytearray(data)
            r = rd.response()
            self.assert_kage_error(r, 502, closes=False)
            if "close" in (r.header("Connection") or "").lower():
                self.assertTrue(eof)
            return None
        self.assertEqual(status, 200)
        self.assertTrue(eof, "kage kept the connection after a failed body")
        head_end = data.index(b"\r\n\r\n") + 4
        body = data[head_end:]
        self.assertEqual(data.count(b"HTTP/1."), 1, "a second status line after the failure")
        return data[:head_end], body

    def test_malformed_chunk_from_master(self):
        be, kg = self.proxy()
        got = self._failed_response(kg, "/size/100?chunked=1&bad_framing=bad_chunk", 100)
        if got:
            self.assertNotIn(b"0\r\n\r\n", got[1], "the client got a complete chunked body")

    def test_short_body_from_master(self):
        be, kg = self.proxy()
        for size in (100000, 0):
            with self.subTest(size=size):
                got = self._failed_response(kg, f"/size/{size}?bad_framing=short", size)
                if got:
                    self.assertIn(b"Content-Length: %d" % max(size, 1), got[0])
                    self.assertLess(len(got[1]), max(size, 1))

    def test_long_body_from_master_does_not_smuggle(self):
        """Extra bytes after master's response are not a response to the
        client's next request."""
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = Reader(s, timeout=4)
        s.sendall(request("GET", "/size/10?bad_framing=long"))
        r = rd.response()
        self.assertEqual((r.status, r.body), (200, pattern(10)))
        if "close" in (r.header("Connection") or "").lower():
            self.assertTrue(rd.at_eof(3))
            s = self.connect(kg.port)
            rd = Reader(s, timeout=4)
        for n in (5, 6):
            s.sendall(request("GET", f"/size/{n}"))
            r = rd.response()
            self.assertIsNone(r.header("X-Smuggled"))
            self.assertEqual((r.status, r.body), (200, pattern(n)))

    def test_master_resets_mid_body(self):
        """Once response bytes went out, a master failure closes the client
        connection: a truncated body, EOF, no second status line."""
        be, kg = self.proxy()
        for q in ("size=200000", "size=200000&chunked=1"):
            with self.subTest(q):
                s = self.connect(kg.port)
                s.sendall(request("GET", f"/?{q}&reset=body"))
                data, eof = read_all(s, 3)
                self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:80])
                self.assertTrue(eof, "kage kept the connection after master reset mid-body")
                self.assertEqual(data.count(b"HTTP/1."), 1, "a second status line after the head")
                head_end = data.index(b"\r\n\r\n") + 4
                body = data[head_end:]
                if b"chunked" in data[:head_end]:
                    self.assertNotIn(b"\r\n0\r\n\r\n", body, "the chunked body was terminated")
                    self.assertLess(len(body), 200000)
                else:
                    self.assertIn(b"Content-Length: 200000", data[:head_end])
                    self.assertLess(len(body), 200000)
                    self.assertEqual(body, pattern(len(body)))

    def test_master_resets_after_headers(self):
        be, kg = self.proxy()
        got = self._failed_response(kg, "/size/1000?reset=headers", 1000)
        if got:
            self.assertLess(len(got[1]), 1000)

    def test_504_master_hangs(self):
        be, kg = self.proxy("--backend-timeout", "1")
        s = self.connect(kg.port)
        rd = Reader(s, timeout=5)
        t0 = time.monotonic()
        s.sendall(request("GET", "/?hang=1"))
        r = rd.response()
        took = time.monotonic() - t0
        self.assert_kage_error(r, 504, closes=False)
        self.assertGreaterEqual(took, 0.8)
        self.assertLessEqual(took, 3.0)
        self.assert_consistent(s, rd, r, expect_status=200)

    def test_504_then_kage_still_serves(self):
        """A hung master connection is abandoned, not reused."""
        be, kg = self.proxy("--backend-timeout", "1")
        s = self.connect(kg.port)
        rd = Reader(s, timeout=5)
        s.sendall(request("GET", "/?hang=1", headers=[("Connection", "close")]))
        r = rd.response()
        self.assert_kage_error(r, 504)
        self.assertTrue(rd.at_eof(3))
        for i in range(3):
            s = self.connect(kg.port)
            rd = Reader(s, timeout=3)
            s.sendall(request("GET", f"/size/{i + 1}"))
            self.assertEqual(rd.response().body, pattern(i + 1))


class Retry(ErrorCase):
    @staticmethod
    def _handler(conn, index):
        """Connection 0 answers its first request, then drops the second
        without a byte; other connections answer everything."""
        if index == 0:
            if conn.read_request() is None:
                return
            conn.send(ok_response(b"first"))
            conn.read_request()
            return
        while conn.read_request() is not None:
            conn.send(ok_response(b"fresh"))

    def _setup(self):
        sb = ScriptedBackend(self._handler)
        self.addCleanup(sb.close)
        kg = self.kage("--backend-timeout", "3", master=("production", sb.port))
        s = self.connect(kg.port)
        rd = Reader(s, timeout=5)
        s.sendall(request("GET", "/a"))
        r = rd.response()
        self.assertEqual((r.status, r.body), (200, b"first"))
        return sb, kg, s, rd

    def test_idempotent_request_retried_on_fresh_connection(self):
        sb, kg, s, rd = self._setup()
        s.sendall(request("GET", "/b"))
        r = rd.response()
        self.assertEqual((r.status, r.body), (200, b"fresh"))
        self.assertEqual(sb.connections, 2)
        self.assertIn(b"GET /b ", sb.received[0])
        self.assertIn(b"GET /b ", sb.received[1])

    def test_post_never_retried(self):
        sb, kg, s, rd = self._setup()
        s.sendall(request("POST", "/b", body=b"pay once"))
        r = rd.response()
        with sb.lock:
            saw = [i for i, data in enumerate(sb.received) if b"POST /b " in data]
        self.assertEqual(len(saw), 1, f"the POST reached master on connections {saw}")
        if saw == [0]:
            # It went out on the reused connection, which dropped it.
            self.assert_kage_error(r, 502, closes=False)
        else:
            # kage sent it on a fresh connection, which answered.
            self.assertEqual((r.status, r.body), (200, b"fresh"))
