"""Integration test harness: real processes on 127.0.0.1, real clients.

Every process a test starts is stopped by its PID when the test ends
(SIGTERM, then SIGKILL after a grace period). Ports are chosen by the
kernel (port 0) and read back from the process's "listening on" line, so
tests never collide with each other or with anything else on the machine.
"""
import base64
import json
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

BUILD = os.environ.get("KAGE_BUILD", "build/release")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTEN_RE = re.compile(rb"listening on [^ ]*:(\d+)")


def binary(name):
    path = os.path.join(ROOT, BUILD, name)
    if not os.path.exists(path):
        raise unittest.SkipTest(f"{path} not built")
    return path


class Proc:
    """A child process whose stderr goes to a file we can read at any time."""

    def __init__(self, argv, name, env=None, wait_listen=True, timeout=10.0):
        self.argv = argv
        self.name = name
        self.errfile = tempfile.NamedTemporaryFile(prefix=f"kage-{name}-", suffix=".err", delete=False)
        self.outfile = tempfile.NamedTemporaryFile(prefix=f"kage-{name}-", suffix=".out", delete=False)
        self.proc = subprocess.Popen(argv, stdout=self.outfile, stderr=self.errfile,
                                     stdin=subprocess.DEVNULL, env=env)
        self.pid = self.proc.pid
        self.port = None
        self.returncode = None
        if wait_listen:
            self.port = self._wait_listening(timeout)

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.stderr_bytes())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}: "
                                     f"{self.stderr()}")
            time.sleep(0.01)
        self.stop()
        raise AssertionError(f"{self.name} did not listen within {timeout}s: {self.stderr()}")

    def stderr_bytes(self):
        with open(self.errfile.name, "rb") as f:
            return f.read()

    def stderr(self):
        return self.stderr_bytes().decode("utf-8", "replace")

    def stdout(self):
        with open(self.outfile.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=15.0):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit status."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self.returncode = self.proc.returncode
        return self.returncode

    def cleanup(self):
        self.stop()
        for f in (self.errfile, self.outfile):
            f.close()
            try:
                os.unlink(f.name)
            except OSError:
                pass

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))


class Case(unittest.TestCase):
    """Base class: tracks processes and sockets and cleans them up."""

    threads = False  # set on classes the ThreadSanitizer job must run

    def setUp(self):
        self._procs = []
        self._socks = []
        if os.environ.get("KAGE_THREADS_ONLY") and not self.threads:
            self.skipTest("not a threads test")

    def tearDown(self):
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        problems = []
        for p in reversed(self._procs):
            already = p.proc.poll() is not None
            rc = p.stop()
            err = p.stderr()
            if p.name == "kage" and not getattr(p, "expect_failure", False):
                # kage must drain and exit 0, and no sanitizer may speak.
                if rc != 0:
                    problems.append(f"kage exited with {rc}" +
                                    (" before the test ended" if already else ""))
                for marker in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                               "WARNING: ThreadSanitizer"):
                    if marker in err:
                        problems.append(f"kage stderr has {marker!r}:\n{err[-4000:]}")
            p.cleanup()
        if problems:
            self.fail("; ".join(problems))

    # --- processes -------------------------------------------------------
    def backend(self, *args, name="backend", threads=1):
        argv = [binary("tools/testbackend"), "--listen", "127.0.0.1:0", "--name", name,
                "--threads", str(threads), "--quiet", *args]
        p = Proc(argv, name)
        self._procs.append(p)
        return p

    def kage(self, *args, master=None, shadows=(), threads=1, wait=True, env=None):
        argv = [binary("kage"), "--listen", "127.0.0.1:0", "--threads", str(threads)]
        if master is not None:
            argv += ["--master", f"{master[0]}=127.0.0.1:{master[1]}"]
        for name, port, *opts in shadows:
            spec = f"{name}=127.0.0.1:{port}"
            if opts:
                spec += "," + ",".join(opts)
            argv += ["--shadow", spec]
        argv += list(args)
        p = Proc(argv, "kage", env=env, wait_listen=wait)
        self._procs.append(p)
        return p

    def run_kage(self, *args, timeout=10):
        """Run kage to completion (flag errors, --check, --help)."""
        r = subprocess.run([binary("kage"), *args], capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")

    def proxy(self, *args, threads=1, backend_args=(), **kw):
        """A test backend and kage in front of it."""
        be = self.backend(*backend_args)
        kg = self.kage(*args, master=("production", be.port), threads=threads, **kw)
        return be, kg

    # --- sockets ----------------------------------------------------------
    def connect(self, port, timeout=5.0):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socks.append(s)
        return s


# --- raw HTTP for tests ---------------------------------------------------------


class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.raw = raw

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def headers_named(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:80]!r}>"


class Reader:
    """Reads HTTP responses off a socket, exactly as sent."""

    def __init__(self, sock, timeout=5.0):
        self.sock = sock
        self.buf = bytearray()	# amortised appends: multi-MiB bodies stay linear
        self.timeout = timeout
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], self.timeout)
        if not r:
            raise TimeoutError("no data from kage within %.1fs" % self.timeout)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed mid-line: %r" % self.buf[:200])
        line, rest = self.buf.split(b"\r\n", 1)
        self.buf = bytearray(rest)
        return bytes(line)

    def _exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed after %d of %d body bytes" % (len(self.buf), n))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def at_eof(self, wait=2.0):
        """True when the peer closed (with nothing more buffered)."""
        old, self.timeout = self.timeout, wait
        try:
            while not self.eof:
                if not self._fill():
                    break
        except TimeoutError:
            return False
        finally:
            self.timeout = old
        return self.eof and not self.buf

    def response(self, head_request=False):
        start = len(self.buf)
        line = self._line()
        version, status, *reason = line.decode("latin-1").split(" ", 2)
        headers = []
        while True:
            h = self._line()
            if not h:
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name, value.strip()))
        status = int(status)
        lower = {n.lower(): v for n, v in headers}
        body = b""
        if head_request or status in (204, 304) or 100 <= status < 200:
            pass
        elif "transfer-encoding" in lower:
            assert lower["transfer-encoding"].lower() == "chunked", lower
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                assert self._exact(2) == b"\r\n"
        elif "content-length" in lower:
            body = self._exact(int(lower["content-length"]))
        else:
            while self._fill():
                pass
            body, self.buf = bytes(self.buf), bytearray()
        return Response(version, status, reason[0] if reason else "", headers, body, None)


def request(method, target, headers=(), body=b"", version="HTTP/1.1", host="test"):
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{n}: {v}" for n, v in headers]
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body, size=7):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def exchange(sock, raw, head_request=False):
    sock.sendall(raw)
    return Reader(sock).response(head_request=head_request)


def count(port):
    """The test backend's request and connection counters."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        r = exchange(s, request("GET", "/__count"))
        return r.json()
    finally:
        s.close()


def reset_count(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        exchange(s, request("GET", "/__reset"))
    finally:
        s.close()


def wait_for(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    return predicate()


def diff_records(proc):
    """The JSON lines kage wrote to stdout (its diff log)."""
    out = []
    for line in proc.stdout().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def b64(data):
    return base64.b64decode(data)


class ScriptedBackend:
    """A backend scripted in Python, byte by byte, for what the C test
    backend cannot do. `handler(conn, index)` runs in a thread per accepted
    connection; `received` keeps every byte each connection sent."""

    def __init__(self, handler):
        self.handler = handler
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.connections = 0
        self.received = []
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                index = self.connections
                self.connections += 1
                self.received.append(b"")
            threading.Thread(target=self._run, args=(conn, index), daemon=True).start()

    def _run(self, conn, index):
        try:
            self.handler(ScriptedConn(self, conn, index), index)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass


class ScriptedConn:
    def __init__(self, backend, sock, index):
        self.backend = backend
        self.sock = sock
        self.index = index
        self.buf = b""
        sock.settimeout(10)

    def read_request(self):
        """Read one request head (and a Content-Length body); None on EOF."""
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
            with self.backend.lock:
                self.backend.received[self.index] += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
        n = int(m.group(1)) if m else 0
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
            with self.backend.lock:
                self.backend.received[self.index] += data
        body, self.buf = self.buf[:n], self.buf[n:]
        return head + b"\r\n\r\n" + body

    def send(self, data):
        self.sock.sendall(data)

    def reset(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


def ok_response(body=b"ok", extra=""):
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body
