#!/usr/bin/env python3
"""A slow HTTP/1.1 origin for the shadow benchmarks (Python stdlib, asyncio).

Answers every request after --delay-ms (default 200) with the body the C test
backend would send: /size/N gives N bytes of "abc...xyz0123456789\\n"
repeated, anything else 1 KiB of it. Keep-alive and pipelining work (answers
leave in order); request bodies (Content-Length) are read and discarded.
/__count answers at once with {"requests":N,"connections":M} (neither counts
/__count or /__reset), /__reset zeroes them, like tools/testbackend.

Prints "listening on HOST:PORT" on stderr once bound; SIGTERM exits 0.
"""
import argparse
import asyncio
import json
import re
import signal
import sys
import time
from collections import deque
from email.utils import formatdate

PATTERN = b"abcdefghijklmnopqrstuvwxyz0123456789\n"
SIZE_RE = re.compile(rb"^/size/(\d+)")
MAX_HEAD = 64 * 1024
MAX_SIZE = 16 * 1024 * 1024

stats = {"requests": 0, "connections": 0}
_bodies = {}
_date = [b"", 0.0]


def body_of(n):
    b = _bodies.get(n)
    if b is None:
        b = (PATTERN * (n // len(PATTERN) + 1))[:n]
        if len(_bodies) < 64:
            _bodies[n] = b
    return b


def http_date():
    now = time.time()
    if now - _date[1] >= 1.0:
        _date[0] = formatdate(now, usegmt=True).encode()
        _date[1] = now
    return _date[0]


def response(status, ctype, body, count, close):
    head = [b"HTTP/1.1 " + status,
            b"Date: " + http_date(),
            b"X-Backend: backend"]
    if count is not None:
        head.append(b"X-Request-Count: %d" % count)
    head.append(b"Content-Type: " + ctype)
    head.append(b"Content-Length: %d" % len(body))
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class Conn(asyncio.Protocol):
    def __init__(self, delay):
        self.delay = delay
        self.buf = bytearray()
        self.skip = 0             # request body bytes still to discard
        self.queue = deque()      # (ready_response, close_after) in order
        self.counted = False
        self.closing = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closing = True

    def data_received(self, data):
        if self.closing:
            return
        self.buf += data
        while True:
            if self.skip:
                n = min(self.skip, len(self.buf))
                del self.buf[:n]
                self.skip -= n
                if self.skip:
                    return
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.transport.close()
                    self.closing = True
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            self.request(head)
            if self.closing:
                return

    def request(self, head):
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            self.transport.close()
            self.closing = True
            return
        target, version = parts[1], parts[2]
        close = version == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                self.skip = int(value or b"0")
            elif name == b"connection":
                if b"close" in value:
                    close = True
                elif b"keep-alive" in value:
                    close = False
        path = target.split(b"?", 1)[0]
        if path in (b"/__count", b"/__reset"):
            if path == b"/__reset":
                stats["requests"] = stats["connections"] = 0
            body = json.dumps(stats).encode() + b"\n"
            self.queue.append((response(b"200 OK", b"application/json", body,
                                        None, close), close))
            # Answered without the delay, but still in order behind the
            # requests before it on this connection.
            if len(self.queue) == 1:
                self.flush_ready()
            return
        stats["requests"] += 1
        if not self.counted:
            self.counted = True
            stats["connections"] += 1
        m = SIZE_RE.match(path)
        n = min(int(m.group(1)), MAX_SIZE) if m else 1024
        resp = response(b"200 OK", b"text/plain", body_of(n),
                        stats["requests"], close)
        item = [None, close]
        self.queue.append(item)
        asyncio.get_running_loop().call_later(self.delay, self._ready, item,
                                              resp)
        if close:
            self.closing = True   # read no further requests

    def _ready(self, item, resp):
        item[0] = resp
        self.flush_ready()

    def flush_ready(self):
        while self.queue and self.queue[0][0] is not None:
            resp, close = self.queue.popleft()
            if self.transport.is_closing():
                self.queue.clear()
                return
            self.transport.write(resp)
            if close:
                self.transport.close()
                self.queue.clear()
                return


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--delay-ms", type=float, default=200.0)
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    delay = args.delay_ms / 1000.0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(delay), host or "127.0.0.1",
                                      int(port), backlog=4096,
                                      reuse_address=True)
    addr = server.sockets[0].getsockname()
    print(f"listening on {addr[0]}:{addr[1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
