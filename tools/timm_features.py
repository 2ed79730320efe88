#!/usr/bin/env python
"""timm's default `features_only` levels of every timm-named zoo spec (issue 20 item 4).

Runs in the timm venv (CI has no timm; the JSON it writes is committed and read by
tests/backends/torch/test_features.py):

    /work/timmvenv/bin/python tools/timm_features.py [--out tests/reference/timm_features.json]

Per model: timm.create_model(name, features_only=True, pretrained=False).feature_info's
channels(), reduction() and module_name() (timm's own module names, for reference only).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# the zoo specs named as a timm model (and built to timm's layout or the paper's)
MODELS = ["seresnet18", "seresnet34", "seresnext26d_32x4d", "efficientnet_b0",
          "mobilenetv3_large_100", "mobilenetv3_small_100", "regnety_008", "regnety_032",
          "ecaresnet50d", "skresnet18", "resnet50", "senet154", "inception_resnet_v2",
          "vgg16_bn", "gcresnet50t", "resnest14d", "resnest50d", "rexnet_100", "rexnet_130",
          "rexnet_150", "rexnet_200", "rexnet_300", "rexnetr_100", "rexnetr_130", "rexnetr_150",
          "rexnetr_200", "rexnetr_300"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "reference",
                                                  "timm_features.json"))
    args = ap.parse_args(argv)
    import timm
    import torch
    models = {}
    for name in MODELS:
        info = timm.create_model(name, features_only=True, pretrained=False).feature_info
        models[name] = {"channels": info.channels(), "reduction": info.reduction(),
                        "module_name": info.module_name()}
        print(name, models[name]["channels"], models[name]["reduction"], file=sys.stderr)
    about = {"tool": "tools/timm_features.py", "timm": timm.__version__,
             "torch": torch.__version__.split("+")[0], "pretrained": False,
             "what": "timm.create_model(name, features_only=True).feature_info"}
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump({"_about": about, "models": models}, fh, indent=1)
        fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
