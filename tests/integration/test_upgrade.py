"""Upgrade (WebSocket) through kage: the 101 with its Upgrade and
Connection headers, then a byte tunnel both ways; refused upgrades; and
upgrades are never shadowed."""
import base64
import hashlib
import socket
import threading

from harness import Reader, ScriptedBackend, count, diff_records, exchange, request, wait_for
from support import FastReader, KageCase, noise, pattern, read_all

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                          .digest()).decode()


def ws_request(target="/ws", extra=()):
    return request("GET", target, headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                           ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13"),
                                           *extra])


def tokens(value):
    return {t.strip().lower() for t in (value or "").split(",")}


class Upgrade(KageCase):
    threads = True

    def _upgrade(self, port, extra_bytes=b"", target="/ws"):
        s = self.connect(port)
        s.sendall(ws_request(target) + extra_bytes)
        rd = FastReader(s, timeout=5)
        r = rd.response()
        self.assertEqual(r.status, 101, r)
        return s, rd, r

    def _recv_exact(self, rd, n):
        return rd._exact(n)

    def test_101_then_bytes_both_ways_in_order(self):
        be, kg = self.proxy()
        s, rd, r = self._upgrade(kg.port)
        self.assertEqual(r.header("Upgrade", "").lower(), "websocket")
        self.assertIn("upgrade", tokens(r.header("Connection")))
        self.assertEqual(r.header("Sec-WebSocket-Accept"), ACCEPT)
        self.assertIsNone(r.header("Content-Length"))
        self.assertIsNone(r.header("Transfer-Encoding"))
        # One message at a time.
        for i in range(20):
            msg = b"message %d " % i + noise(i * 37, seed=i)
            s.sendall(msg)
            self.assertEqual(self._recv_exact(rd, len(msg)), msg)
        # Several in one write, and bytes that look like HTTP are just bytes.
        burst = [b"one", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\xff" * 100, b"last"]
        s.sendall(b"".join(burst))
        self.assertEqual(self._recv_exact(rd, sum(map(len, burst))), b"".join(burst))

    def test_large_tunnelled_transfer(self):
        be, kg = self.proxy()
        s, rd, r = self._upgrade(kg.port)
        data = noise(1 << 20, seed=42)
        err = []

        def send():
            try:
                for i in range(0, len(data), 65536):
                    s.sendall(data[i:i + 65536])
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        got = self._recv_exact(rd, len(data))
        t.join(5)
        self.assertEqual(err, [])
        self.assertTrue(got == data, "the tunnelled megabyte came back altered")

    def test_bytes_sent_with_the_request_head(self):
        """Bytes right behind the head (before the 101) belong to the tunnel."""
        be, kg = self.proxy()
        early = b"early bytes \x00\x01\x02"
        s, rd, r = self._upgrade(kg.port, extra_bytes=early)
        self.assertEqual(self._recv_exact(rd, len(early)), early)
        s.sendall(b"later")
        self.assertEqual(self._recv_exact(rd, 5), b"later")

    def test_upgrade_after_ordinary_requests_on_the_connection(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        rd = FastReader(s, timeout=5)
        s.sendall(request("GET", "/size/3"))
        self.assertEqual(rd.response().body, b"abc")
        s.sendall(ws_request())
        self.assertEqual(rd.response().status, 101)
        s.sendall(b"ping")
        self.assertEqual(rd._exact(4), b"ping")

    def test_client_close_ends_the_tunnel(self):
        be, kg = self.proxy()
        s, rd, r = self._upgrade(kg.port)
        s.sendall(b"bye")
        self.assertEqual(self._recv_exact(rd, 3), b"bye")
        s.shutdown(socket.SHUT_WR)
        # The backend echoes until its peer closes, then closes: so does kage.
        data, eof = read_all(s, 3)
        self.assertEqual((bytes(rd.buf) + data, eof), (b"", True))
        # kage itself is fine afterwards.
        self.assertEqual(exchange(self.connect(kg.port), request("GET", "/size/4")).body, b"abcd")

    def test_master_close_ends_the_tunnel(self):
        def handler(conn, index):
            if conn.read_request() is None:
                return
            conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\n\r\nhello from master")
            # then close

        sb = ScriptedBackend(handler)
        self.addCleanup(sb.close)
        kg = self.kage(master=("production", sb.port))
        s, rd, r = self._upgrade(kg.port)
        self.assertEqual(self._recv_exact(rd, 17), b"hello from master")
        data, eof = read_all(s, 3)
        self.assertEqual((bytes(rd.buf) + data, eof), (b"", True))

    def test_upgrade_headers_reach_master(self):
        def handler(conn, index):
            req = conn.read_request()
            if req is None:
                return
            conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\n\r\n")
            while True:
                d = conn.sock.recv(65536)
                if not d:
                    return
                conn.send(d)

        sb = ScriptedBackend(handler)
        self.addCleanup(sb.close)
        kg = self.kage(master=("production", sb.port))
        s, rd, r = self._upgrade(kg.port)
        s.sendall(b"x")
        self.assertEqual(self._recv_exact(rd, 1), b"x")
        with sb.lock:
            head = sb.received[0].split(b"\r\n\r\n")[0].decode("latin-1").lower()
        self.assertIn("\r\nupgrade: websocket", head)
        conn_values = [l.split(":", 1)[1] for l in head.split("\r\n") if l.startswith("connection:")]
        self.assertTrue(any("upgrade" in tokens(v) for v in conn_values), head)
        self.assertIn("\r\nsec-websocket-key: " + KEY.lower(), head)


class RefusedUpgrade(KageCase):
    def _refused(self, target, status, kg, extra=b""):
        s = self.connect(kg.port)
        s.sendall(ws_request(target) + extra)
        rd = Reader(s, timeout=4)
        r = rd.response()
        self.assertEqual(r.status, status, r)
        self.assertIsNone(r.header("Upgrade"))
        return s, rd, r

    def _assert_closed(self, s, rd, r):
        """The client asked to leave HTTP and master said no: kage ends the
        connection (anything the client sent after the head was meant for
        the tunnel and cannot be parsed as HTTP)."""
        if rd.at_eof(3):
            self.assertEqual((r.header("Connection") or "").lower(), "close", r.headers)
            return
        s.sendall(request("GET", "/size/3"))
        try:
            nxt = Reader(s, timeout=2).response().status
        except (TimeoutError, EOFError) as e:
            nxt = f"no answer ({e})"
        self.fail(f"connection left open after a refused upgrade, Connection: "
                  f"{r.header('Connection')}; a following request: {nxt}")

    def test_426_from_master_then_closed(self):
        be, kg = self.proxy()
        s, rd, r = self._refused("/chat?status=426", 426, kg)
        self.assertEqual(r.body, b"ok GET /chat?status=426\n")
        self._assert_closed(s, rd, r)

    def test_upgrade_ignored_by_master_then_closed(self):
        """Master answers an Upgrade request with an ordinary 200."""
        be, kg = self.proxy()
        s, rd, r = self._refused("/size/10", 200, kg)
        self.assertEqual(r.body, pattern(10))
        self._assert_closed(s, rd, r)

    def test_refused_upgrade_early_bytes_never_a_request(self):
        """Bytes behind a refused upgrade's head are not an HTTP request to
        master, and the client gets no response to them."""
        be, kg = self.proxy()
        s, rd, r = self._refused("/chat?status=426", 426, kg,
                                 extra=b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
        data, eof = read_all(s, 2)
        self.assertNotIn(b"HTTP/1.1", bytes(rd.buf) + data)
        self.assertEqual(count(be.port)["requests"], 1)


class NotShadowed(KageCase):
    threads = True

    def test_upgrades_are_never_shadowed(self):
        master = self.backend(name="master")
        shadow = self.backend(name="shadow")
        kg = self.kage("--diff-log-all", master=("production", master.port),
                       shadows=[("sandbox", shadow.port)])
        # Control: an ordinary GET is shadowed.
        s = self.connect(kg.port)
        self.assertEqual(exchange(s, request("GET", "/size/5")).status, 200)
        self.assertTrue(wait_for(lambda: count(shadow.port)["requests"] == 1, 3))
        s = self.connect(kg.port)
        s.sendall(ws_request())
        rd = FastReader(s, timeout=5)
        self.assertEqual(rd.response().status, 101)
        s.sendall(b"tunnelled")
        self.assertEqual(rd._exact(9), b"tunnelled")
        s.close()
        self.assertEqual(count(master.port)["requests"], 2)
        self.assertTrue(wait_for(lambda: len(diff_records(kg)) >= 1, 3))
        # Give a wrongly sent shadow time to show up, then check it did not.
        wait_for(lambda: count(shadow.port)["requests"] > 1, 0.5)
        self.assertEqual(count(shadow.port)["requests"], 1)
        self.assertEqual(kg.stop(), 0)
        targets = [r["target"] for r in diff_records(kg)]
        self.assertEqual(targets, ["/size/5"])
