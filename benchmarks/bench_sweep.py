"""Sweep speed: a 64-variant `secompile sweep` against one `secompile count`, in the same run.

    OMP_NUM_THREADS=1 python benchmarks/bench_sweep.py [--repeat 5]

The target (issue 15): the sweep's wall time is at most 10x a single `secompile count` of the
same spec — both as commands (subprocess wall time: interpreter start, imports, work) — because
the sweep runs in one process, parses the spec once and shares the expansion between variants
that differ only in their SE rules. In-process times are printed too (work only): they show
what one variant costs against one full count.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench_compile import timeit  # noqa: E402  (median wall time of repeated calls)

import secompile  # noqa: E402

SPEC = "specs/se_resnet50.yaml"
# 4 x 4 x 4 = 64 variants: reduction, where SE goes, depth of the third stage
VARY = ["se.0.reduction=[2, 4, 8, 16]",
        "se.0.where.stages=[all, [0, 1, 2], [1, 2, 3], [3]]",
        "stages.2.repeat=[4, 6, 8, 23]"]


def wall(cmd: list[str], repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    return timeit(lambda: subprocess.run(cmd, cwd=ROOT, env=env, check=True,
                                         stdout=subprocess.DEVNULL), repeat)




def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    vary_args = [a for v in VARY for a in ("--vary", v)]
    spec = os.path.join(ROOT, SPEC)
    rows = secompile.sweep(spec, VARY)
    assert len(rows) == 64 and all(r["ok"] for r in rows), \
        "the benchmark sweep should be 64 valid variants"

    t_count = timeit(lambda: secompile.count(spec), args.repeat)
    t_sweep = timeit(lambda: secompile.sweep(spec, VARY), args.repeat)
    w_count = wall([sys.executable, "-m", "secompile", "count", SPEC, "--json"], args.repeat)
    w_sweep = wall([sys.executable, "-m", "secompile", "sweep", SPEC, *vary_args,
                    "--json"], args.repeat)

    print(f"{SPEC}, 64 variants ({' x '.join(v.split('=')[0] for v in VARY)}), median "
          f"of {args.repeat}")
    print(f"  in process: count {1e3 * t_count:7.1f} ms   sweep {1e3 * t_sweep:7.1f} ms "
          f"({1e3 * t_sweep / 64:.1f} ms per variant, {t_sweep / 64 / t_count:.2f}x a count)")
    print(f"  commands:   count {1e3 * w_count:7.1f} ms   sweep {1e3 * w_sweep:7.1f} ms")
    ratio = w_sweep / w_count
    print(f"  sweep / count wall time: {ratio:.2f}x (target <= 10x): "
          f"{'ok' if ratio <= 10 else 'OVER'}")
    return 0 if ratio <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
