"""The timm reference numbers (tests/reference/timm_counts.json, written by tools/timm_reference.py in a
timm venv) are self-consistent and agree with the published layouts; where timm is importable, the
parity harness (tools/timm_parity.py) finds today's timm-layout specs equal to timm.

CI has no timm: the JSON is the reference there; the parity tests skip.
"""
import importlib.util
import json
import sys

import pytest

from support import ROOT, SHARED

REF = ROOT / "tests" / "reference" / "timm_counts.json"
MODELS = ["seresnet18", "seresnet34", "seresnext26d_32x4d", "efficientnet_b0", "mobilenetv3_large_100",
          "mobilenetv3_small_100", "regnety_008", "regnety_032", "ecaresnet50d", "skresnet18"]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ref():
    return json.loads(REF.read_text())["models"]


@pytest.mark.parametrize("name", MODELS)
def test_reference_is_consistent(ref, name):
    r = ref[name]
    assert r["conv_linear_macs"] == r["conv2d_macs"] + r["conv1d_macs"] + r["linear_macs"]
    assert r["conv_macs"] == r["conv2d_macs"] + r["conv1d_macs"]
    assert r["flop_counter_agrees"] and r["flop_counter_macs"] == r["conv_linear_macs"]
    assert r["state_dict_entries"] == len(r["state_dict"])
    assert sum(g["params"] for g in r["breakdown"].values()) == r["params"]
    assert sum(g["macs"] for g in r["breakdown"].values()) == r["conv_linear_macs"]
    assert r["tsv"]["mismatches"] == []
    assert (r["conv1d_macs"] > 0) == (name == "ecaresnet50d")   # ECA's 1-D conv across channels


@pytest.mark.parametrize("name", MODELS)
def test_reference_layout_is_the_published_one(ref, name):
    tsv = SHARED / "reference" / "state_dicts" / f"{name}.tsv"
    if not tsv.exists():
        pytest.skip(f"no {tsv}")
    _, rows = _tool("timm_reference").read_tsv(str(tsv))
    assert [tuple(x) for x in ref[name]["state_dict"]] == rows


@pytest.mark.parametrize("timm_name,spec", [("seresnet50", "se_resnet50_tv.yaml"),
                                            ("seresnext50_32x4d", "se_resnext50_tv.yaml")])
def test_timm_parity_of_timm_layout_specs(timm_name, spec):
    pytest.importorskip("timm")
    import secompile
    parity = _tool("timm_parity")
    path = str(ROOT / "specs" / spec)
    rep = parity.parity(timm_name, secompile.compile(path, seed=0), spec=path)
    assert rep.ok, str(rep)
