"""`secompile.load_weights(model, state_dict, source="timm")` on the modern SE family (issue 13).

Each timm state_dict layout (every key and shape, in timm's order) is read from
tests/reference/timm_counts.json, so these run without timm and without ../shared: a random
state_dict of that layout loads into the spec named after the model with 0 missing and 0
unexpected keys and every model tensor equals the checkpoint tensor it came from (ECA's rank-3
Conv1d weight included). A checkpoint of another network is refused with the structure that
differs named. Output equality with timm itself: tests/zoo/test_timm_zoo.py (where timm is installed).
"""
import json

import pytest
import torch

import secompile
from secompile.backends.torch.weights import WeightsError, map_state_dict
from support import ROOT, SPECS

TIMM = json.loads((ROOT / "tests" / "reference" / "timm_counts.json").read_text())["models"]
PRESENT = [n for n in TIMM if secompile.model_path(n) is not None]   # files and family variants


def timm_state_dict(name: str, seed: int = 0) -> dict:
    """A random state_dict with timm's keys and shapes for `name`, in timm's order."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in TIMM[name]["state_dict"]:
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        sd[key] = (torch.randint(0, 100, dims, generator=g) if key.endswith("num_batches_tracked")
                   else torch.randn(dims, generator=g))
    return sd


def _compile(name: str):
    return secompile.compile(name, seed=0)


def test_the_new_specs_are_present():
    assert {"seresnet18", "seresnet34", "seresnext26d_32x4d", "ecaresnet50d",
            "skresnet18"} <= set(PRESENT)


@pytest.mark.parametrize("name", PRESENT)
def test_timm_layout_loads_with_nothing_missing_and_equal_tensors(name):
    sd = timm_state_dict(name)
    model = _compile(name)
    report = secompile.load_weights(model, sd, source="timm")
    assert (report.missing, report.unexpected, report.mismatched, report.structure) == ([], [], [],
                                                                                        [])
    assert len(report.loaded) == len(sd) == TIMM[name]["state_dict_entries"]
    assert sorted(s for s, _ in report.loaded) == sorted(sd)
    ours = model.state_dict()
    assert sorted(d for _, d in report.loaded) == sorted(ours)
    for src, dst in report.loaded:
        assert torch.equal(ours[dst], sd[src]), (src, dst)


def test_eca_conv1d_weight_is_mapped():
    """ECA's `nn.Conv1d(1, 1, k)` weight is rank 3 (1x1xk): paired as a conv1d module."""
    model = _compile("ecaresnet50d")
    sd = timm_state_dict("ecaresnet50d")
    loaded = dict(secompile.load_weights(model, sd).loaded)
    dst = loaded["layer4.2.se.conv.weight"]
    assert tuple(sd["layer4.2.se.conv.weight"].shape) == (1, 1, 7)
    assert torch.equal(model.state_dict()[dst], sd["layer4.2.se.conv.weight"])


def _refusal(src: str, dst: str) -> list[str]:
    with torch.device("meta"):
        model = secompile.compile(dst)
    with pytest.raises(WeightsError) as err:
        secompile.load_weights(model, timm_state_dict(src))
    return err.value.report.structure


def test_seresnet18_into_seresnet34_names_the_block_counts():
    assert _refusal("seresnet18", "seresnet34") == [
        "blocks per stage: the model has 3-4-6-3, the seresnet18 checkpoint 2-2-2-2 "
        "(layer1.*, layer2.*, ...)"]
    assert _refusal("seresnet34", "seresnet18") == [
        "blocks per stage: the model has 2-2-2-2, the seresnet34 checkpoint 3-4-6-3 "
        "(layer1.*, layer2.*, ...)"]


def test_ecaresnet50d_into_seresnext26d_names_the_first_differing_module():
    assert _refusal("ecaresnet50d", "seresnext26d_32x4d") == [
        "module #6 differs (different weight shapes): checkpoint layer1.0.conv1 (conv 64x64x1x1, "
        "no bias) vs model stages.0.blocks.0.branch.conv1.conv (conv 128x64x1x1, no bias)"]


def test_skresnet18_into_seresnet18_names_the_selective_kernel_path():
    assert _refusal("skresnet18", "seresnet18") == [
        "module #2 differs (different weight shapes): checkpoint layer1.0.conv1.paths.0.conv "
        "(conv 64x32x3x3, no bias) vs model stages.0.blocks.0.branch.conv1.conv "
        "(conv 64x64x3x3, no bias)"]


def test_seresnet18_into_skresnet18_names_the_dilated_paths():
    structure = _refusal("seresnet18", "skresnet18")
    assert structure[0] == ("stages.0.blocks.0: branch conv 2 (3x3) is dilated 2; seresnet18 has "
                            "no dilated convs")
    assert ("stages.1.blocks.0: the stride sits on branch conv 1 (3x3), conv 2 (3x3); seresnet18 "
            "puts it on conv 1 (3x3)") in structure


def test_ecaresnet50d_into_eca_resnet50_names_the_resnet_d_differences():
    with torch.device("meta"):
        model = secompile.compile(SPECS / "eca_resnet50.yaml")
    with pytest.raises(WeightsError, match="the ecaresnet50d network is specs/ecaresnet50d.yaml"):
        secompile.load_weights(model, timm_state_dict("ecaresnet50d"))
    structure = _refusal("ecaresnet50d", "eca_resnet50")
    assert structure[0] == ("module #0 differs (different weight shapes): checkpoint conv1.0 "
                            "(conv 32x3x3x3, no bias) vs model stem.conv1.conv (conv 64x3x7x7, "
                            "no bias)")
    assert structure[1:] == [
        f"stages.{s}.blocks.0: the strided shortcut strides its conv; ecaresnet50d average-pools "
        "(2x2, ceil) before a 1x1/1 conv" for s in (1, 2, 3)]


@pytest.mark.parametrize("src,dst", [("regnety_008", "regnety_032"),
                                     ("mobilenetv3_small_100", "mobilenetv3_large_100")])
def test_same_family_other_width_is_refused(src, dst):
    if not all(secompile.model_path(n) for n in (src, dst)):
        pytest.skip(f"{src}/{dst} specs not on this branch")
    structure = _refusal(src, dst)
    assert structure and structure[0].startswith("module #")


def test_source_name_must_match_the_detected_layout():
    with torch.device("meta"):
        model = secompile.compile(SPECS / "skresnet18.yaml")
    with pytest.raises(ValueError, match="laid out like 'skresnet18', not 'seresnet18'"):
        map_state_dict(model, timm_state_dict("skresnet18"), source="seresnet18")
    _, report = map_state_dict(model, timm_state_dict("skresnet18"), source="skresnet18")
    assert report.ok
