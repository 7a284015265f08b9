"""Helpers shared by the bodies, errors, lifecycle and upgrade modules, on
top of harness.py."""
import signal
import socket

from harness import Case, Reader

PATTERN = b"abcdefghijklmnopqrstuvwxyz0123456789\n"


def pattern(n):
    """The body of the test backend's /size/N route."""
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def noise(n, seed=7):
    """n bytes covering every byte value, not periodic on small powers of two."""
    return bytes((i * 131 + seed + (i >> 8)) & 0xFF for i in range(n))


def read_all(sock, wait=3.0):
    """Every byte until EOF: (bytes, True), or (bytes, False) if the peer
    stays open `wait` seconds after its last byte. A reset counts as EOF."""
    data = b""
    sock.settimeout(wait)
    try:
        while True:
            try:
                d = sock.recv(65536)
            except ConnectionResetError:
                return data, True
            if not d:
                return data, True
            data += d
    except socket.timeout:
        return data, False


# harness.Reader buffers in a bytearray now: linear on multi-MiB bodies.
FastReader = Reader


def read_to_eof(rd, wait=5.0):
    """Read until the peer closes; False if it stays silent and open for
    `wait` seconds. The bytes stay in rd.buf."""
    old, rd.timeout = rd.timeout, wait
    try:
        while rd._fill():
            pass
    except TimeoutError:
        return False
    finally:
        rd.timeout = old
    return True


class KageCase(Case):
    """Case that also fails a test when kage died on its own during it (the
    harness only judges the exit status of a kage it stops itself)."""

    def tearDown(self):
        died = []
        for p in self._procs:
            if p.name != "kage" or getattr(p, "expect_failure", False):
                continue
            rc = p.proc.poll()
            if rc is not None and rc != 0 and not getattr(p, "stopped_by_test", False):
                how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"status {rc}"
                died.append(f"kage died during the test ({how}): {p.stderr()[-1500:]}")
        try:
            super().tearDown()
        except AssertionError as e:
            died.append(str(e))
        if died:
            self.fail("; ".join(died))
