"""HealthCase: the base of test_faults and test_slow. Starts kage with the
admin listener, takes a census of its descriptors once it listens, and
after a fault checks that kage is still healthy: a normal request is
answered, /metrics adds up, the descriptors are back to the census, and
SIGTERM ends it with status 0 and the summary lines."""
import os
import subprocess
import tempfile
import time

import faultkit as fk
from harness import Proc, Reader, binary, request
from support import KageCase

IGNORE = ("--ignore-header", "X-Backend", "--ignore-header", "X-Request-Count")

# KAGE_QUICK=1: the heavy tests run with a fraction of their load.
QUICK = os.environ.get("KAGE_QUICK", "") not in ("", "0")


def scaled(full, quick):
    return quick if QUICK else full


class LimitedProc(Proc):
    """harness.Proc whose child gets RLIMIT_NOFILE = nofile before exec."""

    def __init__(self, argv, name, nofile, timeout=10.0):
        import resource

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.argv = argv
        self.name = name
        self.errfile = tempfile.NamedTemporaryFile(prefix=f"kage-{name}-", suffix=".err", delete=False)
        self.outfile = tempfile.NamedTemporaryFile(prefix=f"kage-{name}-", suffix=".out", delete=False)
        self.proc = subprocess.Popen(argv, stdout=self.outfile, stderr=self.errfile,
                                     stdin=subprocess.DEVNULL, preexec_fn=limit)
        self.pid = self.proc.pid
        self.returncode = None
        self.port = self._wait_listening(timeout)


class HealthCase(KageCase):
    def fault_server(self, **kw):
        fs = fk.FaultServer(**kw)
        self.addCleanup(fs.close)
        return fs

    def origin(self, name="production", idle_ms=1000, threads=1):
        """The C test backend, closing idle keep-alive connections after
        idle_ms so kage's pooled connections end and its descriptor count
        can come back exactly to the census."""
        return self.backend("--idle-timeout", str(idle_ms), name=name, threads=threads)

    def start(self, *args, master, shadows=(), threads=1, nofile=None, drain=5, ignore=True):
        """kage with --admin; master is a port, shadows (name, port, opt...)."""
        argv = [binary("kage"), "--listen", "127.0.0.1:0", "--threads", str(threads),
                "--master", f"production=127.0.0.1:{master}", "--admin", "127.0.0.1:0",
                "--drain-timeout", str(drain)]
        ports = {master}
        for name, port, *opts in shadows:
            argv += ["--shadow", ",".join([f"{name}=127.0.0.1:{port}", *opts])]
            ports.add(port)
        if ignore:
            argv += IGNORE
        argv += list(args)
        kg = LimitedProc(argv, "kage", nofile) if nofile else Proc(argv, "kage")
        self._procs.append(kg)
        kg.admin = fk.wait_admin_port(kg)
        kg.backend_ports = ports
        kg.nshadows = len(shadows)
        kg.base = self.census(kg)
        # what assert_serves asks and expects (tests with other masters change it)
        kg.probe = lambda size: (f"/size/{size}", fk.pattern(size))
        return kg

    # --- looking at kage ---
    def census(self, kg):
        c = fk.fd_census(kg.pid, {kg.port}, {kg.admin}, kg.backend_ports)
        c.pop("admin", None)	# our own scrapes, closing
        return c

    def metrics(self, kg):
        return fk.scrape(kg.admin)

    def wait_settled(self, kg, timeout=10.0, clients=0):
        """Wait until no client connection is open (but `clients`), no record
        is in flight or queued, and the descriptors are those of the census
        (pooled backend connections included: the backends close them when
        idle). Returns the last metrics."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics(kg)
            now = self.census(kg)
            want = dict(kg.base)
            if clients:
                want["client"] = clients
            ok = (m.get("kage_connections_open") == clients and
                  m.get("kage_shadow_records_inflight") == 0 and
                  m.get("kage_comparator_queue_depth") == 0 and now == want)
            if ok:
                return m
            if time.monotonic() > deadline:
                self.fail(f"kage did not settle within {timeout}s: connections_open="
                          f"{m.get('kage_connections_open')} records_inflight="
                          f"{m.get('kage_shadow_records_inflight')} queue_depth="
                          f"{m.get('kage_comparator_queue_depth')}\n  descriptors now:    "
                          f"{sorted(now.items())}\n  at start:           {sorted(kg.base.items())}")
            time.sleep(0.1)

    def assert_serves(self, kg, n=3):
        """Ordinary requests on a fresh keep-alive connection are answered
        right."""
        s = self.connect(kg.port)
        rd = Reader(s, timeout=5)
        for i in range(n):
            size = 1000 + 37 * i
            target, want = kg.probe(size)
            s.sendall(request("GET", target))
            r = rd.response()
            self.assertEqual((r.status, r.body), (200, want), r)
        s.close()

    def assert_accounted(self, m, kg, logged_all=False, unsent=0):
        """The shadow and record counters add up (one shadow backend):
        - every eligible request's shadow was sent or skipped for a reason
          (queue_full included: the comparator was a queue behind, so the
          shadow was never sent), but `unsent`;
        - every sent shadow's record was queued to the comparator, none was
          dropped (that happens only at the drain deadline), and every
          queued one was compared;
        - with --diff-log-all every compared record was written or lost."""
        skipped = m.by_label("kage_shadows_skipped_total", "reason")
        eligible = m.get("kage_shadow_eligible_total")
        sent = m.get("kage_shadows_sent_total")
        queued = m.get("kage_records_queued_total")
        dropped = m.get("kage_records_dropped_total")
        compared = m.total("kage_records_compared_total")
        detail = (f"eligible={eligible} sent={sent} skipped={skipped} queued={queued} "
                  f"dropped={dropped} compared={compared}")
        if kg.nshadows == 1:
            self.assertEqual(eligible, sent + sum(skipped.values()) + unsent,
                             "eligible requests not accounted for: " + detail)
            self.assertEqual(sent, queued + dropped, "sent shadows whose records vanished: " + detail)
        self.assertEqual(dropped, 0, "records dropped before any drain: " + detail)
        self.assertEqual(queued, compared, "queued records not compared: " + detail)
        if logged_all:
            written = m.get("kage_diff_log_lines_written_total")
            lost = m.get("kage_diff_log_lines_lost_total")
            self.assertEqual(written + lost, compared,
                             f"diff log: written={written} lost={lost}; " + detail)
        responses = m.total("kage_responses_total")
        self.assertLessEqual(responses, m.get("kage_requests_total") + m.get("kage_client_errors_total"))
        return {"eligible": eligible, "sent": sent, "skipped": skipped, "queued": queued,
                "dropped": dropped, "compared": compared}

    def assert_healthy(self, kg, logged_all=False, unsent=0, settle=10.0):
        """After the fault: served, settled, accounted. Returns the metrics."""
        self.assert_serves(kg)
        m = self.wait_settled(kg, settle)
        self.assert_accounted(m, kg, logged_all, unsent)
        return m

    def stop_clean(self, kg, within=None):
        """SIGTERM: exit 0 (within `within` seconds if given) with the
        summary lines; returns the summary."""
        t0 = time.monotonic()
        rc = kg.stop(timeout=40)
        took = time.monotonic() - t0
        kg.stopped_by_test = True
        self.assertEqual(rc, 0, kg.stderr()[-3000:])
        if within is not None:
            self.assertLess(took, within, f"SIGTERM took {took:.1f}s: " + kg.stderr()[-2000:])
        summ = fk.exit_summary(kg.stderr())
        self.assertIsNotNone(summ, "no summary line: " + kg.stderr()[-2000:])
        return summ
