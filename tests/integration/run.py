#!/usr/bin/env python3
"""Run kage's integration tests.

    python3 tests/integration/run.py --build build/release [-k PATTERN] [--threads-only] [-j N]

Each test module (tests/integration/test_*.py) runs in its own process;
modules run N at a time (default 2). Tests marked `threads = True` on their
class are the ones `--threads-only` selects (the ThreadSanitizer job).
"""
import argparse
import concurrent.futures
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_module(path, args):
    env = dict(os.environ, KAGE_BUILD=args.build, PYTHONDONTWRITEBYTECODE="1")
    if args.threads_only:
        env["KAGE_THREADS_ONLY"] = "1"
    cmd = [sys.executable, "-m", "unittest", "-v"]
    name = os.path.splitext(os.path.basename(path))[0]
    target = name if not args.k else f"{name}"
    cmd.append(target)
    if args.k:
        cmd += ["-k", args.k]
    start = time.monotonic()
    r = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=args.timeout)
    return name, r.returncode, r.stdout + r.stderr, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("-k", help="only tests matching this pattern")
    ap.add_argument("-j", type=int, default=2)
    ap.add_argument("--threads-only", action="store_true")
    ap.add_argument("--timeout", type=int, default=400, help="seconds per module")
    ap.add_argument("modules", nargs="*")
    args = ap.parse_args()
    args.build = os.path.relpath(os.path.abspath(args.build), os.path.dirname(os.path.dirname(HERE)))
    paths = sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    if args.modules:
        paths = [p for p in paths if any(m in os.path.basename(p) for m in args.modules)]
    failed = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.j) as ex:
        for name, rc, out, secs in ex.map(lambda p: run_module(p, args), paths):
            status = "ok" if rc == 0 else "FAILED"
            print(f"== {name}: {status} ({secs:.1f}s)")
            if rc != 0 or os.environ.get("VERBOSE"):
                print(out)
            if rc != 0:
                failed.append(name)
    if failed:
        print("failed modules: " + ", ".join(failed))
        return 1
    print(f"all {len(paths)} integration modules passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
