#!/usr/bin/env python
"""Reference numbers for the modern SE family, read from timm (issue 13).

Runs in the timm venv (CI has no timm; the JSON it writes is committed and read by tests):

    OMP_NUM_THREADS=1 /work/timmvenv/bin/python tools/timm_reference.py \
        [--out tests/reference/timm_counts.json] [--layers tests/reference/timm_layers] \
        [--tsv-dir ../shared/reference/state_dicts] [--models seresnet18 ...]

Per model (pretrained=False, eval, 1x3x224x224):
  - params: sum of numel over parameters (no buffers);
  - multiply-adds of conv and linear layers, from forward hooks on nn.Conv2d / nn.Conv1d /
    nn.Linear: MACs = output elements x in_channels / groups x prod(kernel) (x in_features for
    Linear); bias adds are not counted; padded taps are (a conv's MACs do not depend on padding).
    Split into conv2d, conv1d (ECA's 1-D conv across channels) and linear;
  - a cross-check with torch.utils.flop_counter: (aten.convolution + addmm + mm + bmm FLOPs) / 2
    must equal the hook count (the tool exits 1 otherwise);
  - the state_dict layout (key, shape, in order, buffers included) and its comparison with the
    published layout <tsv-dir>/<name>.tsv (format: a '# ...' header line, then `key<TAB>AxBxC`,
    `scalar` for 0-d tensors such as num_batches_tracked);
  - a breakdown of params and MACs per top-level module (`layer1`, `blocks.3`, `s2`, `head`, ...),
    for finding where a spec's count differs.

--layers DIR also writes, per model, DIR/<name>.tsv: every conv / linear / BN / pool / activation
leaf module in execution order with its hyper-parameters and its input and output shapes at 224
(the layer-by-layer truth a spec writer checks against).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import OrderedDict

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from torch import nn

MODELS = [
    "seresnet18", "seresnet34", "seresnext26d_32x4d", "efficientnet_b0",
    "mobilenetv3_large_100", "mobilenetv3_small_100", "regnety_008", "regnety_032",
    "ecaresnet50d", "skresnet18", "gcresnet50t", "resnest14d", "resnest50d", "rexnet_100",
]
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# ../shared beside the checkout (tests/support.py's SHARED), or above a worktree folder
DEFAULT_TSV_DIR = next((d for d in (os.path.join(REPO, "..", "shared", "reference", "state_dicts"),
                                    os.path.join(REPO, "..", "..", "shared",
                                                 "reference", "state_dicts"))
                        if os.path.isdir(d)), None)


def create(name: str) -> nn.Module:
    import timm
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


def shape_str(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) if t.dim() else "scalar"


def group_of(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 1:   # EfficientNet / MobileNetV3: one group per stage
        return ".".join(parts[:2])
    return parts[0]


def _macs(m: nn.Module, out: torch.Tensor) -> int:
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        return out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return out.numel() * m.in_features
    return 0


def forward_with_hooks(model: nn.Module, x: torch.Tensor, hooks) -> None:
    """One no-grad forward with `hooks` [(module, forward hook)] registered, removed after."""
    handles = [m.register_forward_hook(fn) for m, fn in hooks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()


def count_macs(model: nn.Module, x: torch.Tensor) -> dict:
    """MACs per kind and per top-level group, from forward hooks."""
    kinds = {"conv2d": 0, "conv1d": 0, "linear": 0}
    groups: dict[str, int] = OrderedDict()

    def hook(name):
        def fn(m, inp, out):
            n = _macs(m, out)
            kind = ("conv1d" if isinstance(m, nn.Conv1d)
                    else "conv2d" if isinstance(m, nn.Conv2d) else "linear")
            kinds[kind] += n
            g = group_of(name)
            groups[g] = groups.get(g, 0) + n
        return fn

    forward_with_hooks(model, x, [(m, hook(name)) for name, m in model.named_modules()
                                  if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))])
    return {"kinds": kinds, "groups": groups}


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> dict:
    from torch.utils.flop_counter import FlopCounterMode
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        model(x)
    glob = mode.get_flop_counts().get("Global", {})
    by_op = {str(k): int(v) for k, v in glob.items()}

    def op(k):   # keys read "aten.convolution", "aten.addmm", ...
        return k.split(".")[-1]
    conv = sum(v for k, v in by_op.items()
               if op(k) in ("convolution", "_convolution", "conv1d", "conv2d"))
    mm = sum(v for k, v in by_op.items() if op(k) in ("addmm", "mm", "bmm"))
    return {"by_op_flops": by_op, "conv_macs": conv // 2, "mm_macs": mm // 2,
            "total_macs": (conv + mm) // 2}


def read_tsv(path: str) -> tuple[str, list[tuple[str, str]]]:
    header, rows = "", []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("#"):
                header = header or line
                continue
            key, shape = line.split("\t")
            rows.append((key, shape))
    return header, rows


def compare_layout(ours: list[tuple[str, str]], ref: list[tuple[str, str]]) -> list[str]:
    problems = []
    if len(ours) != len(ref):
        problems.append(f"{len(ours)} keys in timm's model, {len(ref)} in the TSV")
    for i, (a, b) in enumerate(zip(ours, ref)):
        if a != b:
            problems.append(f"first difference at #{i}: model {a[0]} {a[1]} vs TSV {b[0]} {b[1]}")
            break
    only_model = sorted({k for k, _ in ours} - {k for k, _ in ref})
    only_tsv = sorted({k for k, _ in ref} - {k for k, _ in ours})
    if only_model:
        problems.append(f"keys only in the model: "
                        f"{only_model[:10]}{' ...' if len(only_model) > 10 else ''}")
    if only_tsv:
        problems.append(f"keys only in the TSV: "
                        f"{only_tsv[:10]}{' ...' if len(only_tsv) > 10 else ''}")
    return problems


# --- layer table ------------------------------------------------------------------------------

def _describe(m: nn.Module) -> tuple[str, str]:
    def t(v):
        return v[0] if isinstance(v, tuple) and len(set(v)) == 1 else v
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        pad = m.padding if isinstance(m.padding, str) else t(m.padding)
        return type(m).__name__, (f"in={m.in_channels} out={m.out_channels} k={t(m.kernel_size)} "
                                  f"s={t(m.stride)} p={pad} d={t(m.dilation)} g={m.groups} "
                                  f"bias={m.bias is not None}")
    if isinstance(m, nn.Linear):
        return "Linear", f"in={m.in_features} out={m.out_features} bias={m.bias is not None}"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        extra = ""
        act = getattr(m, "act", None)     # timm BatchNormAct2d carries its activation
        if act is not None:
            extra = f" act={type(act).__name__}"
        return type(m).__name__, f"C={m.num_features} eps={m.eps:g} momentum={m.momentum}{extra}"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return type(m).__name__, (f"k={m.kernel_size} s={m.stride} p={m.padding} ceil={m.ceil_mode}"
                                  + (f" count_include_pad={m.count_include_pad}"
                                     if isinstance(m, nn.AvgPool2d) else ""))
    return type(m).__name__, ""


_LEAF_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm,
               nn.MaxPool2d, nn.AvgPool2d,
               nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
               nn.Identity, nn.Flatten,
               nn.Dropout)


def layer_table(model: nn.Module, x: torch.Tensor) -> list[str]:
    rows = []
    wanted = [(n, m) for n, m in model.named_modules()
              if n and (isinstance(m, _LEAF_TYPES) or type(m).__name__ in
                        ("Sigmoid", "HardSigmoid", "HardSwish", "Swish",
                         "SelectAdaptivePool2d", "DropPath"))]
    # timm's BatchNormAct2d runs its activation inside: the BN row names it (act=...), its children
    # go
    norm_act = [n for n, m in model.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)
                and hasattr(m, "act")]
    wanted = [(n, m) for n, m in wanted if not isinstance(m, nn.Identity)
              and not any(n.startswith(p + ".") for p in norm_act)]

    def hook(name, m):
        def fn(mod, inp, out):
            kind, desc = _describe(mod)
            i = "x".join(map(str, inp[0].shape)) if inp and torch.is_tensor(inp[0]) else "-"
            o = "x".join(map(str, out.shape)) if torch.is_tensor(out) else "-"
            macs = _macs(mod, out) if torch.is_tensor(out) else 0
            nparam = sum(p.numel() for p in mod.parameters(recurse=False))
            rows.append(f"{name}\t{kind}\t{desc}\t{i}\t{o}\t{nparam}\t{macs}")
        return fn

    forward_with_hooks(model, x, [(m, hook(n, m)) for n, m in wanted])
    return ["module\ttype\tattributes\tinput\toutput\tparams\tmacs"] + rows


# --- main -------------------------------------------------------------------------------------

def reference(name: str, tsv_dir: str | None) -> dict:
    model = create(name)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    params = sum(p.numel() for p in model.parameters())
    sd = model.state_dict()
    layout = [(k, shape_str(v)) for k, v in sd.items()]
    hooks = count_macs(model, x)
    fc = flop_counter_macs(model, x)
    kinds = hooks["kinds"]
    conv_linear = kinds["conv2d"] + kinds["conv1d"] + kinds["linear"]
    param_groups: dict[str, int] = OrderedDict()
    for n, p in model.named_parameters():
        g = group_of(n)
        param_groups[g] = param_groups.get(g, 0) + p.numel()
    with torch.no_grad():
        y = model(x)
    out = {
        "params": params,
        "conv_linear_macs": conv_linear,
        "conv_macs": kinds["conv2d"] + kinds["conv1d"],
        "conv2d_macs": kinds["conv2d"],
        "conv1d_macs": kinds["conv1d"],
        "linear_macs": kinds["linear"],
        "flop_counter_macs": fc["total_macs"],
        "flop_counter_ops": fc["by_op_flops"],
        "flop_counter_agrees": fc["total_macs"] == conv_linear,
        "state_dict_entries": len(layout),
        "state_dict_values": sum(v.numel() for v in sd.values()),
        "buffers": sum(b.numel() for b in model.buffers()),
        "output_shape": list(y.shape),
        "breakdown": {g: {"params": param_groups.get(g, 0), "macs": hooks["groups"].get(g, 0)}
                      for g in OrderedDict.fromkeys(list(param_groups) + list(hooks["groups"]))},
        "state_dict": [[k, s] for k, s in layout],
    }
    if tsv_dir:
        path = os.path.join(tsv_dir, f"{name}.tsv")
        if os.path.exists(path):
            header, ref = read_tsv(path)
            out["tsv"] = {"path": os.path.basename(path), "header": header,
                          "mismatches": compare_layout(layout, ref)}
        else:
            out["tsv"] = {"path": None, "mismatches": [f"no {path}"]}
    return out


FAMILIES = (["efficientnet_b%d" % i for i in range(8)]
            + [f"regnet{k}_{s}" for k in "xy" for s in ("002", "004", "006", "008", "016", "032",
                                                          "040", "064", "080", "120", "160",
                                                          "320")]
            + ["regnety_640", "regnety_1280", "regnety_2560"]
            + ["mobilenetv3_large_075", "mobilenetv3_large_100", "mobilenetv3_small_050",
               "mobilenetv3_small_075", "mobilenetv3_small_100"]
            + ["rexnet_100", "rexnet_130", "rexnet_150", "rexnet_200", "rexnet_300"]
            + ["rexnetr_100", "rexnetr_130", "rexnetr_150", "rexnetr_200", "rexnetr_300"])


def family_reference(name: str) -> dict:
    """The compact record of one family member (issue 21): params, conv+fc MACs at 224 and at
    timm's default input size, feature_info, and the state_dict layout (key, shape)."""
    import timm
    with torch.device("meta"):   # shapes only: regnety_2560 has 1.3 G parameters
        model = timm.create_model(name, pretrained=False).eval()
    size = timm.models.get_pretrained_cfg(name).input_size[-1]
    macs = {}
    for s in sorted({224, size}):
        kinds = count_macs(model, torch.zeros(1, 3, s, s, device="meta"))["kinds"]
        macs[str(s)] = kinds["conv2d"] + kinds["conv1d"] + kinds["linear"]
    return {"params": sum(p.numel() for p in model.parameters()), "input_size": size,
            "conv_linear_macs": macs,
            "feature_info": [[f["num_chs"], f["reduction"], f["module"]]
                             for f in model.feature_info],
            "state_dict": [[k, shape_str(v)] for k, v in model.state_dict().items()]}


def families(path: str, names) -> int:
    """Write (or, for the members named, update: the others are kept) the families' records."""
    import timm
    kept = OrderedDict()
    if os.path.exists(path):
        with open(path) as f:
            kept = json.load(f, object_pairs_hook=OrderedDict)["models"]
    out = {"_about": {"tool": "tools/timm_reference.py --families", "timm": timm.__version__,
                      "torch": torch.__version__.split("+")[0], "pretrained": False,
                      "macs": "conv/linear forward hooks, at 224 and at the default input size"},
           "models": OrderedDict((n, kept[n]) for n in FAMILIES if n in kept)}
    out["models"].update((n, r) for n, r in kept.items() if n not in out["models"])
    for name in names:
        r = out["models"][name] = family_reference(name)
        print(f"{name:24s} params {r['params']:>12,}  MACs {r['conv_linear_macs']}", flush=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "reference", "timm_counts.json"))
    ap.add_argument("--layers", default=None,
                    help="also write per-model layer tables (TSV) into this folder")
    ap.add_argument("--tsv-dir", default=DEFAULT_TSV_DIR,
                    help=f"published layouts (default {DEFAULT_TSV_DIR})")
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--families", nargs="*", default=None, metavar="NAME",
                    help="write the family members' compact records (default: all of them) "
                         "to tests/reference/timm_families.json instead; members named are "
                         "replaced, the others kept")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.families is not None:
        return families(os.path.join(REPO, "tests", "reference", "timm_families.json"),
                        args.families or FAMILIES)
    import timm

    result = {"_about": {
        "tool": "tools/timm_reference.py", "timm": timm.__version__,
        "torch": torch.__version__.split("+")[0],
        "input": [1, 3, 224, 224], "pretrained": False, "mode": "eval",
        "macs": "conv/linear forward hooks: out_elems * in_channels/groups * prod(kernel); "
                "bias not counted",
        "params": "sum of parameter numel, buffers excluded",
    }, "models": OrderedDict()}
    bad = 0
    for name in args.models:
        r = reference(name, args.tsv_dir)
        result["models"][name] = r
        tsv = r.get("tsv", {}).get("mismatches", [])
        flag = ("" if r["flop_counter_agrees"]
                else f"  FLOP COUNTER DISAGREES ({r['flop_counter_macs']:,})")
        print(f"{name:24s} params {r['params']:>12,}  conv+linear MACs {r['conv_linear_macs']:>15,}"
              f"  (conv2d {r['conv2d_macs']:,}, conv1d {r['conv1d_macs']:,}, linear "
              f"{r['linear_macs']:,})"
              f"  sd {r['state_dict_entries']} entries  TSV: "
              f"{'; '.join(tsv) if tsv else 'identical'}{flag}")
        bad += bool(tsv) + (not r["flop_counter_agrees"])
        if args.layers:
            os.makedirs(args.layers, exist_ok=True)
            x = torch.randn(1, 3, 224, 224)
            with open(os.path.join(args.layers, f"{name}.tsv"), "w") as f:
                f.write("\n".join(layer_table(create(name), x)) + "\n")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
