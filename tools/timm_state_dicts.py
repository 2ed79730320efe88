#!/usr/bin/env python
"""Store timm's state_dict layouts (key and shape of every entry, in timm's order) as TSVs, so the
weight-loading tests run without timm (tests/backends/torch/test_timm_load.py):

    PYTHONPATH=. /work/timmvenv/bin/python tools/timm_state_dicts.py [NAME ...]

Models are built on the meta device (no memory, no download); the header line names the timm
version. Without names, the default list below (the timm names the zoo has or is growing).
"""
from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "reference" / "state_dicts"
DEFAULT = (
    [f"efficientnet_b{i}" for i in range(8)]
    + ["mobilenetv3_large_075", "mobilenetv3_large_100", "mobilenetv3_small_050",
       "mobilenetv3_small_075", "mobilenetv3_small_100", "mobilenetv3_rw"]
    + ["regnetx_002", "regnetx_004", "regnetx_008", "regnetx_016", "regnetx_032",
       "regnety_002", "regnety_004", "regnety_006", "regnety_008", "regnety_016",
       "regnety_032", "regnety_040", "regnety_064", "regnety_080"]
    + ["rexnet_100", "rexnet_130", "rexnet_150", "rexnet_200", "rexnet_300", "rexnetr_100",
       "rexnetr_130", "rexnetr_150", "rexnetr_200", "rexnetr_300", "resnest14d", "resnest26d",
       "resnest50d", "gcresnet50t",
       "seresnet18", "seresnet34", "seresnet50", "seresnext26d_32x4d", "seresnext50_32x4d",
       "ecaresnet50d", "skresnet18", "legacy_seresnet50", "legacy_seresnext50_32x4d",
       "legacy_senet154"])


def write(name: str) -> Path:
    import timm
    import torch
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    sd = model.state_dict()
    lines = [f"# state_dict of timm.create_model({name!r}) (timm {timm.__version__}): key, "
             f"shape; {len(sd)} keys, {sum(v.numel() for v in sd.values())} values"]
    lines += [f"{k}\t{'x'.join(map(str, v.shape)) or 'scalar'}" for k, v in sd.items()]
    path = OUT / f"{name}.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in argv or DEFAULT:
        print(write(name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
