#!/usr/bin/env python3
"""kage's benchmarks (`make bench`): wrk through kage and through nginx, each
against the same test backend measured directly in the same run.

See bench/README.md for what is measured and how to read the output. Python 3
standard library only. All traffic stays on 127.0.0.1; every process this
script starts is stopped by its PID (SIGTERM, then SIGKILL), also on Ctrl-C.
"""
import argparse
import fnmatch
import http.client
import json
import os
import platform
import re
import shlex
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK = os.sysconf("SC_CLK_TCK")
NOFILE = 65536

# Load shapes: wrk script, description.
LOADS = {
    "get1k": ("get_1k.lua", "GET, 1 KiB response"),
    "get64k": ("get_64k.lua", "GET, 64 KiB response"),
    "post4k": ("post_4k.lua", "POST with a 4 KiB body, 1 KiB response"),
    "pipeline16": ("pipeline_16.lua", "GET 1 KiB, 16 requests pipelined per connection"),
}
SHADOWS = {
    "shadow": ("fast", "GET 1 KiB, every request also sent to a fast shadow "
                       "(a second test backend)"),
    "shadow-slow": ("slow", "GET 1 KiB, every request also sent to a shadow that "
                            "answers after 200 ms (testbackend --delay-ms 200)"),
}
QUIET_LIMIT = 15.0      # % of one core of other load we wait to fall under
QUIET_WAIT = 4.0        # seconds we wait for it at most


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    pass


# --------------------------------------------------------------------------
# /proc readers

def proc_stat(pid):
    """(utime+stime ticks, ppid, starttime) of a process, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): field N is rest[N - 3].
    return int(rest[11]) + int(rest[12]), int(rest[1]), int(rest[19])


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[1] == pid:
                out.append((int(d), st[2]))
    return sorted(out)


def sys_cpu():
    """(busy ticks, steal ticks) over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice.
    # irq/softirq ticks are charged to the interrupted process too (tick
    # accounting), so they belong in "busy" when we subtract our processes.
    return v[0] + v[1] + v[2] + v[5] + v[6], (v[7] if len(v) > 7 else 0)


def self_ticks():
    t = os.times()
    return round((t.user + t.system + t.children_user + t.children_system) * CLK)


def vm_status(pid, keys=("VmRSS", "RssAnon", "VmHWM")):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def nofile_limit(pid):
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return line.split()[3]
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------
# Processes

LIVE = []   # every Proc started and not yet stopped, in start order


class Proc:
    """A child process, its stderr collected by a thread, stopped by PID."""

    LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")

    def __init__(self, name, argv, role, stdout=subprocess.DEVNULL):
        self.name, self.argv, self.role = name, argv, role
        self.lines, self.dropped_lines = [], 0
        self.port = None
        self.listening = threading.Event()
        self.extra = []          # (pid, starttime) of children (nginx workers)
        self.killed = False
        # A new session: Ctrl-C reaches only us, and we stop children in order.
        # RLIMIT_NOFILE is raised in this process and inherited (preexec_fn
        # is not safe with the reader threads running).
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                  stderr=subprocess.PIPE, start_new_session=True,
                                  cwd=ROOT)
        self.pid = self.p.pid
        LIVE.append(self)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.p.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if len(self.lines) < 2000:
                self.lines.append(line)
            else:               # keep the first 1000 and the latest 1000
                del self.lines[1000]
                self.lines.append(line)
                self.dropped_lines += 1
            if self.port is None:
                m = self.LISTEN_RE.search(line)
                if m:
                    self.port = int(m.group(2))
                    self.listening.set()

    def wait_listening(self, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.listening.wait(0.05):
                return self.port
            if self.p.poll() is not None:
                break
        tail = "\n".join(self.lines[-10:])
        status = self.p.poll()
        raise BenchError(f"{self.name} did not report 'listening on' within "
                         f"{timeout:g} s (exit status {status}); stderr:\n{tail}")

    def pids(self):
        return [self.pid] + [p for p, _ in self.extra]

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=5.0):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit status."""
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        for pid, start in self.extra:          # nginx workers left behind
            st = proc_stat(pid)
            if st and st[2] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.reader.join(2)
        if self in LIVE:
            LIVE.remove(self)
        return self.p.returncode


def stop_all():
    for p in reversed(list(LIVE)):
        try:
            p.stop(3)
        except Exception as e:          # keep stopping the others
            print(f"bench: stopping {p.name} (pid {p.pid}): {e}", file=sys.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connectable(port, proc, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not proc.alive():
            break
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{proc.name} not accepting on 127.0.0.1:{port} within "
                     f"{timeout:g} s (exit status {proc.p.poll()}); stderr:\n"
                     + "\n".join(proc.lines[-10:]))


def http_get(port, target, timeout=3.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", target)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def backend_count(port):
    status, body = http_get(port, "/__count")
    if status != 200:
        raise BenchError(f"/__count on port {port} answered {status}")
    return json.loads(body)


def settle_count(port, quiet=0.3, limit=3.0):
    """Wait until a backend's request count stops moving (bounded)."""
    last, since = backend_count(port), time.monotonic()
    end = since + limit
    while time.monotonic() < end:
        time.sleep(0.1)
        cur = backend_count(port)
        if cur["requests"] != last["requests"]:
            last, since = cur, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


# --------------------------------------------------------------------------
# CPU accounting

def snapshot():
    procs = {}
    for p in LIVE:
        for pid in p.pids():
            st = proc_stat(pid)
            if st:
                procs[pid] = (p.role, st[0])
    busy, steal = sys_cpu()
    return {"t": time.monotonic(), "busy": busy, "steal": steal,
            "self": self_ticks(), "procs": procs}


def cpu_delta(a, b):
    """Ticks per role between two snapshots, ours, others (% of one core)."""
    secs = max(b["t"] - a["t"], 1e-6)
    roles, ours = {}, b["self"] - a["self"]
    for pid, (role, t1) in b["procs"].items():
        if pid in a["procs"]:
            d = t1 - a["procs"][pid][1]
            roles[role] = roles.get(role, 0) + d
            ours += d
    busy = b["busy"] - a["busy"]
    pct = lambda ticks: 100.0 * ticks / CLK / secs
    return {"seconds": round(secs, 3),
            "ticks": roles,
            "ours_pct": round(pct(ours), 1),
            "all_pct": round(pct(busy), 1),
            "other_pct": round(max(0.0, pct(busy - ours)), 1),
            "steal_pct": round(pct(b["steal"] - a["steal"]), 1)}


def wait_quiet(max_wait):
    """Wait up to max_wait s for other load to fall under QUIET_LIMIT."""
    end = time.monotonic() + max_wait
    last = None
    while True:
        a = snapshot()
        time.sleep(0.5)
        last = cpu_delta(a, snapshot())["other_pct"]
        if last < QUIET_LIMIT or time.monotonic() >= end:
            return last


# --------------------------------------------------------------------------
# wrk

def run_wrk(port, script, duration, args):
    argv = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}",
            f"-d{duration}s", "--timeout", "5s", "--latency",
            "-s", os.path.join("bench", script), f"http://127.0.0.1:{port}/"]
    try:
        r = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=duration + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 30} s: "
                         + " ".join(argv))
    res = None
    for line in r.stdout.splitlines():
        if line.startswith("KAGE_BENCH "):
            res = json.loads(line[len("KAGE_BENCH "):])
    if res is None or r.returncode != 0:
        raise BenchError(f"wrk failed (exit {r.returncode}): {' '.join(argv)}\n"
                         f"{r.stdout[-800:]}{r.stderr[-800:]}")
    res["rps"] = res["requests"] * 1e6 / max(res["duration_us"], 1)
    res["argv"] = argv
    res["text"] = r.stdout.split("KAGE_BENCH")[0].rstrip()
    if res["pipeline"] > 1:
        res["latency_us"] = None       # see report.lua
    return res


# --------------------------------------------------------------------------
# Scenarios

def scenario_list(workers):
    out = []
    for load, (script, desc) in LOADS.items():
        out.append(dict(id=f"{load}/direct", group=load, kind="direct", workers=None,
                        script=script, shadow=None, desc=desc))
        for w in workers:
            for kind in ("kage", "nginx"):
                out.append(dict(id=f"{load}/{kind}-w{w}", group=load, kind=kind,
                                workers=w, script=script, shadow=None, desc=desc))
    for group, (shadow, desc) in SHADOWS.items():
        for w in workers:
            for kind in ("kage", "nginx"):
                out.append(dict(id=f"{group}/{kind}-w{w}", group=group, kind=kind,
                                workers=w, script="get_1k.lua", shadow=shadow,
                                desc=desc))
    for w in workers:
        for kind in ("kage", "nginx"):
            out.append(dict(id=f"idle/{kind}-w{w}", group="idle", kind=kind,
                            workers=w, script=None, shadow=None,
                            desc="idle keep-alive connections: RSS per connection"))
    for s in out:
        s["ref"] = None if s["kind"] == "direct" or s["group"] == "idle" else \
            ("get1k/direct" if s["shadow"] else f"{s['group']}/direct")
        s["peer"] = s["id"].replace("/kage-", "/nginx-") if s["kind"] == "kage" else None
    return out


def select_scenarios(all_sc, patterns):
    if not patterns:
        return all_sc, []
    ids = {s["id"] for s in all_sc}
    want = set()
    for pat in patterns:
        hit = {i for i in ids if i == pat or i.split("/")[0] == pat
               or fnmatch.fnmatch(i, pat)}
        if not hit:
            raise SystemExit(f"bench: --only {pat!r} matches no scenario "
                             f"(see --list)")
        want |= hit
    added = set()
    by_id = {s["id"]: s for s in all_sc}
    for i in list(want):          # references are measured in the same run
        for ref in (by_id[i]["ref"], by_id[i]["peer"]):
            if ref and ref not in want:
                want.add(ref)
                added.add(ref)
    for i in list(want):
        ref = by_id[i]["ref"]
        if ref and ref not in want:
            want.add(ref)
            added.add(ref)
    return [s for s in all_sc if s["id"] in want], sorted(added)


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout {keepalive_timeout}s;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffers 16 8k;
    upstream kb_master {{
        server 127.0.0.1:{master};
        keepalive 128;
        keepalive_requests 1000000;
    }}
{shadow_upstream}    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
{mirror}            proxy_pass http://kb_master;
        }}
{mirror_location}    }}
}}
"""
NGINX_SHADOW_UPSTREAM = """\
    upstream kb_shadow {{
        server 127.0.0.1:{shadow};
        keepalive 128;
        keepalive_requests 1000000;
    }}
"""
NGINX_MIRROR_LOCATION = """\
        location = /__mirror {
            internal;
            proxy_pass http://kb_shadow$request_uri;
        }
"""


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.join(ROOT, args.build)
        self.kage = os.path.join(self.build, "kage")
        self.kage_extra = shlex.split(args.kage_args)
        self.testbackend = os.path.join(self.build, "tools", "testbackend")
        self.tmp = tempfile.mkdtemp(prefix="kage-bench-")
        os.chmod(self.tmp, 0o755)       # nginx workers may run as nobody
        self.master = self.shadow = self.slow = None
        self.ports = {}
        self.problems = []

    # -- backends ----------------------------------------------------------
    def start_backends(self, need_shadow, need_slow):
        tb = [self.testbackend, "--listen", "127.0.0.1:0", "--threads", "1", "--quiet"]
        self.master = Proc("testbackend (master)", tb + ["--name", "backend"], "master")
        self.ports["master"] = self.master.wait_listening()
        if need_shadow:
            self.shadow = Proc("testbackend (shadow)", tb + ["--name", "backend"], "shadow")
            self.ports["shadow"] = self.shadow.wait_listening()
        if need_slow:
            self.slow = Proc("testbackend (200 ms shadow)",
                             tb + ["--name", "backend", "--delay-ms", "200"], "slow-shadow")
            self.ports["slow"] = self.slow.wait_listening()

    def shadow_port(self, sc):
        return {None: None, "fast": self.ports.get("shadow"),
                "slow": self.ports.get("slow")}[sc["shadow"]]

    # -- proxies -----------------------------------------------------------
    def kage_argv(self, sc, idle=False):
        argv = [self.kage, "--listen", "127.0.0.1:0", "--threads", str(sc["workers"]),
                "--master", f"production=127.0.0.1:{self.ports['master']}",
                "--diff-log", "/dev/null", "--drain-timeout", "5"]
        if sc["shadow"]:
            # The test backends number their responses (X-Request-Count), so
            # every record would be a mismatch; ignoring that header makes
            # records match, the common case in production.
            argv += ["--shadow", f"sandbox=127.0.0.1:{self.shadow_port(sc)}",
                     "--ignore-header", "X-Request-Count"]
        if idle:
            argv += ["--client-timeout", "300"]
        return argv + self.kage_extra

    def start_proxy(self, sc, idle=False):
        if sc["kind"] == "kage":
            p = Proc(f"kage --threads {sc['workers']}", self.kage_argv(sc, idle), "proxy")
            p.wait_listening()
            return p
        port = free_port()
        d = tempfile.mkdtemp(prefix="nginx-", dir=self.tmp)
        os.chmod(d, 0o755)
        sp = self.shadow_port(sc)
        conf = NGINX_CONF.format(
            workers=sc["workers"], nofile=nofile_soft(),
            worker_connections=min(20000, nofile_soft() - 64), tmp=d, port=port,
            master=self.ports["master"], keepalive_timeout=300 if idle else 75,
            shadow_upstream=NGINX_SHADOW_UPSTREAM.format(shadow=sp) if sp else "",
            mirror="            mirror /__mirror;\n" if sp else "",
            mirror_location=NGINX_MIRROR_LOCATION if sp else "")
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        p = Proc(f"nginx workers={sc['workers']}",
                 ["nginx", "-p", d, "-c", path, "-e", os.path.join(d, "error.log")],
                 "proxy")
        p.conf = path
        wait_connectable(port, p)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            p.extra = children_of(p.pid)
            if len(p.extra) >= sc["workers"]:
                break
            time.sleep(0.05)
        else:
            raise BenchError(f"nginx started {len(p.extra)} of {sc['workers']} workers")
        p.port = port
        return p

    def repro(self, sc, proxy):
        if sc["kind"] == "direct":
            return "testbackend (direct)"
        if sc["kind"] == "kage":
            cmd = " ".join(self.kage_argv(sc)).replace(
                str(self.ports["master"]), "MASTER_PORT")
            if sc["shadow"]:
                cmd = cmd.replace(str(self.shadow_port(sc)), "SHADOW_PORT")
            return cmd
        return f"nginx -p DIR -c {getattr(proxy, 'conf', '?')}" if proxy else "nginx"

    # -- one measured run --------------------------------------------------
    def run_one(self, sc, rep):
        args = self.args
        rec = {"rep": rep, "ok": False}
        proxy = None
        try:
            if sc["kind"] == "direct":
                port = self.ports["master"]
            else:
                proxy = self.start_proxy(sc)
                port = proxy.port
                rec["proxy_pid"] = proxy.pid
            status, body = http_get(port, "/size/16")
            if status != 200 or len(body) != 16:
                raise BenchError(f"sanity GET /size/16 answered {status} with "
                                 f"{len(body)} bytes")
            if args.warmup > 0:
                run_wrk(port, sc["script"], args.warmup, args)
            sport = self.shadow_port(sc)
            if sport:
                settle_count(sport)
            rec["other_before_pct"] = wait_quiet(args.quiet_wait) \
                if args.quiet_wait > 0 else None
            m0 = backend_count(self.ports["master"])
            s0 = backend_count(sport) if sport else None
            c0 = snapshot()
            res = run_wrk(port, sc["script"], args.duration, args)
            c1 = snapshot()
            rec["wrk"] = {k: v for k, v in res.items() if k != "text"}
            rec["wrk_text"] = res["text"]
            rec["cpu"] = cpu_delta(c0, c1)
            if proxy and not proxy.alive():
                raise BenchError(f"{proxy.name} exited during the run with status "
                                 f"{proxy.p.returncode}; stderr tail:\n"
                                 + "\n".join(proxy.lines[-15:]))
            if sport:
                s1 = settle_count(sport, limit=5.0)
            m1 = backend_count(self.ports["master"])
            rec["master"] = {k: m1[k] - m0[k] for k in ("requests", "connections")}
            if sport:
                rec["shadow"] = {k: s1[k] - s0[k] for k in ("requests", "connections")}
            if proxy:
                t = rec["cpu"]["ticks"].get("proxy", 0)
                rec["proxy_cpu_us_per_req"] = t / CLK * 1e6 / max(res["requests"], 1)
                rec["proxy_cpu_pct"] = round(100.0 * t / CLK / rec["cpu"]["seconds"], 1)
            if sport:
                t = rec["cpu"]["ticks"].get("slow-shadow" if sc["shadow"] == "slow"
                                            else "shadow", 0)
                rec["shadow_cpu_pct"] = round(100.0 * t / CLK / rec["cpu"]["seconds"], 1)
            rec["ok"] = True
        except BenchError as e:
            rec["error"] = str(e)
        except BaseException:
            rec["error"] = "interrupted"
            raise
        finally:
            if proxy:
                status = proxy.stop(10)
                rec["proxy_exit"] = status
                if proxy.killed:
                    rec.setdefault("error", "")
                    rec["error"] += f"{proxy.name} did not exit within 10 s of SIGTERM: SIGKILLed"
                    rec["ok"] = False
                if sc["kind"] == "kage":
                    rec["kage_summary"] = parse_kage_summary(proxy.lines)
                    rec["kage_stderr_tail"] = proxy.lines[-40:]
                else:
                    rec["nginx_error_log"] = nginx_log(proxy)
                    if status not in (0, None) and rec["ok"]:
                        rec["ok"] = False
                        rec["error"] = f"kage exited with status {status} on SIGTERM"
        if not rec["ok"]:
            self.problems.append({"scenario": sc["id"], "rep": rep,
                                  "error": rec.get("error"),
                                  "command": self.repro(sc, proxy)})
        else:
            w = rec["wrk"]
            errs = sum(w["errors"].values())
            if errs:
                self.problems.append({"scenario": sc["id"], "rep": rep,
                                      "error": f"wrk errors {w['errors']}",
                                      "command": self.repro(sc, proxy),
                                      "wrk": " ".join(w["argv"][:-1]) + " http://127.0.0.1:PROXY_PORT/"})
        return rec

    # -- idle connections --------------------------------------------------
    def run_idle(self, sc):
        n = self.args.idle_conns
        rec = {"ok": False, "connections": n}
        proxy, socks = None, []
        try:
            proxy = self.start_proxy(sc, idle=True)
            rec["nofile_limit"] = nofile_limit(proxy.pid)
            # Touch the proxy's buffers first (kage cycles through its whole
            # provided-buffer ring under load), so that the difference below
            # is the connections' own memory, not the pools' first use.
            http_get(proxy.port, "/size/1024")
            run_wrk(proxy.port, "get_1k.lua", 1, self.args)
            time.sleep(0.5)
            before = rss_of(proxy)
            # Two steps: the slope between them leaves out what the first
            # connections cost once (pools, buffers reached for the first time).
            first = n // 5
            t0 = time.monotonic()
            socks, failed = open_idle(proxy.port, first)
            time.sleep(0.5)
            mid = rss_of(proxy)
            more, failed2 = open_idle(proxy.port, n - first)
            socks += more
            failed += failed2
            rec["open_seconds"] = round(time.monotonic() - t0, 2)
            rec["open_failed"] = failed
            time.sleep(1.0)
            after = rss_of(proxy)
            rec["still_open"] = count_open(socks)
            rec["reused_ok"] = reuse_check(socks[:100])
            for s in socks:
                s.close()
            socks = []
            time.sleep(1.0)
            closed = rss_of(proxy)
            rec.update(rss_before=before, rss_mid=mid, rss_after=after,
                       rss_after_close=closed, conns_mid=first - min(failed, first))
            opened = n - failed
            rec["rss_per_conn_total"] = (after["VmRSS"] - before["VmRSS"]) / max(opened, 1)
            rec["rss_per_conn"] = (after["VmRSS"] - mid["VmRSS"]) / max(opened - rec["conns_mid"], 1)
            rec["anon_per_conn"] = (after.get("RssAnon", 0) - before.get("RssAnon", 0)) \
                / max(opened, 1)
            if not proxy.alive():
                raise BenchError(f"{proxy.name} exited with status {proxy.p.returncode}")
            rec["ok"] = failed == 0 and rec["still_open"] == opened
            if not rec["ok"]:
                rec["error"] = (f"{failed} connections failed to open, "
                                f"{opened - rec['still_open']} closed while idle")
        except (BenchError, OSError) as e:
            rec["error"] = str(e)
        finally:
            for s in socks:
                s.close()
            if proxy:
                rec["proxy_exit"] = proxy.stop(10)
                if sc["kind"] == "kage":
                    rec["kage_summary"] = parse_kage_summary(proxy.lines)
                    rec["kage_stderr_tail"] = proxy.lines[-40:]
                else:
                    rec["nginx_error_log"] = nginx_log(proxy)
                if proxy.killed:
                    rec["ok"] = False
                    rec["error"] = (rec.get("error") or "") + " SIGKILLed after SIGTERM"
        if not rec["ok"]:
            self.problems.append({"scenario": sc["id"], "rep": 1,
                                  "error": rec.get("error"),
                                  "command": self.repro(sc, proxy) + " --client-timeout 300"
                                  if sc["kind"] == "kage" else self.repro(sc, proxy)})
        return rec


def nginx_log(proxy):
    try:
        with open(os.path.join(os.path.dirname(proxy.conf), "error.log")) as f:
            return f.read().splitlines()[-20:]
    except (OSError, AttributeError):
        return None


def rss_of(proxy):
    tot = {}
    for pid in proxy.pids():
        for k, v in vm_status(pid).items():
            tot[k] = tot.get(k, 0) + v
    return tot


REQ = b"GET /size/1024 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("connection closed before a response")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(body) < need:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("connection closed mid-body")
        body += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        status = head.split(b"\r\n")[0]
        raise OSError(f"answered {status!r}")


def open_idle(port, n, batch=200, limit=180.0):
    """n keep-alive connections, each with one request answered."""
    socks, failed = [], 0
    end = time.monotonic() + limit
    for i in range(0, n, batch):
        if time.monotonic() > end:
            raise BenchError(f"opening {n} idle connections took over {limit:g} s")
        group = []
        for _ in range(min(batch, n - i)):
            try:
                s = socket.create_connection(("127.0.0.1", port), 10)
                s.sendall(REQ)
                group.append(s)
            except OSError:
                failed += 1
        for s in group:
            try:
                read_response(s)
                socks.append(s)
            except OSError:
                failed += 1
                s.close()
        if failed > 100:
            raise BenchError(f"more than 100 of {i + batch} idle connections failed")
    return socks, failed


def count_open(socks):
    """Idle sockets with nothing to read: the proxy has not closed them."""
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
    return len(socks) - len(p.poll(0))


def reuse_check(socks, limit=30.0):
    ok = 0
    end = time.monotonic() + limit
    for s in socks:
        if time.monotonic() > end:
            break
        try:
            s.sendall(REQ)
            read_response(s)
            ok += 1
        except OSError:
            pass
    return f"{ok}/{len(socks)}"


SUMMARY_RE = {
    "served": r"served (\d+) requests",
    "compared": r"(\d+) shadowed records compared",
    "matched": r"\((\d+) matched",
    "mismatched": r"(\d+) mismatched\)",
    "dropped": r"(\d+) dropped",
    "lost": r"(\d+) lost by the diff log",
}


def parse_kage_summary(lines):
    out = {}
    for line in lines:
        if "served " in line and " requests" in line:
            out["line"] = line
            for k, rx in SUMMARY_RE.items():
                m = re.search(rx, line)
                if m:
                    out[k] = int(m.group(1))
        # "shadows: N sent; skipped: method=0 path=0 ... overload=N ..."
        m = re.search(r"shadows: (\d+) sent; skipped:(.*)", line)
        if m:
            out["sent"] = int(m.group(1))
            out["skipped"] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


# --------------------------------------------------------------------------
# Reporting

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_lat(us):
    if us is None:
        return "-"
    if us < 1000:
        return f"{us:.0f}us"
    if us < 1e6:
        return f"{us / 1000:.2f}ms"
    return f"{us / 1e6:.2f}s"


def fmt_ratio(x):
    if x is None:
        return "-"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def fmt_bytes(b):
    if b is None:
        return "-"
    return f"{b / 1048576:.1f} MiB"


def summarize(sc, reps):
    ok = [r for r in reps if r.get("ok")]
    s = {"reps": len(reps), "ok_reps": len(ok)}
    if not ok:
        return s
    s["rps"] = med([r["wrk"]["rps"] for r in ok])
    lat = [r["wrk"]["latency_us"] for r in ok if r["wrk"]["latency_us"]]
    s["p50_us"] = med([l["p50"] for l in lat]) if lat else None
    s["p99_us"] = med([l["p99"] for l in lat]) if lat else None
    s["rps_per_rep"] = [round(r["wrk"]["rps"]) if r.get("ok") else None for r in reps]
    s["other_pct_per_rep"] = [r["cpu"]["other_pct"] if r.get("ok") else None for r in reps]
    s["other_pct_max"] = max(r["cpu"]["other_pct"] for r in ok)
    s["steal_pct_max"] = max(r["cpu"]["steal_pct"] for r in ok)
    s["errors"] = sum(sum(r["wrk"]["errors"].values()) for r in ok)
    s["requests"] = sum(r["wrk"]["requests"] for r in ok)
    s["master_conns"] = sum(r["master"]["connections"] for r in ok)
    if sc["kind"] != "direct":
        s["cpu_us_per_req"] = med([r.get("proxy_cpu_us_per_req") for r in ok])
        s["cpu_pct"] = med([r.get("proxy_cpu_pct") for r in ok])
    if sc["shadow"]:
        recv = sum(r["shadow"]["requests"] for r in ok)
        s["shadow_requests"] = recv
        s["shadow_conns"] = sum(r["shadow"]["connections"] for r in ok)
        s["shadow_share"] = recv / max(s["requests"], 1)
        s["shadow_cpu_pct"] = med([r.get("shadow_cpu_pct") for r in ok])
        if sc["kind"] == "kage":
            ks = [r.get("kage_summary") or {} for r in ok]
            if all("served" in k for k in ks):
                for key in ("served", "compared", "matched", "mismatched",
                            "dropped", "lost", "sent"):
                    if all(key in k for k in ks):
                        s["kage_" + key] = sum(k[key] for k in ks)
                skipped = {}
                for k in ks:
                    for reason, n in k.get("skipped", {}).items():
                        skipped[reason] = skipped.get(reason, 0) + n
                s["kage_skipped"] = {r: n for r, n in skipped.items() if n}
    return s


def table(headers, rows, right=None):
    right = right if right is not None else set(range(1, len(headers)))
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h)
         for i, h in enumerate(headers)]
    def line(cells):
        return "  ".join(str(c).rjust(w[i]) if i in right else str(c).ljust(w[i])
                         for i, c in enumerate(cells)).rstrip()
    out = [line(headers), line(["-" * x for x in w])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def per_rep(s):
    out = []
    for rps, oth in zip(s.get("rps_per_rep", []), s.get("other_pct_per_rep", [])):
        if rps is None:
            out.append("FAIL")
        else:
            out.append(f"{rps}" + ("*" if oth is not None and oth >= QUIET_LIMIT else ""))
    return " / ".join(out)


def label(sc):
    if sc["kind"] == "direct":
        return "direct (wrk -> backend)"
    extra = {None: "", "fast": " + shadow", "slow": " + SLOW shadow"}[sc["shadow"]]
    if sc["kind"] == "nginx" and sc["shadow"]:
        extra = {"fast": " + mirror", "slow": " + mirror to SLOW shadow"}[sc["shadow"]]
    name = f"kage --threads {sc['workers']}" if sc["kind"] == "kage" else \
        f"nginx {sc['workers']} worker{'s' if sc['workers'] > 1 else ''}"
    return name + extra


def report(scs, results, idle, bench, args, added):
    by_id = {s["id"]: s for s in scs}
    S = {i: results[i]["summary"] for i in results}
    out = []
    out.append(f"kage bench: wrk -t{args.wrk_threads} -c{args.connections} "
               f"-d{args.duration}s --timeout 5s --latency, {args.warmup}s warm-up, "
               f"{args.reps} rep(s) interleaved, medians shown")
    if added:
        out.append("references added to the selection: " + ", ".join(added))
    out.append("vs direct = req/s / req/s of the same load straight to the backend; "
               "kage/nginx = kage's req/s / nginx's with the same worker count; "
               "CPU/req = the proxy's CPU time (utime+stime, nginx: master + workers) "
               "per request; other = max CPU of processes we did not start during a "
               "rep, % of one core (* marks a rep >= 15%)")

    def ratio(a, b, key):
        x = S.get(a, {}).get(key)
        y = S.get(b, {}).get(key)
        return x / y if x and y else None

    groups = [g for g in list(LOADS) + list(SHADOWS) if any(s["group"] == g for s in scs)]
    for g in groups:
        rows = []
        is_shadow = g in SHADOWS
        members = [sc for sc in scs if sc["group"] == g]
        if is_shadow and "get1k/direct" in S:
            members = [by_id["get1k/direct"]] + members
        desc = SHADOWS[g][1] if is_shadow else LOADS[g][1]
        out.append("")
        out.append(f"== {g}: {desc}")
        for sc in members:
            s = S.get(sc["id"], {})
            if not s.get("ok_reps"):
                rows.append([label(sc), "FAILED" if s.get("reps") else "not run"])
                continue
            ref = sc["ref"]
            vs = 1.0 if sc["kind"] == "direct" else ratio(sc["id"], ref, "rps")
            kn = ratio(sc["id"], sc["peer"], "rps") if sc["peer"] else None
            cpu = s.get("cpu_us_per_req")
            cpu_n = ratio(sc["id"], sc["peer"], "cpu_us_per_req") if sc["peer"] else None
            row = [label(sc), f"{s['rps']:.0f}", fmt_lat(s["p50_us"]), fmt_lat(s["p99_us"]),
                   fmt_ratio(vs), fmt_ratio(kn),
                   f"{cpu:.1f}us" if cpu is not None else "-",
                   fmt_ratio(cpu_n),
                   f"{s['cpu_pct']:.0f}%" if s.get("cpu_pct") is not None else "-"]
            if is_shadow:
                if sc["shadow"]:
                    row.append(f"{100 * s['shadow_share']:.1f}%")
                    row.append(f"{s['shadow_cpu_pct']:.0f}%")
                    row.append(f"{s['master_conns']} / {s['shadow_conns']}")
                    if sc["kind"] == "kage" and "kage_served" in s:
                        skipped = ", ".join(f"{r} {n}" for r, n in
                                            sorted(s.get("kage_skipped", {}).items()))
                        row.append(f"{s.get('kage_compared', '?')}/{s['kage_served']}"
                                   f" ({100 * s.get('kage_compared', 0) / max(s['kage_served'], 1):.0f}%)"
                                   f", skipped: {skipped or 'none'}"
                                   f", queue-full {s.get('kage_dropped', '?')}")
                    elif sc["kind"] == "kage":
                        row.append("no summary")
                    else:
                        row.append("-")
                else:
                    row += ["-", "-", f"{s['master_conns']}", "-"]
            row += [str(s["errors"]), f"{s['other_pct_max']:.0f}%", per_rep(s)]
            rows.append(row)
        hdr = ["scenario", "req/s", "p50", "p99", "vs direct", "kage/nginx",
               "CPU/req", "CPU/req vs nginx", "proxy CPU"]
        if is_shadow:
            hdr += ["shadow recv/client", "shadow CPU", "conns master / shadow",
                    "kage records/served, shadows not sent by reason"]
        hdr += ["errors", "other", "req/s per rep"]
        rows = [r + [""] * (len(hdr) - len(r)) for r in rows]
        out.append(table(hdr, rows, right=set(range(1, len(hdr) - 1))))
        if g == "pipeline16":
            out.append("(wrk 4.1 gives no valid latency for pipelined runs)")

    if idle:
        out.append("")
        out.append(f"== idle: {args.idle_conns} keep-alive connections through the "
                   "proxy, each after one GET 1 KiB; RSS (VmRSS, nginx: master + workers) "
                   "after a 1 s wrk warm-up; bytes/conn = RSS growth per connection from "
                   f"{args.idle_conns // 5} to {args.idle_conns} connections")
        rows = []
        for sc in scs:
            if sc["group"] != "idle" or sc["id"] not in idle:
                continue
            r = idle[sc["id"]]
            if "rss_per_conn" not in r:
                rows.append([label(sc), "FAILED"] + [""] * 9)   # 11 columns
                continue
            peer = idle.get(sc["peer"]) if sc["peer"] else None
            vsn = r["rss_per_conn"] / peer["rss_per_conn"] \
                if peer and peer.get("rss_per_conn") else None
            rows.append([label(sc), f"{r['connections'] - r['open_failed']}",
                         f"{r['still_open']}", r["reused_ok"],
                         fmt_bytes(r["rss_before"].get("VmRSS")),
                         fmt_bytes(r["rss_mid"].get("VmRSS")),
                         fmt_bytes(r["rss_after"].get("VmRSS")),
                         f"{r['rss_per_conn']:.0f}", fmt_ratio(vsn),
                         f"{r['rss_per_conn_total']:.0f}",
                         fmt_bytes(r["rss_after_close"].get("VmRSS"))])
        out.append(table(["proxy", "opened", "still open", "reused", "RSS before",
                          f"RSS at {args.idle_conns // 5}", f"RSS at {args.idle_conns}",
                          "bytes/conn", "kage/nginx", "bytes/conn from 0",
                          "RSS after close"], rows))

    if bench.problems:
        out.append("")
        out.append("== problems")
        for p in bench.problems:
            out.append(f"- {p['scenario']} rep {p['rep']}: {p['error']}")
            out.append(f"  proxy command: {p['command']}")
            if p.get("wrk"):
                out.append(f"  load: {p['wrk']}")
    else:
        out.append("")
        out.append("No run failed; no wrk socket errors or non-2xx responses.")
    return "\n".join(out)


# --------------------------------------------------------------------------

def meta(args, bench):
    def cmd(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT)
            lines = (r.stdout + r.stderr).strip().splitlines()
            return lines[0] if lines else ""
        except Exception as e:
            return f"? ({e})"
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kage": cmd([bench.kage, "--version"]),
        "nginx": cmd(["nginx", "-v"]),
        "wrk": cmd(["wrk", "-v"]),
        "git": cmd(["git", "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(cmd(["git", "status", "--porcelain", "--untracked-files=no"])
                          .strip()) if shutil.which("git") else None,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    }


def nofile_soft():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_nofile():
    """RLIMIT_NOFILE to NOFILE if allowed, else to the hard limit. Children
    (kage, nginx, the backends) inherit it; nginx gets it as
    worker_rlimit_nofile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE
    if hard != resource.RLIM_INFINITY and hard < want:
        try:   # raising the hard limit needs CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main():
    ap = argparse.ArgumentParser(description="kage benchmarks: see bench/README.md")
    ap.add_argument("--build", default="build/release",
                    help="build directory with kage and tools/testbackend")
    ap.add_argument("--duration", type=int, default=8, help="seconds per measured run")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of warm-up before each run (0: none)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions, interleaved")
    ap.add_argument("--workers", default="1,2", help="proxy worker counts (kage --threads, "
                    "nginx worker_processes), comma-separated")
    ap.add_argument("--connections", type=int, default=50, help="wrk -c")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk -t")
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--quiet-wait", type=float, default=QUIET_WAIT,
                    help="seconds to wait before each run for other load to fall "
                         f"under {QUIET_LIMIT:g}%% of a core (0: do not wait)")
    ap.add_argument("--nice", type=int, default=None,
                    help="set this nice value first; every process started inherits it")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 s runs, no warm-up, 1 rep, 1000 idle connections")
    ap.add_argument("--only", nargs="+", metavar="SCENARIO",
                    help="scenario ids, groups (get1k, get64k, post4k, pipeline16, shadow, "
                         "shadow-slow, idle) or globs ('*/kage-w2'); references "
                         "(direct, nginx) are added")
    ap.add_argument("--kage-args", default="",
                    help="extra kage flags for every kage run (e.g. '--buffer-size 64k')")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"))
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.reps = 1, 0, 1
        args.idle_conns = min(args.idle_conns, 1000)
        args.quiet_wait = 0
    workers = [int(x) for x in args.workers.split(",") if x]
    all_sc = scenario_list(workers)
    if args.list:
        for s in all_sc:
            print(f"{s['id']:28} {s['desc']}")
        return 0
    scs, added = select_scenarios(all_sc, args.only)
    if args.duration < 1 or args.reps < 1:
        raise SystemExit("bench: --duration and --reps must be at least 1")
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} not found (tools/install-deps --bench)")
    if args.nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    raise_nofile()
    if args.idle_conns + 200 > nofile_soft():
        print(f"bench: RLIMIT_NOFILE is {nofile_soft()}: idle test reduced from "
              f"{args.idle_conns} to {nofile_soft() - 200} connections", file=sys.stderr)
        args.idle_conns = nofile_soft() - 200

    def on_term(signum, frame):
        raise Interrupted()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    bench = Bench(args)
    for f in (bench.kage, bench.testbackend):
        if not os.access(f, os.X_OK):
            raise SystemExit(f"bench: {f} missing: run make first")
    load_sc = [s for s in scs if s["group"] != "idle"]
    idle_sc = [s for s in scs if s["group"] == "idle"]
    results = {s["id"]: {"scenario": s, "reps": []} for s in load_sc}
    idle = {}
    doc = {"meta": meta(args, bench), "settings": vars(args), "results": results,
           "idle": idle, "problems": bench.problems}
    interrupted = False
    t_start = time.monotonic()

    def save():
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        for i, r in results.items():
            r["summary"] = summarize(r["scenario"], r["reps"])
        doc["elapsed_s"] = round(time.monotonic() - t_start, 1)
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, args.json)

    try:
        bench.start_backends(any(s["shadow"] == "fast" for s in load_sc),
                             any(s["shadow"] == "slow" for s in load_sc))
        for rep in range(1, args.reps + 1):
            for sc in load_sc:
                r = bench.run_one(sc, rep)
                results[sc["id"]]["reps"].append(r)
                if r["ok"]:
                    w = r["wrk"]
                    lat = w["latency_us"]
                    print(f"[rep {rep}/{args.reps}] {sc['id']:22} {w['rps']:9.0f} req/s"
                          f"  p99 {fmt_lat(lat['p99'] if lat else None):>8}"
                          f"  errors {sum(w['errors'].values())}"
                          f"  other load {r['cpu']['other_pct']:.0f}%",
                          file=sys.stderr, flush=True)
                else:
                    print(f"[rep {rep}/{args.reps}] {sc['id']:22} FAILED: "
                          f"{(r.get('error') or '').splitlines()[0]}",
                          file=sys.stderr, flush=True)
            save()
        for sc in idle_sc:
            r = bench.run_idle(sc)
            idle[sc["id"]] = r
            print(f"[idle] {sc['id']:22} "
                  + (f"{r['rss_per_conn']:.0f} B/conn" if "rss_per_conn" in r
                     else f"FAILED: {r.get('error')}"), file=sys.stderr, flush=True)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        print("bench: interrupted; stopping everything", file=sys.stderr)
    finally:
        stop_all()
        shutil.rmtree(bench.tmp, ignore_errors=True)
    save()
    for i in results:
        results[i]["summary"] = summarize(results[i]["scenario"], results[i]["reps"])
    print(report(scs, results, idle, bench, args, added))
    if interrupted:
        print("\nINTERRUPTED: the tables above are partial.")
    print(f"\nraw numbers of every rep: {os.path.relpath(args.json)}")
    return 130 if interrupted else (1 if bench.problems else 0)


if __name__ == "__main__":
    sys.exit(main())
