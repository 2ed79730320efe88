#!/usr/bin/env python
"""Parity of a compiled secompile spec with a timm model: same tensors, same counts, same outputs.

Runs in the timm venv with secompile importable:

    OMP_NUM_THREADS=1 PYTHONPATH=. /work/timmvenv/bin/python tools/timm_parity.py \
        seresnet50 specs/se_resnet50_tv.yaml
    ... --map load_weights  # map with secompile.load_weights(source="timm"), not by position

or from Python (a test that skips where timm is missing):

    from tools.timm_parity import parity
    rep = parity("seresnet50", secompile.compile("specs/se_resnet50_tv.yaml"))
    assert rep.ok, rep

What it does, in order:
  1. creates timm's model (pretrained=False, eval) and randomises every BatchNorm's weight, bias,
     running_mean and running_var (timm zero-initialises the last BN gamma of residual branches
     in ResNet/RegNet, which would hide the branch from the comparison), from a fixed seed;
  2. maps timm's state_dict onto ours:
       - "position" (default): the i-th entry of timm's state_dict goes to the i-th entry of ours,
         after checking that the two sequences have the same length and the same shapes entry by
         entry; the first mismatch is reported with its index, both keys, both shapes and the
         entries around it (this also catches a different order, e.g. SE before the shortcut);
       - "load_weights": secompile.load_weights(model, sd, source="timm"), the product's own
         mapper (layouts it knows only);
  3. compares the outputs for one random batch (2x3x224x224, float32, eval, no grad):
     ok when |ours - timm| <= tol * max(1, |timm|) for every element (tol 1e-4, issue 13);
  4. when a spec path is given, also compares secompile.count(spec) (params, conv+linear MACs) with
     the timm numbers measured by tools/timm_reference.py's hooks.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@dataclass
class ParityReport:
    timm_name: str
    mapping: str = "position"
    mapped: bool = False
    map_error: str | None = None
    max_abs_diff: float | None = None
    max_rel_excess: float | None = None     # max over elements of |d| / max(1, |y|); ok if <= tol
    max_abs_timm: float | None = None
    tol: float = 1e-4
    counts: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        counts_ok = all(v["ours"] == v["timm"] for v in self.counts.values())
        return (self.mapped and self.max_rel_excess is not None and self.max_rel_excess <= self.tol
                and counts_ok)

    def __str__(self) -> str:
        lines = [f"timm {self.timm_name}: {'OK' if self.ok else 'FAIL'} (mapping: {self.mapping})"]
        for k, v in self.counts.items():
            mark = "==" if v["ours"] == v["timm"] else "!="
            diff = "" if v["ours"] == v["timm"] else f"  (ours - timm = {v['ours'] - v['timm']:+,})"
            lines.append(f"  {k}: ours {v['ours']:,} {mark} timm {v['timm']:,}{diff}")
        if self.map_error:
            lines.append("  state_dict mapping failed:\n    "
                         + self.map_error.replace("\n", "\n    "))
        if self.max_abs_diff is not None:
            lines.append(f"  outputs: max|diff| {self.max_abs_diff:.3e}, max|y_timm| "
                         f"{self.max_abs_timm:.3e}, max |diff|/max(1,|y|) "
                         f"{self.max_rel_excess:.3e} (tol {self.tol:g})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _shape(t) -> str:
    return "x".join(map(str, t.shape)) if t.dim() else "scalar"


def randomize_bn(model: nn.Module, seed: int = 0) -> int:
    """Give every BatchNorm random affine parameters and statistics; returns how many were
    changed."""
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                if m.weight is not None:
                    m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                n += 1
    return n


def map_by_position(src: dict, dst_model: nn.Module, context: int = 3) -> dict:
    """timm's entries onto ours, i-th to i-th; raises ValueError naming the first shape mismatch."""
    dst = dst_model.state_dict()
    s_items, d_items = list(src.items()), list(dst.items())
    problems = []
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(s_items, d_items)):
        if tuple(sv.shape) != tuple(dv.shape):
            lo, hi = max(0, i - context), min(max(len(s_items), len(d_items)), i + context + 1)
            rows = []
            for j in range(lo, hi):
                a = f"{s_items[j][0]} {_shape(s_items[j][1])}" if j < len(s_items) else "-"
                b = f"{d_items[j][0]} {_shape(d_items[j][1])}" if j < len(d_items) else "-"
                rows.append(f"{'>' if j == i else ' '} #{j:<4d} timm {a:<55s} ours {b}")
            problems.append(f"first shape mismatch at entry #{i}: timm {sk} {_shape(sv)} vs ours "
                            f"{dk} {_shape(dv)}\n" + "\n".join(rows))
            break
    if len(s_items) != len(d_items) and not problems:
        i = min(len(s_items), len(d_items))
        extra = (f"timm has {len(s_items) - i} more, first {s_items[i][0]} {_shape(s_items[i][1])}"
                 if len(s_items) > i
                 else f"ours has {len(d_items) - i} more, first {d_items[i][0]} "
                      f"{_shape(d_items[i][1])}")
        problems.append(f"{len(s_items)} timm entries vs {len(d_items)} ours (all shapes equal "
                        f"up to #{i - 1}); {extra}")
    elif len(s_items) != len(d_items):
        problems.append(f"(and {len(s_items)} timm entries vs {len(d_items)} ours)")
    if problems:
        raise ValueError("\n".join(problems))
    return {dk: sv.clone() for (dk, _), (_, sv) in zip(d_items, s_items)}


def _timm_counts(model: nn.Module) -> dict:
    from timm_reference import count_macs
    hooks = count_macs(model, torch.randn(1, 3, 224, 224))["kinds"]
    return {"params": sum(p.numel() for p in model.parameters()),
            "conv_linear_macs": hooks["conv2d"] + hooks["conv1d"] + hooks["linear"]}


def parity(timm_model, ours: nn.Module, *, spec=None, mapping: str = "position", batch: int = 2,
           size: int = 224, tol: float = 1e-4, seed: int = 0) -> ParityReport:
    """Compare `ours` (a compiled secompile module) with timm's model (a name or a module)."""
    import timm
    name = timm_model if isinstance(timm_model, str) else type(timm_model).__name__
    if isinstance(timm_model, str):
        torch.manual_seed(seed)
        timm_model = timm.create_model(timm_model, pretrained=False)
    timm_model = timm_model.eval().float()
    ours = ours.eval().float()
    rep = ParityReport(name, mapping=mapping, tol=tol)
    randomize_bn(timm_model, seed)

    timm_count = _timm_counts(timm_model)
    rep.counts["params (module numel)"] = {"ours": sum(p.numel() for p in ours.parameters()),
                                           "timm": timm_count["params"]}
    if spec is not None:
        import secompile
        c = secompile.count(spec, input_size=224)["total"]   # timm's count is at 224 (a variant's
        # own input size may differ: efficientnet_b2 is 256)
        rep.counts["params (secompile.count)"] = {"ours": c["params"], "timm": timm_count["params"]}
        rep.counts["conv+linear MACs (secompile.count)"] = {"ours": c["conv_linear_macs"],
                                                            "timm": timm_count["conv_linear_macs"]}

    sd = timm_model.state_dict()
    try:
        if mapping == "position":
            ours.load_state_dict(map_by_position(sd, ours), strict=True)
        elif mapping == "load_weights":
            import secompile
            r = secompile.load_weights(ours, sd, source="timm")
            rep.notes.append(f"load_weights: {str(r).splitlines()[0] if str(r) else r}")
        else:
            raise ValueError(f"unknown mapping {mapping!r}")
        rep.mapped = True
    except Exception as e:  # noqa: BLE001 - the report carries the reason
        rep.map_error = f"{type(e).__name__}: {e}"
        return rep

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        y_t = timm_model(x)
        y_o = ours(x)
    if isinstance(y_o, (tuple, list)):
        y_o = y_o[0]
    if y_o.shape != y_t.shape:
        rep.map_error = f"output shapes differ: ours {tuple(y_o.shape)} vs timm {tuple(y_t.shape)}"
        rep.mapped = False
        return rep
    d = (y_o - y_t).abs()
    rep.max_abs_diff = d.max().item()
    rep.max_abs_timm = y_t.abs().max().item()
    rep.max_rel_excess = (d / y_t.abs().clamp(min=1.0)).max().item()
    if rep.max_abs_timm < 1e-3:
        rep.notes.append("timm's outputs are tiny: the comparison says little (check the "
                         "BN randomisation)")
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("timm_name")
    ap.add_argument("spec", help="a secompile spec (YAML path)")
    ap.add_argument("--map", dest="mapping", choices=["position", "load_weights"],
                    default="position")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    import secompile
    ours = secompile.compile(args.spec, seed=args.seed)
    rep = parity(args.timm_name, ours, spec=args.spec, mapping=args.mapping, batch=args.batch,
                 size=args.size, tol=args.tol, seed=args.seed)
    print(rep)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
