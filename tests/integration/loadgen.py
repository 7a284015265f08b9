#!/usr/bin/env python3
"""Client load in a separate process, so a test's own measurements do not
share a GIL with thousands of sockets. Python 3 stdlib only; 127.0.0.1.

  loadgen.py slowloris --port P --conns N [--interval S] [--max-seconds S]
      N connections each sending a request head one byte at a time (a
      byte per connection every S seconds) until kage answers or closes.
      Prints one JSON line: how each connection ended and when, counted
      from its first byte.

  loadgen.py many --port P --conns N [--window W]
      Opens N connections and holds them; prints "connected N", then on
      the line "go" sends one GET per connection (W at a time, checking
      every body), prints a JSON line of results and keeps the connections
      open; on "close" closes them, prints "closed" and exits.
"""
import argparse
import json
import os
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultkit as fk  # noqa: E402


def slowloris(args):
    head = (b"GET /size/10 HTTP/1.1\r\nHost: t\r\nUser-Agent: slowloris\r\nX-Pad: " + b"a" * 200 +
            b"\r\n\r\n")
    sel = selectors.DefaultSelector()
    conns = []
    t_start = time.monotonic()
    for i in range(args.conns):
        s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = {"sock": s, "sent": 0, "first": None, "end": None, "how": None}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
    connected = time.monotonic()
    open_n = len(conns)
    deadline = connected + args.max_seconds
    next_round = connected
    while open_n and time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_round:
            for c in conns:
                if c["how"] is None and c["sent"] < len(head):
                    try:
                        c["sock"].send(head[c["sent"]:c["sent"] + 1])
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        continue	# seen as a close by the reader below
                    if c["first"] is None:
                        c["first"] = time.monotonic()
                    c["sent"] += 1
            next_round = now + args.interval
        for key, _ in sel.select(max(0.0, min(next_round, deadline) - time.monotonic())):
            c = key.data
            try:
                d = c["sock"].recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                d = b""
            c["end"] = time.monotonic()
            c["how"] = "408" if d.startswith(b"HTTP/1.1 408 ") else ("close" if not d else
                                                                     "other:" + d[:40].decode("latin-1"))
            sel.unregister(c["sock"])
            c["sock"].close()
            open_n -= 1
    out = {"conns": len(conns), "408": 0, "close": 0, "other": [], "open": 0,
           "cut_after_min": None, "cut_after_max": None, "bytes_sent_max": 0,
           "connect_seconds": round(connected - t_start, 3)}
    cuts = []
    for c in conns:
        out["bytes_sent_max"] = max(out["bytes_sent_max"], c["sent"])
        if c["how"] is None:
            out["open"] += 1
            c["sock"].close()
        elif c["how"] in ("408", "close"):
            out[c["how"]] += 1
        else:
            out["other"].append(c["how"])
        if c["how"] and c["first"] is not None:
            cuts.append(c["end"] - c["first"])
    if cuts:
        out["cut_after_min"] = round(min(cuts), 3)
        out["cut_after_max"] = round(max(cuts), 3)
    out["other"] = out["other"][:10]
    print(json.dumps(out), flush=True)


def many(args):
    socks = []
    t0 = time.monotonic()
    for i in range(args.conns):
        socks.append(socket.create_connection(("127.0.0.1", args.port), timeout=30))
    print(f"connected {len(socks)} {time.monotonic() - t0:.2f}", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "go":
            clients = []
            for i in range(len(socks)):
                size = 100 + (i * 7 + args.seed) % 500
                clients.append(fk.Client([(fk.get_request(f"/size/{size}"), fk.expect_pattern(size),
                                           False)], hold=True))
            t1 = time.monotonic()
            fk.run_clients(args.port, clients, window=args.window, timeout=args.timeout, socks=socks)
            errors = [e for c in clients for e in c.errors]
            lat = sorted(x for c in clients for x in c.latencies)
            print(json.dumps({"ok": sum(1 for c in clients if c.done == 1 and not c.errors),
                              "errors": errors[:10], "nerrors": len(errors),
                              "seconds": round(time.monotonic() - t1, 3),
                              "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None}),
                  flush=True)
        elif cmd == "close":
            for s in socks:
                s.close()
            print("closed", flush=True)
            return


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("slowloris")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--conns", type=int, default=1000)
    a.add_argument("--interval", type=float, default=0.25)
    a.add_argument("--max-seconds", type=float, default=15)
    a = sub.add_parser("many")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--conns", type=int, default=1000)
    a.add_argument("--window", type=int, default=100)
    a.add_argument("--timeout", type=float, default=120)
    a.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    {"slowloris": slowloris, "many": many}[args.cmd](args)


if __name__ == "__main__":
    main()
