"""Sweep speed: a 64-variant `secompile sweep` against one `secompile count`, and a 100-model
design-space sample against 100 plain counts, in the same run.

    OMP_NUM_THREADS=1 python benchmarks/bench_sweep.py [--repeat 5]

The target (issue 15): the sweep's wall time is at most 10x a single `secompile count` of the
same spec — both as commands (subprocess wall time: interpreter start, imports, work) — because
the sweep runs in one process, parses the spec once and shares the expansion between variants
that differ only in their SE rules. In-process times are printed too (work only): they show
what one variant costs against one full count.

The sample (issue 21): 100 RegNetY-800MF variants drawn from ranges of width and depth, kept in
a 400M-800M multiply-add band (rejection sampling), against 100 plain `secompile.count` calls
of the spec; target <= 10x (the rejected draws are counted too).
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


SAMPLE_SPEC = "regnety_008"   # a variant of specs/regnet.yaml: the design space is its params
# pycls's RegNet design space (Radosavovic et al. 2020), its six numbers drawn around the 600M
# models (pycls's own ranges are wider and reject ~90% of draws for this band)
SAMPLE_VARY = ["params.w0=range(24, 104, 8)", "params.wa=uniform(16, 48, 0.01)",
               "params.wm=loguniform(2, 2.8, 0.01)", "params.depth=range(12, 20)",
               "params.group_w=choice(8, 16, 24)"]
SAMPLE_BAND = "macs >= 400e6 and macs <= 800e6"


def bench_sample(repeat: int) -> bool:
    spec = SAMPLE_SPEC
    rows = secompile.sweep(spec, SAMPLE_VARY, sample=100, seed=0, where=SAMPLE_BAND)
    assert len(rows) == 100, rows.summary
    t_counts = timeit(lambda: [secompile.count(spec) for _ in range(100)], repeat)
    t_sample = timeit(lambda: secompile.sweep(spec, SAMPLE_VARY, sample=100, seed=0,
                                              where=SAMPLE_BAND), repeat)
    s = rows.summary
    ratio = t_sample / t_counts
    print(f"{SAMPLE_SPEC}, a 100-model sample in [400M, 800M] MACs ({s['drawn']} drawn, "
          f"{s['outside']} outside the band), median of {repeat}")
    print(f"  100 counts {t_counts:6.2f} s   sample {t_sample:6.2f} s   ratio {ratio:.2f}x "
          f"(target <= 10x): {'ok' if ratio <= 10 else 'OVER'}")
    return ratio <= 10


def wall(cmd: list[str], repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    return timeit(lambda: subprocess.run(cmd, cwd=ROOT, env=env, check=True,
                                         stdout=subprocess.DEVNULL), repeat)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sample-only", action="store_true", help="only the 100-model sample")
    args = ap.parse_args(argv)
    sample_ok = bench_sample(max(1, args.repeat // 2))
    if args.sample_only:
        return 0 if sample_ok else 1
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
    return 0 if ratio <= 10 and sample_ok else 1


if __name__ == "__main__":
    sys.exit(main())
