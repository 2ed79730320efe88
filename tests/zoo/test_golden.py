"""What a user sees of the zoo does not change by accident: counts, state_dict keys and shapes,
`secompile count` output and ONNX bytes, against tests/golden/zoo.json (regenerate it with
`python tests/golden/make_golden.py` only when a change is intended, and say so in the commit)."""
import hashlib
import json
import sys

import pytest
import torch

import secompile
from support import ROOT, SPECS

sys.path.insert(0, str(ROOT / "tests" / "golden"))
from make_golden import ONNX_SPECS, cli_count  # noqa: E402

GOLDEN = json.loads((ROOT / "tests" / "golden" / "zoo.json").read_text())
CLI_SPECS = ("se_resnet50", "se_bn_inception", "se_shufflenet_v1_g3")


def test_golden_covers_the_paper_zoo():
    assert set(GOLDEN) <= {p.stem for p in SPECS.glob("*.yaml")}
    assert len(GOLDEN) == 25


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_counts_and_state_dict_layout(name):
    gold = GOLDEN[name]
    rep = secompile.count(SPECS / f"{name}.yaml")
    assert (rep["total"]["macs"], rep["total"]["conv_linear_macs"], rep["total"]["params"],
            rep["se"]["blocks"]) == (gold["macs"], gold["conv_linear_macs"], gold["params"], gold["se_blocks"])
    with torch.device("meta"):   # keys and shapes only: no weights allocated
        model = secompile.compile(SPECS / f"{name}.yaml", seed=0)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == gold["state_dict"]


@pytest.mark.parametrize("name", CLI_SPECS)
def test_count_output(name):
    assert cli_count(SPECS / f"{name}.yaml") == GOLDEN[name]["count_output"]


@pytest.mark.parametrize("name", ONNX_SPECS)
def test_onnx_bytes(name):
    model = secompile.compile(SPECS / f"{name}.yaml", seed=0)
    onnx_model = secompile.to_onnx(SPECS / f"{name}.yaml", model)
    assert hashlib.sha256(onnx_model.SerializeToString()).hexdigest() == GOLDEN[name]["onnx_sha256"]
