"""Hooks (SPEC section 6): the example plugins, plugins that misbehave, and
a program linked against the installed libkage through pkg-config."""
import os
import re
import shutil
import subprocess
import tempfile

from harness import (BUILD, ROOT, Case, Proc, Reader, binary, diff_records, exchange, request)

from test_shadow import IGNORE, head_fields, recorded, shadow_summary


def plugin(name):
    return binary(f"plugins/{name}.so")


def hook_counts(kg):
    m = re.search(r"hooks: (\d+) errors, (\d+) answers refused", kg.stderr())
    assert m, kg.stderr()
    return int(m.group(1)), int(m.group(2))


class Plugins(Case):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="kage-plugin-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def backends(self, record=True):
        m = self.backend("--record", os.path.join(self.tmp, "m.rec"), name="production")
        s = self.backend("--record", os.path.join(self.tmp, "s.rec"), name="sandbox")
        return m, s

    def requests_at(self, who):
        return [head_fields(r) for r in recorded(os.path.join(self.tmp, f"{who}.rec"))]

    def test_readme_example(self):
        m, s = self.backends()
        out = os.path.join(self.tmp, "cmp.log")
        kg = self.kage(*IGNORE, "--plugin", plugin("readme_example") + f":shadow=sandbox,out={out}",
                       "--shadow-methods", "POST",  # the plugin decides, not the flags
                       master=("production", m.port), shadows=[("sandbox", s.port)])
        c = self.connect(kg.port)
        rd = Reader(c)
        for target in ("/size/10", "/json/users/2"):
            c.sendall(request("GET", target))
            self.assertEqual(rd.response().status, 200)
        c.sendall(request("POST", "/echo", body=b"hi"))
        self.assertEqual(rd.response().status, 200)
        self.assertEqual(kg.stop(), 0)
        # GETs went to both, the POST to production only.
        mreq, sreq = self.requests_at("m"), self.requests_at("s")
        self.assertEqual([l for l, _ in mreq], ["GET /size/10 HTTP/1.1", "GET /json/users/2 HTTP/1.1",
                                                 "POST /echo HTTP/1.1"])
        self.assertEqual([l for l, _ in sreq], ["GET /size/10 HTTP/1.1", "GET /json/users/2 HTTP/1.1"])
        # X-Kage-Sandbox for the sandbox only; the session header for both.
        for (_, mh), (_, sh) in zip(mreq, sreq):
            mh, sh = dict((n.lower(), v) for n, v in mh), dict((n.lower(), v) for n, v in sh)
            self.assertNotIn("x-kage-sandbox", mh)
            self.assertEqual(sh["x-kage-sandbox"], "1")
            self.assertEqual(mh["x-kage-session"], sh["x-kage-session"])
        with open(out) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertTrue(all(" same: sandbox 200/200" in l for l in lines), lines)

    def test_cookie_only(self):
        m, s = self.backends()
        kg = self.kage("--plugin", plugin("cookie_only") + ":beta=yes",
                       master=("production", m.port), shadows=[("sandbox", s.port)])
        for cookie in ("beta=yes", "a=1; beta=yes", "beta=no", "xbeta=yes", None, "beta=yes; z=2"):
            h = [("Cookie", cookie)] if cookie else []
            self.assertEqual(exchange(self.connect(kg.port), request("GET", "/size/1", headers=h)).status, 200)
        self.assertEqual(kg.stop(), 0)
        self.assertEqual(len(self.requests_at("m")), 6)
        cookies = [dict((n.lower(), v) for n, v in h)["cookie"] for _, h in self.requests_at("s")]
        self.assertEqual(cookies, ["beta=yes", "a=1; beta=yes", "beta=yes; z=2"])
        self.assertEqual(shadow_summary(kg)["plugin"], 3)

    def test_record_file(self):
        m, s = self.backends()
        out = os.path.join(self.tmp, "records.tsv")
        s2 = self.backend("--variant", "1", name="sandbox")
        kg = self.kage(*IGNORE, "--plugin", plugin("record_file") + ":" + out,
                       master=("production", m.port), shadows=[("sandbox", s2.port)])
        for i in (1, 2, 3):
            self.assertEqual(exchange(self.connect(kg.port), request("GET", f"/json/users/{i}")).status, 200)
        self.assertEqual(kg.stop(), 0)
        with open(out) as f:
            rows = [l.split("\t") for l in f.read().splitlines()]
        self.assertEqual(len(rows), 3)
        by_match = sorted(r[2] for r in rows)
        self.assertEqual(by_match, ["differ", "differ", "match"])	# odd ids differ
        for r in rows:
            self.assertRegex(r[0], r"^[0-9a-f]{16}$")
            self.assertEqual(r[1], "GET /json/users/:id")
            self.assertRegex(r[3], r"^production:200:[\d.]+:\d+$")
            self.assertRegex(r[4], r"^sandbox:200:[\d.]+:\d+$")

    def test_bad_select_is_refused_and_counted(self):
        m, s = self.backends()
        kg = self.kage("--plugin", plugin("bad_select"), master=("production", m.port),
                       shadows=[("sandbox", s.port)])
        for target in ("/size/5", "/size/6", "/fail/1", "/size/7"):
            r = exchange(self.connect(kg.port), request("GET", target))
            self.assertEqual(r.status, 200)	# the client never notices
        self.assertEqual(kg.stop(), 0)
        self.assertEqual(len(self.requests_at("m")), 4)
        self.assertEqual(self.requests_at("s"), [])	# nothing was shadowed
        self.assertEqual(hook_counts(kg), (1, 3))	# one error, three refused answers
        self.assertEqual(shadow_summary(kg)["plugin"], 4)

    def test_bad_munge_is_refused_and_counted(self):
        m, s = self.backends()
        kg = self.kage("--plugin", plugin("bad_munge"), master=("production", m.port),
                       shadows=[("sandbox", s.port)])
        r = exchange(self.connect(kg.port), request("POST", "/echo", body=b"abc",
                                                     headers=[("Content-Type", "text/plain")]))
        self.assertEqual((r.status, r.json()["body_len"]), (200, 3))
        self.assertEqual(exchange(self.connect(kg.port), request("GET", "/size/9")).status, 200)
        self.assertEqual(exchange(self.connect(kg.port), request("GET", "/fail/2")).status, 200)
        self.assertEqual(kg.stop(), 0)
        mreq, sreq = self.requests_at("m"), self.requests_at("s")
        self.assertEqual(len(mreq), 3)
        for line, hdrs in mreq[:2]:
            names = [n.lower() for n, _ in hdrs]
            h = dict((n.lower(), v) for n, v in hdrs)
            self.assertEqual(h.get("x-munged"), "master")
            self.assertNotIn("bad header", names)
            self.assertNotIn("x-injected", names)
            self.assertNotIn("transfer-encoding", names)
        self.assertEqual(dict((n.lower(), v) for n, v in mreq[0][1])["content-length"], "3")
        # The failing munge: master gets kage's own head, the shadow sits out.
        self.assertNotIn("x-munged", [n.lower() for n, _ in mreq[2][1]])
        self.assertEqual([l for l, _ in sreq], ["GET /size/9 HTTP/1.1"])
        self.assertEqual(dict((n.lower(), v) for n, v in sreq[0][1])["x-munged"], "shadow")
        # Four refused edits per munged head (POST master; GET master and shadow), two errors.
        self.assertEqual(hook_counts(kg), (2, 12))

    def test_refused_plugins(self):
        for args, pattern in (
                ([plugin("wrong_abi")], r"built for kage ABI 42, this kage speaks ABI 1"),
                ([os.path.join(self.tmp, "missing.so")], r"--plugin .*missing\.so: .*No such file"),
                ([plugin("record_file")], r"init failed"),	# no ARG: refuses
                ([binary("tools/testbackend")], r"--plugin ")):
            with self.subTest(args=args):
                m = self.backend(name="production")
                p = subprocess.run([binary("kage"), "-l", "127.0.0.1:0", "-m", f"p=127.0.0.1:{m.port}",
                                    "--plugin", *args], capture_output=True, text=True, timeout=10)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertRegex(p.stderr, pattern)


class Embedded(Case):
    """A C program linked against the installed libkage (pkg-config)."""

    def test_program_with_own_hooks(self):
        prefix = tempfile.mkdtemp(prefix="kage-install-")
        self.addCleanup(shutil.rmtree, prefix, True)
        flavour = os.path.basename(BUILD)
        san = "" if flavour == "release" else flavour.replace("san-", "").replace("-", ",")
        make = ["make", "-s", "-C", ROOT, "install", f"PREFIX={prefix}"] + ([f"SAN={san}"] if san else [])
        subprocess.run(make, check=True, capture_output=True, timeout=300)
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "--static", "kage"], env=env,
                               capture_output=True, text=True, check=True).stdout.split()
        exe = os.path.join(prefix, "embed")
        cc = ["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
              os.path.join(ROOT, "tests", "embed", "embed.c"), *flags, "-o", exe]
        if san:
            cc.insert(1, f"-fsanitize={san}")
        subprocess.run(cc, check=True, capture_output=True, timeout=120)

        m = self.backend(name="production")
        s = self.backend(name="sandbox")
        counts = os.path.join(prefix, "count")
        p = Proc([exe, counts, "--listen", "127.0.0.1:0", "--threads", "1", *IGNORE,
                  "--master", f"production=127.0.0.1:{m.port}", "--shadow", f"sandbox=127.0.0.1:{s.port}"],
                 "kage")
        self._procs.append(p)
        for _ in range(3):
            r = exchange(self.connect(p.port), request("GET", "/echo"))
            hdrs = dict((n.lower(), v) for n, v in r.json()["headers"])
            self.assertEqual(hdrs["x-embedded"], "master")
        self.assertEqual(p.stop(), 0, p.stderr())
        with open(counts) as f:
            self.assertEqual(f.read().strip(), "3")
