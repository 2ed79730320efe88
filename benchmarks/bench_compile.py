"""Compiler speed: analytic counting vs torch's FLOP counter, compile time, scaling with depth.

    python benchmarks/bench_compile.py

Everything is measured in this run, on this machine; the ratios are what to read.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import secompile  # noqa: E402
from secompile.analysis import Counts  # noqa: E402

SPEC = os.path.join(ROOT, "specs", "se_resnext50.yaml")


def timeit(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def deep_spec(blocks: int) -> dict:
    """A synthetic SE network of `blocks` basic blocks (in 4 stages), templates inline."""
    per = blocks // 4
    return {
        "name": f"deep{blocks}", "input": {"channels": 3, "size": 32},
        "blocks": {"basic": {"params": {"out": "int", "stride": 1}, "residual": {
            "branch": [{"name": "conv1", "conv": {"out": "$out", "kernel": 3, "stride": "$stride"}},
                       {"name": "conv2", "conv": {"out": "$out", "kernel": 3, "act": "none"}}],
            "shortcut": "auto", "post": ["relu"]}}},
        "stem": [{"name": "conv1", "conv": {"out": 16, "kernel": 3}}],
        "stages": [{"block": "basic", "repeat": per, "out": 16 * 2 ** i,
                    "stride": 1 if i == 0 else 2}
                   for i in range(4)],
        "head": [{"global_avgpool": {}}, {"linear": {"out": 10}}],
        "se": [{"where": {"stages": "all"}, "reduction": 4}],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")

    t_count = timeit(lambda: secompile.count(SPEC), args.repeat)
    t_compile = timeit(lambda: secompile.compile(SPEC), max(2, args.repeat // 2))
    model = secompile.compile(SPEC).eval()
    x = torch.randn(1, 3, 224, 224)

    def flop_counter():
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
        return fc.get_total_flops()

    t_flops = timeit(flop_counter, max(2, args.repeat // 2))
    flops = flop_counter()
    analytic = secompile.count(SPEC)["total"]["conv_linear_macs"]
    print("\nSE-ResNeXt-50 (32x4d), 224x224")
    print(f"  analytic count (load + validate + IR + SE + count): {t_count * 1e3:9.2f} ms")
    print(f"  torch.utils.flop_counter, one forward pass:          {t_flops * 1e3:9.2f} ms")
    print(f"  ratio flop_counter / analytic:                       {t_flops / t_count:9.1f}x  "
          f"(target >= 100x)")
    print(f"  agreement: analytic conv+fc MACs {analytic:,} vs flop_counter/2 {flops // 2:,}")
    print(f"  spec -> nn.Module compile time:                      {t_compile * 1e3:9.2f} ms")

    print("\nSynthetic deep SE networks (basic blocks): count time vs depth")
    prev = None
    for n in (250, 500, 1000, 2000):
        spec = deep_spec(n)
        g = secompile.build_ir(spec)
        t = timeit(lambda: secompile.count(spec), max(2, args.repeat // 2))
        grow = f"  x{t / prev[1]:.2f} for x{n / prev[0]:.0f} blocks" if prev else ""
        print(f"  {n:5d} blocks, {len(g):6d} IR nodes: {t * 1e3:8.1f} ms{grow}")
        prev = (n, t)
    g = secompile.build_ir(deep_spec(1000))
    t_only = timeit(lambda: Counts(g).total, args.repeat)
    print(f"  counting alone on the 1000-block IR: {t_only * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
