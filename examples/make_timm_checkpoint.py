"""Write a checkpoint laid out like timm's (or the legacy Caffe ports') SE networks, from random
weights: the file the docs load with `secompile.load_weights`, for trying that path without
downloading anything (and without timm).

    python examples/make_timm_checkpoint.py --layout legacy_seresnext50_32x4d  # <layout>.pth
    python examples/make_timm_checkpoint.py --layout seresnet50 -o seresnet50.pth

The network is compiled from the spec that reproduces the layout (secompile.backends.
torch_weights.LAYOUTS), its weights and BatchNorm statistics randomised, and every key renamed
to the layout's: `conv1`/`bn1` (legacy: `layer0.conv1`, ...), `layer{s}.{b}.conv{k}`/`bn{k}`,
`.se.fc{1,2}` (legacy: `.se_module.`), `.downsample.{0,1}`, `fc` (legacy: `last_linear`). The
file is then loaded back into a freshly compiled model and checked to give the same outputs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import torch

import secompile
from secompile.backends.torch.weights import LAYOUTS


def timm_key(key: str, legacy: bool, counters: dict) -> str:
    """A compiled model's state_dict key -> the layout's key (counters: conv/bn index per unit)."""
    head, _, entry = key.rpartition(".")
    if head.startswith("head."):
        return f"{'last_linear' if legacy else 'fc'}.{entry}"
    m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(\w+)\.(.+)$", head)
    if m:
        unit, role, rest = f"layer{int(m.group(1)) + 1}.{m.group(2)}", m.group(3), m.group(4)
    elif head.startswith("stem."):
        unit, role, rest = "layer0" if legacy else "", "branch", head[len("stem.") :]
    else:
        raise ValueError(f"{key}: not a stem, block or head weight")
    prefix = f"{unit}." if unit else ""
    if role == "se":
        return f"{prefix}{'se_module' if legacy else 'se'}.{rest}.{entry}"
    kind = rest.rsplit(".", 1)[-1]  # conv | bn
    if role == "shortcut":
        return f"{prefix}downsample.{0 if kind == 'conv' else 1}.{entry}"
    layer = rest.rsplit(".", 1)[0]  # conv1, conv2, ... as the spec names them
    seen = counters.setdefault((unit, kind), [])
    if layer not in seen:
        seen.append(layer)
    return f"{prefix}{kind}{seen.index(layer) + 1}.{entry}"


def randomise(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen) * (0.05 if t.dim() > 1 else 0.1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="legacy_seresnext50_32x4d")
    ap.add_argument("-o", "--output", help="file to write (default: <layout>.pth)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = args.output or f"{args.layout}.pth"
    spec = os.path.splitext(os.path.basename(LAYOUTS[args.layout]))[0]  # its zoo name
    model = secompile.compile(spec, seed=args.seed).eval()
    randomise(model, args.seed)
    legacy, counters = args.layout.startswith("legacy_"), {}
    state = {timm_key(k, legacy, counters): v for k, v in model.state_dict().items()}
    torch.save(state, out)

    again = secompile.compile(spec).eval()  # load it back: same network?
    report = secompile.load_weights(again, out)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        same = torch.allclose(model(x), again(x), rtol=1e-4, atol=1e-4)
    print(
        f"wrote {out}: {len(state)} tensors in the {report.layout} layout (spec {spec}); "
        f"loads back {'exactly' if report.ok and same else 'WITH DIFFERENCES'}"
    )
    if not (report.ok and same):
        print(report, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
