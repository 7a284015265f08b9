"""kage as a process: graceful drain on SIGTERM/SIGINT, the drain timeout,
SIGHUP and the access log, flag errors, --check, --help, --version, the
debug summary's zero-copy line, --max-conns, --pin-cpus, and a machine
without io_uring."""
import ctypes
import errno
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from harness import Reader, binary, exchange, request, wait_for, count
from support import KageCase, pattern, read_all


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def refused(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
    except (ConnectionRefusedError, ConnectionResetError):
        # a connection that reached the backlog as the listener closed is
        # reset: as good a refusal (seen under ASan, slower to close)
        return True
    s.close()
    return False


class Drain(KageCase):
    threads = True

    def test_sigterm_finishes_in_flight_then_exits_0(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        t0 = time.monotonic()
        s.sendall(request("GET", "/size/100?delay=1500"))
        # The request is with master (counted on arrival, answered later).
        self.assertTrue(wait_for(lambda: count(be.port)["requests"] == 1, 2))
        kg.signal(signal.SIGTERM)
        kg.stopped_by_test = True
        self.assertTrue(wait_for(lambda: refused(kg.port), 1.0),
                        "kage still accepts connections after SIGTERM")
        rd = Reader(s, timeout=4)
        r = rd.response()
        self.assertEqual((r.status, r.body), (200, pattern(100)))
        self.assertGreaterEqual(time.monotonic() - t0, 1.4)
        # kage is going away: it says so and closes.
        self.assertEqual((r.header("Connection") or "").lower(), "close")
        self.assertTrue(rd.at_eof(2))
        self.assertEqual(kg.wait(5), 0, kg.stderr())

    def test_sigint_drains_too(self):
        be, kg = self.proxy()
        s = self.connect(kg.port)
        s.sendall(request("GET", "/size/10?delay=500"))
        self.assertTrue(wait_for(lambda: count(be.port)["requests"] == 1, 2))
        kg.signal(signal.SIGINT)
        kg.stopped_by_test = True
        r = Reader(s, timeout=4).response()
        self.assertEqual((r.status, r.body), (200, pattern(10)))
        self.assertEqual(kg.wait(5), 0, kg.stderr())

    def test_idle_connections_do_not_hold_the_drain(self):
        """Idle keep-alive clients are closed at once: kage exits promptly,
        not after --client-timeout."""
        be, kg = self.proxy("--client-timeout", "30")
        socks = [self.connect(kg.port) for _ in range(3)]
        for s in socks:
            self.assertEqual(exchange(s, request("GET", "/size/2")).body, b"ab")
        t0 = time.monotonic()
        kg.signal(signal.SIGTERM)
        kg.stopped_by_test = True
        self.assertEqual(kg.wait(3), 0, kg.stderr())
        self.assertLess(time.monotonic() - t0, 2.0)
        for s in socks:
            data, eof = read_all(s, 1)
            self.assertEqual((data, eof), (b"", True))

    def test_drain_timeout_bounds_a_hung_request(self):
        be, kg = self.proxy("--drain-timeout", "1")
        s = self.connect(kg.port)
        s.sendall(request("GET", "/?hang=1"))
        self.assertTrue(wait_for(lambda: count(be.port)["requests"] == 1, 2))
        t0 = time.monotonic()
        kg.signal(signal.SIGTERM)
        kg.stopped_by_test = True
        rc = kg.wait(5)
        took = time.monotonic() - t0
        self.assertIsNotNone(rc, "kage still running 5 s after SIGTERM with --drain-timeout 1")
        self.assertLess(took, 3.0)
        self.assertGreaterEqual(took, 0.8, "kage did not wait for the in-flight request")
        self.assertEqual(rc, 0, kg.stderr())
        # The client is not left hanging: whatever it got, the connection ends.
        data, eof = read_all(s, 2)
        self.assertTrue(eof)
        if data:
            self.assertRegex(data[:12], rb"^HTTP/1\.1 5\d\d")


class AccessLog(KageCase):
    def _lines(self, path):
        try:
            with open(path) as f:
                return [l for l in f.read().splitlines() if l.strip()]
        except FileNotFoundError:
            return []

    def test_one_line_per_request(self):
        with tempfile.TemporaryDirectory(prefix="kage-alog-") as d:
            path = os.path.join(d, "access.log")
            be, kg = self.proxy("--access-log", path)
            s = self.connect(kg.port)
            rd = Reader(s)
            reqs = [("GET", "/first?x=1", 200), ("POST", "/echo", 200), ("GET", "/missing?status=404", 404),
                    ("HEAD", "/size/5", 200), ("DELETE", "/thing/7", 200)]
            for method, target, status in reqs:
                s.sendall(request(method, target, body=b"data" if method == "POST" else b""))
                self.assertEqual(rd.response(head_request=method == "HEAD").status, status)
            self.assertTrue(wait_for(lambda: len(self._lines(path)) >= len(reqs), 3))
            time.sleep(0.1)
            lines = self._lines(path)
            self.assertEqual(len(lines), len(reqs), lines)
            for line, (method, target, status) in zip(lines, reqs):
                tokens = line.replace('"', " ").split()
                self.assertIn(method, tokens, line)
                self.assertIn(target, tokens, line)
                self.assertIn(str(status), tokens, line)
            self.assertEqual(kg.stop(), 0)
            # Nothing of the access log goes to the diff log (stdout).
            self.assertNotIn("/first", kg.stdout())

    def test_sighup_reopens_the_access_log(self):
        with tempfile.TemporaryDirectory(prefix="kage-alog-") as d:
            path = os.path.join(d, "access.log")
            be, kg = self.proxy("--access-log", path)
            s = self.connect(kg.port)
            self.assertEqual(exchange(s, request("GET", "/before-rotate")).status, 200)
            self.assertTrue(wait_for(lambda: any("/before-rotate" in l for l in self._lines(path)), 3))
            os.rename(path, path + ".1")
            kg.signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: os.path.exists(path), 3), "SIGHUP did not reopen the log")
            self.assertEqual(exchange(s, request("GET", "/after-rotate")).status, 200)
            self.assertTrue(wait_for(lambda: any("/after-rotate" in l for l in self._lines(path)), 3),
                            "the request after SIGHUP is not in the new file")
            old = self._lines(path + ".1")
            new = self._lines(path)
            self.assertEqual(len(old), 1, old)
            self.assertIn("/before-rotate", old[0])
            self.assertEqual(len(new), 1, new)
            self.assertEqual(kg.stop(), 0)
            self.assertIn("SIGHUP", kg.stderr())


class CommandLine(KageCase):
    def _bad(self, argv, names_flag, port):
        rc, out, err = self.run_kage(*argv, timeout=5)
        self.assertEqual(rc, 2, f"{argv}: {err}")
        self.assertEqual(out, "")
        lines = err.strip("\n").split("\n")
        self.assertEqual(len(lines), 1, f"{argv}: {err!r}")
        self.assertIn(names_flag, lines[0])
        self.assertTrue(refused(port), "something listens after a bad command line")
        return lines[0]

    def test_bad_flags_exit_2_with_one_line(self):
        port = free_port()
        listen = ["--listen", f"127.0.0.1:{port}"]
        master = ["--master", "production=127.0.0.1:9"]
        cases = [
            (listen + master + ["--threads", "x"], "--threads"),
            (listen + master + ["--threads", "0"], "--threads"),
            (master + ["--listen", "nope"], "--listen"),
            (master + ["--listen", "127.0.0.1:99999"], "--listen"),
            (listen + master + ["--bogus"], "--bogus"),
            (listen, "--master"),
            (listen + master + ["--client-timeout", "soon"], "--client-timeout"),
            (listen + master + ["--shadow", "production=127.0.0.1:10"], "production"),
        ]
        for argv, flag in cases:
            with self.subTest(" ".join(argv[-2:])):
                self._bad(argv, flag, port)

    def test_port_in_use(self):
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        rc, out, err = self.run_kage("--master", "production=127.0.0.1:9", "--listen",
                                     f"127.0.0.1:{port}", "--threads", "2", timeout=5)
        self.assertEqual(rc, 2, err)
        lines = err.strip("\n").split("\n")
        self.assertEqual(len(lines), 1, err)
        self.assertIn("--listen", lines[0])
        self.assertIn("in use", lines[0].lower())

    def test_check_prints_resolved_config(self):
        port = free_port()
        rc, out, err = self.run_kage("--check", "--master", "production=127.0.0.1:9", "--listen",
                                     f"127.0.0.1:{port}", "--threads", "3", "--client-timeout", "4",
                                     timeout=5)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^master\s*=\s*production=127\.0\.0\.1:9$")
        self.assertRegex(out, rf"(?m)^listen\s*=\s*127\.0\.0\.1:{port}$")
        self.assertRegex(out, r"(?m)^threads\s*=\s*3$")
        self.assertRegex(out, r"(?m)^client-timeout\s*=\s*4$")
        # Defaults are resolved too.
        self.assertRegex(out, r"(?m)^drain-timeout\s*=\s*10$")
        self.assertTrue(refused(port))
        rc, out, err = self.run_kage("--check", "--master", "production=127.0.0.1:9", "--threads", "x",
                                     timeout=5)
        self.assertEqual(rc, 2)
        self.assertIn("--threads", err)

    def test_help_and_version(self):
        for flag in ("--help", "-h"):
            rc, out, err = self.run_kage(flag, timeout=5)
            self.assertEqual((rc, err), (0, ""))
            self.assertIn("--master", out)
            self.assertIn("--client-timeout", out)
        for flag in ("--version", "-V"):
            rc, out, err = self.run_kage(flag, timeout=5)
            self.assertEqual((rc, err), (0, ""))
            self.assertRegex(out, r"^kage \d+\.\d+")


class Runtime(KageCase):
    def test_debug_summary_reports_zero_copy(self):
        be, kg = self.proxy("-d")
        s = self.connect(kg.port)
        rd = Reader(s)
        for _ in range(3):
            s.sendall(request("GET", "/size/1000"))
            self.assertEqual(rd.response().body, pattern(1000))
        self.assertEqual(kg.stop(), 0)
        lines = [l for l in kg.stderr().splitlines() if "zero-copy" in l]
        self.assertEqual(len(lines), 1, kg.stderr()[-2000:])
        m = re.search(r"zero-copy:\D*?(\d+)\D.*?(\d+) copied", lines[0])
        self.assertIsNotNone(m, lines[0])
        self.assertEqual((int(m.group(1)), int(m.group(2))), (3000, 0), lines[0])

    def test_debug_summary_counts_chunked_and_large_bodies(self):
        be, kg = self.proxy("-d")
        s = self.connect(kg.port)
        rd = Reader(s)
        total = 0
        for target, n in (("/size/300000", 300000), ("/size/50000?chunked=1", 50000)):
            s.sendall(request("GET", target))
            self.assertEqual(len(rd.response().body), n)
            total += n
        self.assertEqual(kg.stop(), 0)
        m = re.search(r"zero-copy:\D*?(\d+)\D.*?(\d+) copied", kg.stderr())
        self.assertIsNotNone(m, kg.stderr()[-2000:])
        self.assertEqual(int(m.group(2)), 0, m.group(0))
        # Chunk framing may count as body bytes; the payload is all there.
        self.assertGreaterEqual(int(m.group(1)), total, m.group(0))
        self.assertLess(int(m.group(1)), total + 4096, m.group(0))

    def test_max_conns(self):
        be, kg = self.proxy("--max-conns", "5")
        socks = [self.connect(kg.port) for _ in range(5)]
        for s in socks:
            self.assertEqual(exchange(s, request("GET", "/size/1")).body, b"a")
        sixth = self.connect(kg.port)  # the kernel completes the handshake
        sixth.sendall(request("GET", "/size/6"))
        rd6 = Reader(sixth, timeout=1)
        with self.assertRaises(TimeoutError, msg="a 6th connection was served with --max-conns 5"):
            rd6.response()
        # The five still work meanwhile.
        self.assertEqual(exchange(socks[1], request("GET", "/size/2")).body, b"ab")
        socks[0].close()
        rd6.timeout = 3
        r = rd6.response()
        self.assertEqual((r.status, r.body), (200, pattern(6)))

    def test_two_threads_pinned(self):
        if (os.cpu_count() or 1) < 2:
            self.skipTest("needs 2 CPUs")
        be, kg = self.proxy("--pin-cpus", "0-1", threads=2)
        socks = [self.connect(kg.port) for _ in range(20)]
        for s in socks:
            s.sendall(request("GET", "/size/100"))
        for s in socks:
            self.assertEqual(Reader(s).response().body, pattern(100))
        allowed = []
        for tid in os.listdir(f"/proc/{kg.pid}/task"):
            with open(f"/proc/{kg.pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        allowed.append(line.split()[1])
        self.assertIn("0", allowed, allowed)
        self.assertIn("1", allowed, allowed)


class NoIoUring(KageCase):
    def test_noring_tool_blocks_io_uring_setup(self):
        """The wrapper itself: io_uring_setup fails as asked, nothing else does."""
        noring = binary("tools/noring")
        code = ("import ctypes,sys; libc=ctypes.CDLL(None,use_errno=True); p=ctypes.create_string_buffer(120);"
                "r=libc.syscall(425,1,p); print(r, ctypes.get_errno())")
        for mode, err in (("--eperm", errno.EPERM), ("--enosys", errno.ENOSYS)):
            out = subprocess.run([noring, mode, "python3", "-c", code], capture_output=True, text=True,
                                 timeout=10)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout.split(), ["-1", str(err)])
        # Without the wrapper io_uring works here (or this test says nothing).
        out = subprocess.run(["python3", "-c", code], capture_output=True, text=True, timeout=10)
        self.assertNotEqual(out.stdout.split()[1:], [str(errno.ENOSYS)])

    def test_kage_explains_missing_io_uring(self):
        noring = binary("tools/noring")
        for mode, name in (("--eperm", "EPERM"), ("--enosys", "ENOSYS")):
            with self.subTest(name):
                port = free_port()
                out = subprocess.run([noring, mode, binary("kage"), "--master", "production=127.0.0.1:9",
                                      "--listen", f"127.0.0.1:{port}"],
                                     capture_output=True, text=True, timeout=10)
                self.assertEqual(out.returncode, 1, out.stderr)
                self.assertEqual(out.stdout, "")
                lines = out.stderr.strip("\n").split("\n")
                self.assertEqual(len(lines), 1, out.stderr)
                self.assertIn("io_uring", lines[0])
                self.assertIn(name, lines[0])
                # A remedy, not only the failure.
                self.assertRegex(lines[0], r"\b(allow|enable|run)\b")
                self.assertTrue(refused(port))
