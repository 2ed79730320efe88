"""How quickly `secompile count` answers (issue 23 item 5).

    python benchmarks/bench_startup.py [--spec se_resnext50] [--runs 5]

Prints the median wall (and CPU) time of `python -m secompile count SPEC` from a fresh
interpreter, its ratio to the 0.25 s target, the floor of the same runs (`python -c pass`: the
interpreter and site start-up alone, measured in the same run), and the median time of one
`secompile.count(SPEC)` in a warm process. Run from a checkout (PYTHONPATH=$PWD), on an
otherwise idle machine: the wall time counts the import of everything the command touches, so
other load on the cores shows up directly (the load average is printed with the numbers).

Two settings, each with its own floor: "as run here" (this environment as it is: with
PYTHONDONTWRITEBYTECODE=1 and no __pycache__ in the checkout, every secompile module is compiled
from source at each start), and "bytecode cached" (how an installed package starts: the
interpreter may write .pyc files, into a temporary PYTHONPYCACHEPREFIX, warmed by one run).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 0.25        # issue 23: `secompile count se_resnext50` under 0.25 s wall


def command_times(argv: list[str], runs: int, env=None) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + sys of the child) seconds of each run of `argv`."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def in_process_times(spec: str, runs: int) -> list[float]:
    import secompile
    secompile.count(spec)                          # warm: imports, include cache
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        secompile.count(spec)
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="se_resnext50")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    count = [sys.executable, "-m", "secompile", "count", args.spec]
    with tempfile.TemporaryDirectory() as prefix:
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = prefix
        command_times(count, 1, cached)                 # writes the .pyc files
        for setting, env in (("as run here", None), ("bytecode cached", cached)):
            floor, _ = command_times([sys.executable, "-c", "pass"], args.runs, env)
            walls, cpus = command_times(count, args.runs, env)
            wall = statistics.median(walls)
            print(f"{setting}: secompile count {args.spec}: median wall {wall * 1e3:.0f} ms, "
                  f"CPU {statistics.median(cpus) * 1e3:.0f} ms ({args.runs} runs); "
                  f"{wall / TARGET_S:.2f} x the {TARGET_S * 1e3:.0f} ms target; floor "
                  f"(python -c pass) {statistics.median(floor) * 1e3:.0f} ms")
    inproc = in_process_times(args.spec, max(args.runs, 20))
    print(f"secompile.count({args.spec!r}) in process: median "
          f"{statistics.median(inproc) * 1e3:.1f} ms ({len(inproc)} runs)")
    print(f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on "
          f"{os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
