"""onnxruntime latency of secompile's ONNX vs the ONNX torch.onnx.export makes of the same module.

    python benchmarks/bench_onnx.py [--batches 1 8] [--rounds N] [--threads 1]

One SE-ResNeXt-50 module (seed 0, eval mode) is exported three ways: `secompile.to_onnx`
(lowered from the IR), `torch.onnx.export` (its default, torch.export-based exporter) and
`torch.onnx.export(dynamo=False)` (the TorchScript exporter). Each file is loaded into its
own onnxruntime CPU session with the default optimisations, checked against torch, and timed
side by side in this run: every round runs each model once, in turn (the order rotating
between rounds). Reported: the median time per run, and the median over rounds of the
within-round ratio ours / torch, which cancels load that drifts over the run (< 1: ours is
faster). Export times are wall-clock, best of --export-repeats runs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import secompile  # noqa: E402
from secompile import to_onnx  # noqa: E402

SPEC = os.path.join(ROOT, "specs", "se_resnext50.yaml")


def export_ours(spec, model, x, path):
    to_onnx(spec, model, path=path)


def export_dynamo(spec, model, x, path):
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["output"],
                      dynamic_shapes={"x": {0: batch}}, dynamo=True)


def export_legacy(spec, model, x, path):
    torch.onnx.export(model, (x,), path, input_names=["input"],
                      output_names=["output"], opset_version=17,
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, dynamo=False)


EXPORTERS = {"ours": ("secompile.to_onnx", export_ours),
             "dynamo": ("torch.onnx.export", export_dynamo),
             "legacy": ("torch.onnx.export(dynamo=False)", export_legacy)}


def timed_export(fn, spec, model, x, path, repeats):
    times = []
    for _ in range(repeats):
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the exporters' progress lines and deprecation notes
            t = time.perf_counter()
            fn(spec, model, x, path)
            times.append(time.perf_counter() - t)
    return min(times)


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def latency(sessions: dict, x: np.ndarray, rounds: int) -> dict:
    """Seconds of each run of each session: one run of every model per round, interleaved
    (the order rotating), so background load falls on all of them alike."""
    names = list(sessions)
    feeds = {n: {sessions[n].get_inputs()[0].name: x} for n in names}
    for n in names:   # warm-up: allocations, thread pools, prepacked weights
        for _ in range(2):
            sessions[n].run(None, feeds[n])
    times = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            sessions[n].run(None, feeds[n])
            times[n].append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=SPEC)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved rounds per batch size (default: 60 at batch 1, 15 at 8)")
    ap.add_argument("--threads", type=int, default=1,
                    help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--export-repeats", type=int, default=2)
    ap.add_argument("--exporters", nargs="+", default=["ours", "dynamo", "legacy"],
                    choices=list(EXPORTERS))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(args.threads, 1))

    spec = secompile.load_spec(args.spec)
    g = secompile.build_ir(spec)
    model = secompile.compile(spec, seed=0).eval()
    x0 = torch.randn(1, *g.input_shape)
    print(f"{spec.name}: {sum(p.numel() for p in model.parameters()):,} parameters, input "
          f"{g.input_shape}; torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime "
          f"{ort.__version__} (CPU, {args.threads or 'default'} "
          f"thread{'s' if args.threads != 1 else ''})")

    tmp = tempfile.mkdtemp(prefix="bench_onnx.")
    sessions, rows = {}, []
    for name in args.exporters:
        label, fn = EXPORTERS[name]
        path = os.path.join(tmp, f"{name}.onnx")
        secs = timed_export(fn, spec, model, x0, path, args.export_repeats)
        m = onnx.load(path, load_external_data=False)
        sessions[name] = session(path, args.threads)
        with torch.no_grad():
            want = model(x0.repeat(3, 1, 1, 1)).numpy()
        got = sessions[name].run(None, {sessions[name].get_inputs()[0].name:
                                        x0.repeat(3, 1, 1, 1).numpy()})[0]
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)
                   if f.startswith(name + "."))
        rows.append((name, label, secs, len(m.graph.node), m.opset_import[0].version, size,
                     float(np.abs(got - want).max())))
    print("\nexport                                    time     nodes  opset      MB  max |ORT - "
          "torch| (batch 3)")
    for name, label, secs, nodes, opset, size, diff in rows:
        print(f"  {label:<38} {secs:7.2f} s {nodes:7d} {opset:6d} {size / 1e6:7.1f}  {diff:.2e}")

    others = [n for n in args.exporters if n != "ours"]
    print("\nlatency: median ms per run; ours/it = median over rounds of the ratio "
          "within the round")
    print(f"batch  rounds  {'ours':>7}"
          + "".join(f"  {EXPORTERS[n][0]:>32}  ours/it" for n in others))
    for b in args.batches:
        rng = np.random.default_rng(b)
        x = rng.standard_normal((b, *g.input_shape), dtype=np.float32)
        rounds = args.rounds or max(15, 60 // b)
        t = latency(sessions, x, rounds)
        line = (f"{b:5d}  {rounds:6d}  {statistics.median(t['ours']) * 1e3:7.1f}" if "ours" in t
                else f"{b:5d}")
        for n in others:
            ratio = (statistics.median(a / c for a, c in zip(t["ours"], t[n])) if "ours" in t
                     else float("nan"))
            line += f"  {statistics.median(t[n]) * 1e3:32.1f}  {ratio:7.3f}"
        print(line, flush=True)
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
