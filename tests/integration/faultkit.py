"""Fault injection and health checks for kage, shared by test_faults,
test_slow and tools/soak.py. Python 3 stdlib only; 127.0.0.1 only.

- FaultServer: a threaded HTTP/1.1 backend that answers like the C test
  backend (/size/N, "ok METHOD TARGET") and misbehaves on demand: the query
  parameter `sfault=` picks a fault per request (reset before / after the
  head / mid-body, stall mid-body, hang, extra bytes, garbage, short body,
  delay), and `idle_close` closes keep-alive connections idle that long.
  The C test backend ignores `sfault`, so one target can be normal for
  master and faulty for a shadow.
- Process health: CPU time, RSS, a census of kage's descriptors (sockets
  classified through /proc/net/tcp), /metrics scraping, and the exit
  summary lines kage prints on SIGTERM.
"""
import os
import re
import socket
import threading
import time
import zlib

PATTERN = b"abcdefghijklmnopqrstuvwxyz0123456789\n"


def pattern(n):
    """The body of the test backend's /size/N route."""
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


# --- scraping ------------------------------------------------------------------------

ADMIN_RE = re.compile(r"admin on http://[^ ]*:(\d+)/")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def http_get(port, path, timeout=5.0, host="127.0.0.1"):
    """One GET on a fresh connection: (status, {lower-name: value}, body)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        n, _, v = line.partition(":")
        headers[n.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return status, headers, body


class Metrics:
    """A /metrics page: get(name, **labels) for one sample, total(name,
    **labels) for the sum over samples whose labels include those."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = SAMPLE_RE.match(line)
            if not m:
                raise AssertionError(f"malformed sample line: {line!r}")
            labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
            self.samples[(m.group(1), labels)] = float(m.group(3))

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name, **labels):
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= set(ls))

    def by_label(self, name, label):
        out = {}
        for (n, ls), v in self.samples.items():
            if n == name:
                out[dict(ls).get(label)] = out.get(dict(ls).get(label), 0.0) + v
        return out


def scrape(admin_port, timeout=5.0):
    status, _, body = http_get(admin_port, "/metrics", timeout)
    if status != 200:
        raise AssertionError(f"/metrics answered {status}")
    return Metrics(body.decode("utf-8"))


def wait_admin_port(proc, timeout=5.0):
    """The admin port from kage's "admin on http://..." line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = ADMIN_RE.search(proc.stderr())
        if m:
            return int(m.group(1))
        time.sleep(0.02)
    raise AssertionError("no admin line: " + proc.stderr()[-2000:])


# --- the exit summary --------------------------------------------------------------

SERVED_RE = re.compile(r"served (\d+) requests; (\d+) shadowed records compared \((\d+) matched, "
                       r"(\d+) mismatched\), (\d+) dropped, (\d+) lost by the diff log")
SHADOWS_RE = re.compile(r"shadows: (\d+) sent; skipped:(.*)")


def exit_summary(stderr):
    """The counters of kage's exit summary lines, or None without them:
    {'served', 'compared', 'matched', 'mismatched', 'dropped', 'lost',
     'sent', 'skipped': {reason: n}}."""
    m = SERVED_RE.search(stderr)
    if not m:
        return None
    out = dict(zip(("served", "compared", "matched", "mismatched", "dropped", "lost"),
                   map(int, m.groups())))
    s = SHADOWS_RE.search(stderr)
    if s:
        out["sent"] = int(s.group(1))
        out["skipped"] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", s.group(2))}
    return out


# --- process inspection ----------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of the whole process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid):
    """{thread name (tid): cpu seconds} to name a thread that spins."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[f"{name}({tid})"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def tcp_table():
    """{socket inode: (local port, remote port, state)} for every TCP socket."""
    out = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    out[p[9]] = (int(p[1].rsplit(":", 1)[1], 16), int(p[2].rsplit(":", 1)[1], 16),
                                 TCP_STATES.get(p[3], p[3]))
        except OSError:
            pass
    return out


def fd_census(pid, client_ports=(), admin_ports=(), backend_ports=()):
    """What kage's descriptors are, by kind: 'listen', 'client',
    'admin', 'backend:STATE', 'socket:other', 'anon_inode:[eventfd]',
    'pipe', or a file path. Returns {kind: count}."""
    table = None
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            if table is None:
                table = tcp_table()
            ent = table.get(target[8:-1])
            if ent is None:
                kind = "socket:other"
            elif ent[2] == "LISTEN":
                kind = "listen"
            elif ent[0] in client_ports:
                kind = "client"
            elif ent[0] in admin_ports:
                kind = "admin"
            elif ent[1] in backend_ports:
                kind = "backend:" + ent[2]
            else:
                kind = "socket:" + ent[2]
        elif target.startswith("pipe:"):
            kind = "pipe"
        else:
            kind = target
        out[kind] = out.get(kind, 0) + 1
    return out


# --- a backend that misbehaves on demand -------------------------------------------------

FAULTS = ("reset_before", "reset_headers", "reset_body", "stall_body", "hang", "long", "garbage",
          "short", "delay")
SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: 1\r\n\r\nsmuggled"


def query_param(target, name):
    q = target.partition("?")[2]
    for kv in q.split("&"):
        k, _, v = kv.partition("=")
        if k == name:
            return v
    return None


def response_body(method, target):
    """What the C test backend answers for /size/N, ?size=N and anything else."""
    path = target.partition("?")[0]
    size = query_param(target, "size")
    if size is not None and size.isdigit():
        return pattern(int(size))
    if path.startswith("/size/") and path[6:].isdigit():
        return pattern(int(path[6:]))
    return f"ok {method} {target}\n".encode("latin-1")


class FaultServer:
    """Threaded HTTP/1.1 backend (one thread per connection).

    Answers like the C test backend's /size/N and default routes with
    Content-Type text/plain, Content-Length framing, keep-alive. A request
    whose target carries `sfault=KIND` gets that fault (FAULTS):
      reset_before   RST without a response byte
      reset_headers  the head, then RST
      reset_body     the head and half the body, then RST
      stall_body     the head and half the body, then silence until the peer closes
      hang           no answer; closes when the peer does
      long           the response, then a smuggled response in the same send
      garbage        an invalid status line, then close
      short          Content-Length of the whole body, half of it, then close
      delay          sleep `sdelay` ms (default 200), then answer normally
    `idle_close` (seconds): close a keep-alive connection that stays idle
    that long between requests. `stats` counts requests and faults.
    """

    def __init__(self, idle_close=None, hold_max=30.0, backlog=1024):
        self.idle_close = idle_close
        self.hold_max = hold_max
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(backlog)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.stats = {"connections": 0, "requests": 0, "idle_closes": 0}
        self.open = set()
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def count(self, key, n=1):
        with self.lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.stats["connections"] += 1
                self.open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def close(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.open)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- one connection ---
    def _serve(self, conn):
        buf = bytearray()
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while not self.stopping:
                req = self._read_request(conn, buf)
                if req is None:
                    return
                self.count("requests")
                if not self._answer(conn, *req):
                    return
        except OSError:
            pass
        finally:
            with self.lock:
                self.open.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _recv(self, conn, buf, first):
        conn.settimeout(self.idle_close if first and self.idle_close else 30.0)
        try:
            d = conn.recv(65536)
        except socket.timeout:
            if first and self.idle_close:
                self.count("idle_closes")
            return False
        if not d:
            return False
        buf += d
        return True

    def _read_request(self, conn, buf):
        """(method, target, headers, body), or None when the peer is gone."""
        while b"\r\n\r\n" not in buf:
            if not self._recv(conn, buf, first=not buf):
                return None
        end = buf.index(b"\r\n\r\n")
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[:end + 4]
        method, target = lines[0].split(" ")[:2]
        headers = {}
        for line in lines[1:]:
            n, _, v = line.partition(":")
            headers[n.strip().lower()] = v.strip()
        body = b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(buf) < n:
                if not self._recv(conn, buf, False):
                    return None
            body = bytes(buf[:n])
            del buf[:n]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                while b"\r\n" not in buf:
                    if not self._recv(conn, buf, False):
                        return None
                i = buf.index(b"\r\n")
                size = int(bytes(buf[:i]).split(b";")[0], 16)
                del buf[:i + 2]
                if size == 0:
                    while True:	# trailers, then the blank line
                        while b"\r\n" not in buf:
                            if not self._recv(conn, buf, False):
                                return None
                        i = buf.index(b"\r\n")
                        line = bytes(buf[:i])
                        del buf[:i + 2]
                        if not line:
                            break
                    break
                while len(buf) < size + 2:
                    if not self._recv(conn, buf, False):
                        return None
                out += buf[:size]
                del buf[:size + 2]
            body = bytes(out)
        return method, target, headers, body

    def _hold(self, conn):
        """Silence until the peer closes (bounded)."""
        conn.settimeout(self.hold_max)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def _reset(self, conn):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

    def _answer(self, conn, method, target, headers, body):
        """Answer one request; False when the connection is over."""
        fault = query_param(target, "sfault")
        rbody = response_body(method, target)
        if method == "POST" and not target.startswith("/size"):
            rbody = b"ok POST %s %d %08x\n" % (target.encode("latin-1"), len(body),
                                               zlib.crc32(body))
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                % len(rbody))
        payload = b"" if method == "HEAD" else rbody
        if fault:
            self.count("fault:" + fault)
        if fault == "reset_before":
            self._reset(conn)
            return False
        if fault == "reset_headers":
            conn.sendall(head)
            time.sleep(0.01)
            self._reset(conn)
            return False
        if fault == "reset_body":
            conn.sendall(head + payload[:len(payload) // 2])
            time.sleep(0.01)
            self._reset(conn)
            return False
        if fault == "stall_body":
            conn.sendall(head + payload[:len(payload) // 2])
            self._hold(conn)
            return False
        if fault == "hang":
            self._hold(conn)
            return False
        if fault == "garbage":
            conn.sendall(b"HTTP/1.1 2x0 OK\r\n\r\n")
            return False
        if fault == "short":
            conn.sendall(head + payload[:len(payload) // 2])
            return False
        if fault == "delay":
            ms = query_param(target, "sdelay")
            time.sleep((int(ms) if ms and ms.isdigit() else 200) / 1000)
        if fault == "long":
            conn.sendall(head + payload + SMUGGLED)
            return True
        conn.sendall(head + payload)
        return True


# --- many clients from one thread (epoll) -------------------------------------------------

class Resp:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


def parse_response(buf, head_request=False):
    """One whole response off the front of `buf` (bytearray): (Resp, bytes
    used), or None when more bytes are needed. Raises ValueError on bytes
    that are not a response."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536:
            raise ValueError("no end of head in 64 KiB")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        n, _, v = line.partition(":")
        headers[n.strip().lower()] = v.strip()
    pos = end + 4
    if head_request or status in (204, 304) or 100 <= status < 200:
        return Resp(status, headers, b""), pos
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            i = buf.find(b"\r\n", pos)
            if i < 0:
                return None
            size = int(bytes(buf[pos:i]).split(b";")[0], 16)
            pos = i + 2
            if size == 0:
                j = buf.find(b"\r\n\r\n", pos - 2)
                if j < 0:
                    return None
                return Resp(status, headers, bytes(body)), j + 4
            if len(buf) < pos + size + 2:
                return None
            body += buf[pos:pos + size]
            pos += size + 2
    n = int(headers.get("content-length", "0"))
    if len(buf) < pos + n:
        return None
    return Resp(status, headers, bytes(buf[pos:pos + n])), pos + n


class Client:
    """One connection's script: requests as (raw bytes, check, head) where
    check(Resp) returns None when the answer is right, else why not.
    depth: requests written ahead of their answers (1: one at a time)."""

    def __init__(self, requests, depth=1, hold=False):
        self.requests = list(requests)
        self.depth = depth
        self.hold = hold	# keep the connection open when done
        self.sock = None
        self.sent = 0
        self.done = 0
        self.out = bytearray()
        self.inbuf = bytearray()
        self.started = []	# send time per request
        self.latencies = []
        self.errors = []
        self.closed = False


def run_clients(port, clients, window=None, timeout=60.0, connect_timeout=10.0, socks=None):
    """Drive every client to completion from this thread. `window`: clients
    with a request outstanding at once (None: all). Connections are made
    first (or taken from `socks`). Returns the clients; errors per client
    say what went wrong (a wrong answer, a close, a stall past `timeout`)."""
    import selectors
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + timeout
    for i, c in enumerate(clients):
        if socks is not None:
            c.sock = socks[i]
        else:
            c.sock = socket.create_connection(("127.0.0.1", port), timeout=connect_timeout)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sock.setblocking(False)
    pending = [c for c in clients if c.requests]
    pending.reverse()
    active = 0
    limit = window or len(pending)

    def feed(c):
        while c.sent < len(c.requests) and c.sent - c.done < c.depth:
            c.out += c.requests[c.sent][0]
            c.started.append(time.monotonic())
            c.sent += 1

    def flush(c):
        while c.out:
            try:
                n = c.sock.send(c.out)
            except BlockingIOError:
                break
            except OSError as e:
                c.errors.append(f"send: {e}")
                return False
            del c.out[:n]
        return True

    def register(c):
        ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
        try:
            sel.modify(c.sock, ev, c)
        except KeyError:
            sel.register(c.sock, ev, c)

    def finish(c):
        nonlocal active
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        active -= 1
        if not c.hold:
            c.sock.close()
            c.closed = True

    def start_more():
        nonlocal active
        while pending and active < limit:
            c = pending.pop()
            active += 1
            feed(c)
            if not flush(c):
                finish(c)
                continue
            register(c)

    start_more()
    while active:
        left = deadline - time.monotonic()
        if left <= 0:
            for key in list(sel.get_map().values()):
                c = key.data
                c.errors.append(f"stalled: {c.done} of {len(c.requests)} answered")
                finish(c)
            break
        for key, mask in sel.select(min(left, 1.0)):
            c = key.data
            if mask & selectors.EVENT_WRITE and not flush(c):
                finish(c)
                continue
            if mask & selectors.EVENT_READ:
                try:
                    d = c.sock.recv(1 << 20)
                except BlockingIOError:
                    d = None
                except OSError as e:
                    c.errors.append(f"recv: {e} after {c.done} answers")
                    finish(c)
                    continue
                if d == b"":
                    c.errors.append(f"closed after {c.done} of {len(c.requests)} answers")
                    finish(c)
                    continue
                if d:
                    c.inbuf += d
                    try:
                        while c.done < c.sent:
                            got = parse_response(c.inbuf, c.requests[c.done][2])
                            if got is None:
                                break
                            r, used = got
                            del c.inbuf[:used]
                            c.latencies.append(time.monotonic() - c.started[c.done])
                            why = c.requests[c.done][1](r)
                            if why:
                                c.errors.append(why)
                            c.done += 1
                    except ValueError as e:
                        c.errors.append(str(e))
                        finish(c)
                        continue
                    if c.done == len(c.requests):
                        if c.inbuf:
                            c.errors.append(f"bytes after the last answer: {bytes(c.inbuf[:80])!r}")
                        finish(c)
                        continue
                    feed(c)
                    if not flush(c):
                        finish(c)
                        continue
            register(c)
        start_more()
    sel.close()
    return clients


def get_request(target, host="t", extra=""):
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1")


def expect_pattern(n, status=200):
    """A check: status and the /size/N body."""
    want = pattern(n)

    def check(r):
        if r.status != status:
            return f"status {r.status}, wanted {status} (size {n})"
        if r.body != want:
            return f"body of {len(r.body)} bytes is not pattern({n})"
        if "x-smuggled" in r.headers:
            return "a smuggled response"
        return None
    return check


def serve_main(argv=None):
    """`python3 faultkit.py serve [--idle-close S]`: a FaultServer in its own
    process. Prints "listening on 127.0.0.1:PORT" on stderr; on SIGTERM
    prints its stats as one JSON line on stdout and exits 0."""
    import argparse
    import json
    import signal
    import sys
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["serve"])
    ap.add_argument("--idle-close", type=float, default=None)
    ap.add_argument("--hold-max", type=float, default=30.0)
    args = ap.parse_args(argv)
    fs = FaultServer(idle_close=args.idle_close, hold_max=args.hold_max)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    print(f"listening on 127.0.0.1:{fs.port}", file=sys.stderr, flush=True)
    while not done.wait(0.5):
        pass
    fs.close()
    with fs.lock:
        print(json.dumps(fs.stats), flush=True)


if __name__ == "__main__":
    serve_main()
