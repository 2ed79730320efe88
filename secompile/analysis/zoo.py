"""The model zoo table: every spec of a directory with its analytic cost and SE overhead.

    rows = zoo_table("specs")          # one dict per spec, counted from the IR (no torch)
    print(render_markdown(rows))       # docs/zoo.md is exactly this text

`secompile zoo [DIR] [--json|--markdown]` prints the same table. An SE spec `se_X.yaml` is
paired with the plain spec `X.yaml` of the same directory; its overhead is the relative
increase of multiply-adds and parameters over that plain network.

The comparison with the SE paper (Table 2) and with the authors' Caffe prototxt files is
generated from the rows as well, so the committed docs/zoo.md always shows the counts of
the committed specs; the constants below are the published numbers being compared against.
"""
from __future__ import annotations

import json
import os
import sys

from ..spec.errors import SpecError

# The SE paper, Table 2: GFLOPs (one multiply-add = one FLOP) at 224 x 224 (299 for
# Inception-ResNet-v2): spec file stem -> (network as the paper names it, G multiply-adds).
PAPER_TABLE2 = {
    "resnet50": ("ResNet-50", 3.86), "se_resnet50": ("SE-ResNet-50", 3.87),
    "resnet101": ("ResNet-101", 7.58), "se_resnet101": ("SE-ResNet-101", 7.60),
    "resnet152": ("ResNet-152", 11.30), "se_resnet152": ("SE-ResNet-152", 11.32),
    "resnext50": ("ResNeXt-50 (32x4d)", 4.24), "se_resnext50": ("SE-ResNeXt-50 (32x4d)", 4.25),
    "resnext101_32x4d": ("ResNeXt-101 (32x4d)", 7.99), "se_resnext101_32x4d": ("SE-ResNeXt-101 (32x4d)", 8.00),
    "vgg16_bn": ("VGG-16 (BN)", 15.47), "se_vgg16_bn": ("SE-VGG-16 (BN)", 15.48),
    "bn_inception": ("BN-Inception", 2.03), "se_bn_inception": ("SE-BN-Inception", 2.04),
    "inception_resnet_v2": ("Inception-ResNet-v2", 11.75),
    "se_inception_resnet_v2": ("SE-Inception-ResNet-v2", 11.76),
}

# ../shared/reference/caffe/README.md: the authors' prototxt files counted under Caffe's rules
# (conv + fc multiply-adds; params = conv weights and biases, Scale gamma/beta, fc).
CAFFE_REFERENCE = {
    "se_bn_inception": ("SE-BN-Inception.prototxt", 2_033_239_424, 11_931_622),
    "se_resnet50": ("SE-ResNet-50.prototxt", 3_860_488_192, 28_088_024),
    "se_resnet101": ("SE-ResNet-101.prototxt", 7_574_937_600, 49_326_872),
    "se_resnet152": ("SE-ResNet-152.prototxt", 11_288_993_792, 66_821_848),
    "se_resnext50": ("SE-ResNeXt-50.prototxt", 4_232_994_816, 27_559_896),
    "se_resnext101_32x4d": ("SE-ResNeXt-101.prototxt", 7_974_739_968, 48_955_416),
    "senet154": ("SENet-154.prototxt", 20_688_363_520, 115_088_984),
}
# Parameters a README row counts that the network does not have. None since the README was
# corrected: it once gave SE-BN-Inception a weight per channel of its ten two-input SE `Scale`
# layers (6,624 in all), which own no weights.
CAFFE_README_EXTRA_PARAMS: dict = {}


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def spec_files(directory) -> list[str]:
    """The top-level `*.yaml` specs of a directory (block-template folders are not specs)."""
    directory = os.fspath(directory)
    return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                  if f.endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(directory, f)))


def _family_key(stem: str) -> tuple:
    base = stem[3:] if stem.startswith("se_") else stem
    return (base, stem.startswith("se_"))


def zoo_table(directory="specs") -> list[dict]:
    """One row per spec of `directory`, plain networks before their SE variant.

    Row keys: name, file, input (C, H, W), output, macs, conv_linear_macs, params, se_blocks,
    plain (file of the paired plain spec or None), se_macs_pct, se_params_pct (overhead over
    the plain spec in %, None without one), error (None, or the spec's problems as text).
    """
    from ..api import build_ir
    from .counts import report

    files = spec_files(directory)
    rows: dict[str, dict] = {}
    for path in files:
        stem = _stem(path)
        row = {"name": stem, "file": os.path.basename(path), "input": None, "output": None, "macs": None,
               "conv_linear_macs": None, "params": None, "se_blocks": None, "plain": None,
               "se_macs_pct": None, "se_params_pct": None, "error": None}
        try:
            rep = report(build_ir(path))
        except SpecError as e:
            row["error"] = "\n".join(e.messages)
        else:
            row.update(name=rep["name"], input=tuple(rep["input"]), output=tuple(rep["output"]),
                       macs=rep["total"]["macs"], conv_linear_macs=rep["total"]["conv_linear_macs"],
                       params=rep["total"]["params"], se_blocks=rep["se"]["blocks"])
        rows[stem] = row
    for stem, row in rows.items():
        plain = rows.get(stem[3:]) if stem.startswith("se_") else None
        if plain is None:
            continue
        row["plain"] = plain["file"]
        if row["error"] is None and plain["error"] is None:
            row["se_macs_pct"] = 100.0 * (row["macs"] - plain["macs"]) / plain["macs"]
            row["se_params_pct"] = 100.0 * (row["params"] - plain["params"]) / plain["params"]
    return [rows[s] for s in sorted(rows, key=_family_key)]


# -- text ----------------------------------------------------------------------------------
def _g(n) -> str:
    return "" if n is None else f"{n / 1e9:.3f}"


def _m(n) -> str:
    return "" if n is None else f"{n / 1e6:.2f}"


def _pct(x) -> str:
    return "" if x is None else f"{x:+.2f}%"


def _size(row) -> str:
    return "" if row["input"] is None else "x".join(map(str, row["input"][1:]))


PREAMBLE = """\
# The model zoo

Every network the SE paper evaluates, as a spec in `specs/` (plain and SE variant side by
side), counted analytically from the IR. This file is generated: `secompile zoo --markdown >
docs/zoo.md` (a test checks that the committed file is current).

- **MACs** is `secompile count`'s `total.macs`: multiply-adds of convolutions and fully
  connected layers, plus one per element read by average pooling (the SE squeeze included),
  one per element of an SE scale and one per element of a scaled residual add (see
  docs/counting.md). This is the count the paper's Table 2 uses: it is what makes
  SE-ResNet-50 3.87 G rather than 3.86 G.
- **conv+fc** is `total.conv_linear_macs`, convolutions and fully connected layers only:
  the count of the Caffe README (`../shared/reference/caffe/README.md`).
- **params** counts every learned tensor (conv and fc weights and biases, BN scale and shift);
  it equals `sum(p.numel() for p in secompile.compile(spec).parameters())` (tested).
- **SE overhead** is relative to the plain spec of the same family (`se_X.yaml` vs `X.yaml`).
"""

NOTES = """\
## Notes on the networks

- **ResNet-101/152, ResNeXt-101 (32x4d)** are the original Caffe layouts: ResNet puts the
  stride of a down-sampling bottleneck on its first 1x1 conv, ResNeXt on its grouped 3x3; the
  stem's max pool has no padding and rounds up. Their SE versions reproduce the authors'
  prototxt files conv for conv (tested layer by layer, including pooling and concatenation).
- **SENet-154** (`senet154.yaml`, no plain twin in the paper) reproduces SENet-154.prototxt
  and the published port `legacy_senet154` (every state_dict tensor shape is tested): the
  three-conv stem, 64 x 4d grouped bottlenecks, 3x3 stride-2 projection shortcuts (1x1 where
  the stride is 1), SE reductions C/16 (256 -> 16 first), dropout 0.2 before the classifier.
- **VGG-16 (BN)** is configuration D with BN after every conv (torchvision's `vgg16_bn`:
  conv biases kept before the BN). Each conv stage is a plain layer stage; the max pools sit
  between stages; SE-VGG-16 recalibrates every stage's output (its last conv + BN + ReLU,
  before the pool). Its input must be 224 x 224 (the fc6 weight expects 512 x 7 x 7).
- **BN-Inception** is the variant of the SE authors' SE-BN-Inception.prototxt, which is the
  variant the paper counted: the BN paper's Figure 5 modules (double 3x3 branches, average
  or max pool projections, stride-2 modules 3c and 4e passing the pooled input through) with
  a full 7x7/2 first conv (118 M multiply-adds). The BN paper's own model (TF-slim
  `inception_v2`) makes that first conv depthwise separable with depth multiplier 8 (34 M),
  and TF-slim lists 3.883 GFLOPs = 1.94 G multiply-adds for it at 224, about 4% under Table 2:
  the paper's 2.03 / 2.04 G are the Caffe variant's. SE-BN-Inception puts an SE block on each
  whole module's concatenated output (all ten modules, the stride-2 ones included) and
  matches the prototxt's conv+fc count exactly. Plain BN-Inception's MACs are 0.5% above its
  conv+fc count: the 3x3 average pools of the pool branches read 9 inputs per output.
- **SE-BN-Inception parameters.** The network has {se_bn_params:,} parameters, as the Caffe
  README lists. Its ten SE scale layers (`inception_*/output`, Caffe `Scale` layers with two
  inputs, `axis: 0`, `bias_term: false`) take their factors from the second input (the sigmoid
  gate) and own no weights; an earlier version of the README counted a learned per-channel
  weight for each, 6,624 = 256 + 320 + 3 x 576 + 2 x 608 + 1056 + 2 x 1024 parameters too many.
- **Inception-ResNet-v2** is the network as released (TF-slim `inception_resnet_v2.py`, the
  published checkpoint; timm `inception_resnet_v2`, whose 55,843,464 parameters it matches):
  Mixed_5b stem module, 10 x block35 (scale 0.17), Reduction-A (k, l, m, n = 256, 256, 384,
  384), 20 x block17 (scale 0.10), Reduction-B, 9 x block8 (scale 0.20) and a final unscaled
  block8 without ReLU, 1x1 conv to 1536, pool, dropout 0.2, fc. Its counts agree with
  TF-slim's own (google-research `receptive_field`, rf_benchmark table: 12.963 and 29.215
  GFLOPs = 2 x multiply-adds up to Conv2d_7b_1x1 at 224 and 321; this spec gives 12.948 and
  29.182, tested). At 299 x 299 it costs {irv2_cl:.3f} G conv+fc multiply-adds, {irv2_pct:+.1f}%
  against Table 2's 11.75 G. **The difference is not resolved**: the paper does not say which
  Inception-ResNet-v2 it counted, and the authors never released its definition
  (hujie-frank/SENet issue #88 asks for it and is open). The paper's own figures (Szegedy et
  al. 2016, Fig. 15: Inception-v4 stem, 5 / 10 / 5 residual modules) cannot be built as
  drawn (their 1x1 projections give 1154 and 2048 channels to add to 1152- and 2144-channel
  inputs); with the projections set to the input widths they cost 9.26 G (5 / 10 / 5
  modules) or 14.14 G (10 / 20 / 10), both built in tests/test_zoo.py. Neither gives 11.75 G,
  and nothing in the spec has been changed to approach that figure. Where the released
  network spends its multiply-adds at 299: stem 1.34 G (Conv2d_4a_3x3 alone 0.70 G),
  Mixed_5b 0.33 G, 10 x block35 1.50 G, Mixed_6a 1.40 G, 20 x block17 6.51 G, Mixed_7a
  0.59 G, 10 x block8 1.30 G, Conv2d_7b 0.20 G. SE-Inception-ResNet-v2 puts an SE block on
  the residual branch of each of the 40 residual modules (after the linear 1x1 projection,
  before the scaled add); the stem and reduction modules are not residual and get none.
- **MobileNet v1** ("1.0 MobileNet-224") and **ShuffleNet v1** ("1x, g = 3") are the Table 3
  baselines (not in Table 2). MobileNet: 569 M multiply-adds, 4.2 M parameters in its paper.
  SE-MobileNet puts an SE block on the output of each depthwise separable unit (after the
  pointwise conv). ShuffleNet: 140 M multiply-adds in its paper and 138 M listed for the
  authors' released model (megvii ShuffleNet-Series; a calflops count of that model gives
  137.46 M, the conv+fc count here); the first pointwise conv of stage 2 is not grouped, as
  in the paper. SE-ShuffleNet puts an SE block on the main branch of every unit, before the
  add or concat.
- **SE overhead** (section 4 of the paper): SE-ResNet-50 adds about 10% parameters (eq. 5:
  (2 / r) * sum N_s C_s^2, plus the fc biases) and about 0.26% multiply-adds, which is
  0.01 / 3.86 of the rounded figures 3.86 -> 3.87 G; the unrounded counts here,
  {r50_macs:.3f} -> {se_r50_macs:.3f} G, are {se_r50_pct:+.2f}% and round to the same two figures.
  SE parameters grow with the square of the widths they recalibrate, so they weigh most where
  the late stages are wide relative to the rest of the network (ShuffleNet, whose own convs
  are grouped while the SE fcs are dense: +33%; Inception-ResNet-v2, 2080-channel block8
  modules); SE-VGG-16 adds five SE blocks to a network whose parameters sit in its fc layers.
"""


def _table2(rows_by_stem: dict) -> list[str]:
    out = ["## Table 2 of the paper", "",
           "| network | spec | paper (G) | MACs (G) | diff | conv+fc (G) | diff |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for stem, (label, paper) in PAPER_TABLE2.items():
        r = rows_by_stem.get(stem)
        if r is None or r["error"] is not None:
            continue
        d1 = 100.0 * (r["macs"] / 1e9 - paper) / paper
        d2 = 100.0 * (r["conv_linear_macs"] / 1e9 - paper) / paper
        out.append(f"| {label} | `{r['file']}` | {paper:.2f} | {_g(r['macs'])} | {d1:+.2f}% | "
                   f"{_g(r['conv_linear_macs'])} | {d2:+.2f}% |")
    return out + [""]


def _caffe(rows_by_stem: dict) -> list[str]:
    out = ["## The authors' Caffe models", "",
           "Counts of the reference prototxt files (`../shared/reference/caffe/README.md`) against the "
           "spec reproducing each one.", "",
           "| prototxt | spec | conv+fc (README) | conv+fc (spec) | params (README) | params (spec) |",
           "|---|---|---:|---:|---:|---:|"]
    for stem, (proto, macs, params) in CAFFE_REFERENCE.items():
        r = rows_by_stem.get(stem)
        if r is None or r["error"] is not None:
            continue
        m = "equal" if r["conv_linear_macs"] == macs else f"{r['conv_linear_macs']:,}"
        extra = CAFFE_README_EXTRA_PARAMS.get(stem, 0)
        if r["params"] == params:
            p = "equal"
        elif extra and r["params"] == params - extra:
            p = f"{r['params']:,} (README - {extra:,}, see notes)"
        else:
            p = f"{r['params']:,}"
        out.append(f"| {proto} | `{r['file']}` | {macs:,} | {m} | {params:,} | {p} |")
    return out + [""]


def render_markdown(rows: list[dict]) -> str:
    """The zoo as Markdown: table, comparison with the paper and the Caffe models, notes."""
    by_stem = {_stem(r["file"]): r for r in rows}
    lines = [PREAMBLE, "## All specs", "",
             "| spec | network | input | MACs (G) | conv+fc MACs | params | SE blocks | SE MACs | SE params |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["error"] is not None:
            lines.append(f"| `{r['file']}` | error: {r['error'].splitlines()[0]} | | | | | | | |")
            continue
        lines.append(f"| `{r['file']}` | {r['name']} | {_size(r)} | {_g(r['macs'])} | {r['conv_linear_macs']:,} | "
                     f"{r['params']:,} | {r['se_blocks']} | {_pct(r['se_macs_pct'])} | {_pct(r['se_params_pct'])} |")
    lines.append("")
    lines += _table2(by_stem)
    lines += _caffe(by_stem)
    se_bn = by_stem.get("se_bn_inception")
    irv2 = by_stem.get("inception_resnet_v2")
    se_r50 = by_stem.get("se_resnet50")
    parts = (se_bn, irv2, se_r50)
    if all(r is not None and r["error"] is None for r in parts) and se_r50["se_macs_pct"] is not None:
        cl = irv2["conv_linear_macs"] / 1e9
        lines.append(NOTES.format(se_bn_params=se_bn["params"], irv2_cl=cl,
                                  irv2_pct=100.0 * (cl - 11.75) / 11.75, se_r50_macs=se_r50["macs"] / 1e9,
                                  r50_macs=by_stem["resnet50"]["macs"] / 1e9,
                                  se_r50_pct=se_r50["se_macs_pct"]).rstrip("\n"))
    return "\n".join(lines).rstrip("\n") + "\n"


def _rich_table(rows, directory, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"model zoo: {directory}", title_justify="left")
    for col in ("spec", "input", "MACs (G)", "conv+fc (G)", "params (M)", "SE", "SE MACs", "SE params"):
        t.add_column(col, justify="left" if col in ("spec", "input") else "right")
    for r in rows:
        if r["error"] is not None:
            t.add_row(r["file"], "error", "", "", "", "", "", "", style="red")
            continue
        t.add_row(_stem(r["file"]), _size(r), _g(r["macs"]), _g(r["conv_linear_macs"]), _m(r["params"]),
                  str(r["se_blocks"]), _pct(r["se_macs_pct"]), _pct(r["se_params_pct"]))
    Console(file=file or sys.stdout, width=120).print(t)


def zoo_cli(args) -> int:
    """`secompile zoo [DIR] [--json|--markdown]`: 0, or 2 when a spec has problems."""
    directory = args.directory
    if not os.path.isdir(directory):
        print(f"secompile zoo: {directory}: not a directory", file=sys.stderr)
        return 2
    rows = zoo_table(directory)
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
    elif getattr(args, "markdown", False):
        sys.stdout.write(render_markdown(rows))
    else:
        _rich_table(rows, directory)
    errors = [r for r in rows if r["error"] is not None]
    for r in errors:
        print(r["error"], file=sys.stderr)
    return 2 if errors else 0


__all__ = ["zoo_table", "render_markdown", "zoo_cli", "spec_files", "PAPER_TABLE2", "CAFFE_REFERENCE"]
