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
from secompile.backends.torch.weights import WeightsError, detect_layout, map_state_dict
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


# -- any layout, any key order (issue 22 item 5) -----------------------------------------------
LAYOUT_TSV = ROOT / "tests" / "reference" / "state_dicts"   # tools/timm_state_dicts.py
STORED = sorted(p.stem for p in LAYOUT_TSV.glob("*.tsv"))


def stored_shapes(name: str) -> list:
    rows = [line.split("\t") for line in (LAYOUT_TSV / f"{name}.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    return [(k, () if s == "scalar" else tuple(int(d) for d in s.split("x"))) for k, s in rows]


def stored_state_dict(name: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randint(0, 100, s, generator=g) if k.endswith("num_batches_tracked")
                else torch.randn(s, generator=g)) for k, s in stored_shapes(name)}


def test_stored_layouts_cover_the_new_families():
    assert {"efficientnet_b7", "regnetx_032", "regnety_016", "mobilenetv3_small_050",
            "rexnet_100", "resnest50d", "gcresnet50t"} <= set(STORED)


@pytest.mark.parametrize("name", STORED)
def test_module_tree_recovers_the_run_order_of_an_alphabetical_checkpoint(name):
    """Sorted keys (a .safetensors file) against timm's own module order as the model: the tree
    search pairs every module with itself, including equal-shaped ones (bn1/bn2, conv3 and
    the shortcut conv of a first block, RegNet's b2 < b10)."""
    from secompile.backends.torch.weights_in_order import group_modules, pair_by_structure
    shapes = stored_shapes(name)
    run, alphabetical = group_modules(shapes), group_modules(sorted(shapes))
    pairs, difference, n = pair_by_structure(alphabetical, run)
    assert difference is None and n == len(run)
    assert [(s.name, d.name) for s, d in pairs] == [(d.name, d.name) for _, d in pairs]


def test_another_models_stages_keys_are_not_taken_for_ours():
    """timm's ByobNet (gcresnet50t) has `stages.0.0.*` keys: a layout paired by structure."""
    sd = {k: torch.empty(s, device="meta") for k, s in stored_shapes("gcresnet50t")}
    assert any(k.startswith("stages.") for k in sd)
    assert detect_layout(sd).pairing == "structure"
    with torch.device("meta"):
        model = _compile("seresnet18")
    assert detect_layout(sd, set(model.state_dict())).pairing == "structure"
    assert detect_layout(model.state_dict(), set(model.state_dict())).pairing == "names"
    assert detect_layout(model.state_dict()).name == "secompile"


ZOO_TIMM = [n for n in STORED if (SPECS / f"{n}.yaml").exists()]


@pytest.mark.parametrize("name", ZOO_TIMM)
def test_every_timm_named_zoo_spec_loads_timm_keys_in_either_order(name):
    """0 missing, 0 unexpected, from timm's order and from alphabetical order, paired alike."""
    sd = stored_state_dict(name)
    with torch.device("meta"):
        model = _compile(name)
    _, report = map_state_dict(model, sd)
    assert report.ok, str(report)
    assert len(report.loaded) == len(sd) and report.missing == []
    _, alphabetical = map_state_dict(model, dict(sorted(sd.items())))
    assert alphabetical.ok, str(alphabetical)
    assert sorted(alphabetical.loaded) == sorted(report.loaded)


def test_safetensors_file_loads_by_structure(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    sd = stored_state_dict("efficientnet_b0")
    path = tmp_path / "efficientnet_b0.safetensors"
    st.save_file(sd, str(path))
    model = _compile("efficientnet_b0")
    report = secompile.load_weights(model, path)
    assert report.ok and report.layout.name == "efficientnet"
    ours = model.state_dict()
    assert all(torch.equal(ours[d], sd[s]) for s, d in report.loaded)
    assert ("bn1.running_var", "stem.conv_stem.bn.running_var") in report.loaded


def test_safetensors_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_safetensors(name, *a, **k):
        if name.startswith("safetensors"):
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(secompile.SpecError) as e:
        secompile.load_weights(_compile("seresnet18"), path)
    assert str(e.value) == (f"{path}:1:1: <weights>: reading .safetensors files needs the "
                            "safetensors package (pip install safetensors)")


# -- remap ----------------------------------------------------------------------------------------
def _renamed_head(sd):
    return {("classifier." + k[3:] if k.startswith("fc.") else k): v for k, v in sd.items()}


def test_remap_dict_and_callable_pair_what_the_layout_cannot():
    sd = _renamed_head(stored_state_dict("seresnet18"))
    model = _compile("seresnet18")
    with pytest.raises(WeightsError) as e:
        secompile.load_weights(model, sd)
    assert e.value.report.unexpected == ["classifier.bias", "classifier.weight"]
    assert e.value.report.missing == ["head.fc.weight", "head.fc.bias"]
    for remap in ({"classifier.weight": "head.fc.weight", "classifier.bias": "head.fc.bias"},
                  lambda k: "head.fc." + k.split(".")[1] if k.startswith("classifier.") else None):
        report = secompile.load_weights(model, sd, remap=remap)
        assert report.ok and ("classifier.weight", "head.fc.weight") in report.loaded
        assert torch.equal(model.state_dict()["head.fc.bias"], sd["classifier.bias"])


def test_remap_to_a_key_the_model_lacks_is_refused():
    sd = _renamed_head(stored_state_dict("seresnet18"))
    with torch.device("meta"):
        model = _compile("seresnet18")
    with pytest.raises(WeightsError, match=r"^<state_dict>:1:1: classifier.weight: remap sends "
                       "it to 'head.linear.weight', which is not a key of the model$"):
        secompile.load_weights(model, sd, remap={"classifier.weight": "head.linear.weight"})
    with pytest.raises(WeightsError, match="classifier.w: remap names it, but the checkpoint"):
        secompile.load_weights(model, sd, remap={"classifier.w": "head.fc.weight"})


def test_remapped_tensor_of_the_wrong_shape_is_a_mismatch():
    sd = stored_state_dict("seresnet18")
    sd["fc.weight"] = torch.zeros(10, 512)
    with torch.device("meta"):
        model = _compile("seresnet18")
    _, report = map_state_dict(model, sd, remap={"fc.weight": "head.fc.weight"})
    assert report.mismatched == [("fc.weight", "head.fc.weight", (10, 512), (1000, 512))]


# -- all or nothing (issue 19) -------------------------------------------------------------------
def _unchanged_after(model, sd, **kw):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as e:
        secompile.load_weights(model, sd, **kw)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    return str(e.value)


@pytest.mark.parametrize("strict", [True, False])
def test_unusable_checkpoints_are_refused_and_nothing_is_copied(strict):
    model = _compile("seresnet18")
    good = stored_state_dict("seresnet18")
    last = list(good)[-1]          # fc.bias: everything before it would pair
    cases = {
        "non-string key": ({**good, 3: torch.zeros(1)},
                           "<state_dict>:1:1: <weights>: checkpoint keys are strings (state_dict "
                           "keys); found int key 3"),
        "sparse": ({**good, last: good[last].to_sparse()},
                   f"<state_dict>:1:1: {last}: a sparse tensor (torch.sparse_coo): a state_dict "
                   "holds dense tensors with values"),
        "meta": ({**good, last: torch.empty(1000, device="meta")},
                 f"<state_dict>:1:1: {last}: a meta tensor (shape only, no values): a state_dict "
                 "holds dense tensors with values"),
        "no tensors": ({"epoch": 3, "arch": "seresnet18"},
                       "<state_dict>:1:1: <weights>: the checkpoint holds no tensors (2 entries: "
                       "int, str)"),
        "integer weight": ({**good, last: torch.zeros(1000, dtype=torch.int64)},
                           f"<state_dict>:1:1: {last}: a torch.int64 tensor for model tensor "
                           "head.fc.bias (torch.float32): it does not convert without loss of "
                           "meaning"),
    }
    for what, (sd, message) in cases.items():
        assert _unchanged_after(model, sd, strict=strict) == message, what


def test_half_precision_checkpoint_converts_to_the_model_dtype():
    sd = {k: v.half() if v.is_floating_point() else v
          for k, v in stored_state_dict("seresnet18").items()}
    model = _compile("seresnet18")
    report = secompile.load_weights(model, sd)
    assert report.ok
    w = model.state_dict()["head.fc.weight"]
    assert w.dtype == torch.float32 and torch.equal(w, sd["fc.weight"].float())


def test_export_weights_refuses_unusable_tensors_with_exit_2(tmp_path, capsys):
    pytest.importorskip("onnx")
    from secompile.cli import main
    model = _compile("se_resnet20_cifar")
    sd = dict(model.state_dict())
    key = next(iter(sd))
    sd[key] = sd[key].to_sparse()
    path = tmp_path / "sparse.pt"
    torch.save(sd, path)
    out = tmp_path / "net.onnx"
    assert main(["export", str(SPECS / "se_resnet20_cifar.yaml"), "--format", "onnx", "-o",
                 str(out), "--weights", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{path}:1:1: {key}: a sparse tensor (torch.sparse_coo): a state_dict holds dense "
        "tensors with values")
    assert not out.exists()


@pytest.mark.parametrize("order", ["timm", "alphabetical"])
def test_backbone_loads_all_but_the_head_in_either_order(order):
    sd = stored_state_dict("efficientnet_b0")
    if order == "alphabetical":
        sd = dict(sorted(sd.items()))
    with torch.device("meta"):
        model = secompile.compile("efficientnet_b0", features_only=True)
    _, report = map_state_dict(model, sd)
    assert report.missing == [] and len(report.loaded) == len(model.state_dict())
    assert report.unexpected == ["bn2.bias", "bn2.num_batches_tracked", "bn2.running_mean",
                                 "bn2.running_var", "bn2.weight", "classifier.bias",
                                 "classifier.weight", "conv_head.weight"]
    assert ("blocks.6.0.bn3.running_var", "stages_6.blocks.0.branch.conv_pwl.bn.running_var") \
        in report.loaded
