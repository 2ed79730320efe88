"""Families as data (issue 21): network parameters, variants, per-block settings, generated
stages, and every member of the EfficientNet, RegNet, MobileNetV3 and ReXNet family files
counted equal to timm 1.0.31 (tests/reference/timm_families.json, written by
`tools/timm_reference.py --families` in the timm venv)."""
from __future__ import annotations

import json
import textwrap

import pytest

import secompile
from secompile.backends.onnx.weights import expected_state
from secompile.lang.errors import SpecError
from secompile.passes.truncate import feature_levels
from support import ROOT

REF = json.loads((ROOT / "tests" / "reference" / "timm_families.json").read_text())["models"]
MEMBERS = list(REF)
# the acceptance numbers of issue 21 (timm): name -> (params, conv+fc MACs at 224)
ACCEPTANCE = {"efficientnet_b2": (9_109_994, 658_963_440),
              "efficientnet_b4": (19_341_616, 1_503_710_432),
              "regnety_002": (3_162_996, 199_514_080),
              "regnety_160": (83_590_140, 15_911_510_272),
              "regnetx_016": (9_190_136, 1_602_849_792),
              "mobilenetv3_large_075": (3_993_528, 154_560_624),
              "mobilenetv3_small_050": (1_593_224, 24_188_688),
              "rexnet_150": (9_728_593, 875_828_154),
              "rexnet_100": (4_796_873, 398_370_392)}
FAST = ["efficientnet_b2", "regnety_002", "mobilenetv3_small_050", "rexnet_150"]   # default twins


def _counts(name, **kw):
    total = secompile.count(name, **kw)["total"]
    return total["params"], total["conv_linear_macs"]


def test_acceptance_numbers_are_timms():
    for name, numbers in ACCEPTANCE.items():
        assert (REF[name]["params"], REF[name]["conv_linear_macs"]["224"]) == numbers


@pytest.mark.parametrize("name", FAST)
def test_counts_equal_timm(name):
    ref = REF[name]
    assert _counts(name, input_size=224) == (ref["params"], ref["conv_linear_macs"]["224"])


@pytest.mark.slow
@pytest.mark.parametrize("name", MEMBERS)
def test_every_member_counts_equal_timm_at_224_and_its_own_size(name):
    ref = REF[name]
    for size, macs in ref["conv_linear_macs"].items():
        assert _counts(name, input_size=int(size)) == (ref["params"], macs)
    report = secompile.count(name)    # the variant's own input size, unless overridden
    assert report["input"][1] == ref["input_size"]


def test_efficientnet_b4_at_its_own_input_size():
    assert REF["efficientnet_b4"]["input_size"] == 320
    assert _counts("efficientnet_b4") == (19_341_616, 3_063_687_008)
    assert _counts("efficientnet_b4", input_size=224) == (19_341_616, 1_503_710_432)


def _layout(g):
    return ["x".join(map(str, s)) if s else "scalar" for s in expected_state(g).values()]


def _timm_layout(name):
    return [s for k, s in REF[name]["state_dict"] if not k.endswith("num_batches_tracked")]


def _features_match(name, g):
    """Our feature levels (features_only) have timm's channels and reductions, level by level."""
    ours = [(f["num_chs"], f["reduction"]) for f in feature_levels(g)]
    assert ours == [(chs, red) for chs, red, _ in REF[name]["feature_info"]]
    return len(ours)


@pytest.mark.parametrize("name", FAST)
def test_state_dict_layout_and_features_equal_timm(name):
    g = secompile.build_ir(name, input_size=224)
    assert _layout(g) == _timm_layout(name)
    assert _features_match(name, g) == 5


@pytest.mark.slow
@pytest.mark.parametrize("name", MEMBERS)
def test_every_member_state_dict_layout_and_features_equal_timm(name):
    g = secompile.build_ir(name, input_size=224)
    assert _layout(g) == _timm_layout(name)
    assert _features_match(name, g) == 5


def test_spec_stages_are_timms_stages():
    """Per-block settings: one spec stage per timm stage, SE rule indices and names as timm's."""
    g = secompile.build_ir("mobilenetv3_large_100")
    assert [len(s.blocks) for s in g.stages] == [1, 2, 3, 4, 2, 3, 1]
    assert sorted({int(p.split(".")[1]) for p in g.se}) == [2, 4, 5]
    small = secompile.build_ir("mobilenetv3_small_100")
    assert [len(s.blocks) for s in small.stages] == [1, 2, 3, 2, 3, 1]
    assert sorted({int(p.split(".")[1]) for p in small.se}) == [0, 2, 3, 4]
    # stage 3 of the large model: expand 6 (stride 2), 2.5, 2.3, 2.3 -> 480, 200, 184, 184
    assert [small.shape(f"stages.1.blocks.{j}.branch.conv_pw.conv")[0] for j in (0, 1)] == [72, 88]
    assert [g.shape(f"stages.3.blocks.{j}.branch.conv_pw.conv")[0] for j in range(4)] == \
        [240, 200, 184, 184]
    assert g.node("stages.3.blocks.0.branch.conv_dw.conv")["attrs"]["stride"] == (2, 2)
    assert g.node("stages.3.blocks.1.branch.conv_dw.conv")["attrs"]["stride"] == (1, 1)
    regnet = secompile.build_ir("regnetx_016")
    assert [s.name for s in regnet.stages] == ["s1", "s2", "s3", "s4"]
    assert not regnet.se                     # se_ratio 0: the rule's `when:` is false


def test_rexnet_is_timms_block_cfg():
    """ReXNet: one spec stage per entry of timm's layers [1, 2, 2, 3, 3, 5], SE (with its BN)
    from the third block on, widths from the linear schedule: Python's round, half to even
    (rexnet_150's block 12 is round(226.5) = 226, where rounding half up gives 227)."""
    g = secompile.build_ir("rexnet_150")
    assert [len(s.blocks) for s in g.stages] == [1, 2, 2, 3, 3, 5]
    assert sorted({int(p.split(".")[1]) for p in g.se}) == [2, 3, 4, 5] and len(g.se) == 13
    outs = [g.shape(f"{b}.branch.conv_pwl.conv")[0] for b in g.blocks]
    assert outs == [24, 41, 58, 75, 92, 108, 125, 142, 159, 176, 193, 210, 226, 243, 260, 277]
    assert g.shape("stem.conv.conv")[0] == 48 and g.shape("head.conv_head.conv")[0] == 1920
    assert g.shape("stages.5.blocks.1.branch.conv_dw_se.fc1") == (105, 1, 1)   # int(1260 / 12)
    # the width multiplier alone is the variant: no per-size tables
    scaled = secompile.build_ir("rexnet_100", params={"width": 1.5})
    assert scaled.structural_hash() == g.structural_hash()


def test_b0_with_the_b2_multipliers_is_b2():
    scaled = secompile.build_ir("efficientnet_b0", params={"width": 1.1, "depth": 1.2})
    b2 = secompile.build_ir("efficientnet_b2", input_size=224)
    assert scaled.structural_hash() == b2.structural_hash()
    assert secompile.build_ir("efficientnet_b0").structural_hash() != b2.structural_hash()


def test_params_are_recorded_as_overrides():
    report = secompile.count("efficientnet_b0", params={"width": 1.1, "depth": 1.2})
    assert report["overrides"] == {"params.width": 1.1, "params.depth": 1.2}
    assert report["total"]["params"] == 9_109_994


def test_zoo_names_list_every_member():
    names = secompile.list_models()
    assert set(MEMBERS) <= set(names)
    assert not {"efficientnet", "regnet", "mobilenetv3", "rexnet"} & set(names)   # variants
    assert secompile.list_models("regnetx_*") == sorted(n for n in MEMBERS if "regnetx" in n)
    assert secompile.list_models("rexnet_*") == ["rexnet_100", "rexnet_130", "rexnet_150",
                                                 "rexnet_200", "rexnet_300"]
    assert len(secompile.list_models("rexnetr_*")) == 5


def _errors(text, **kw):
    with pytest.raises(SpecError) as e:
        secompile.count(textwrap.dedent(text), **kw)
    return e.value.messages


BASE = """\
    name: fam
    input: {channels: 3, size: 32}
    params: {width: 1.0, depth: 1, act: relu}
    variants:
      fam_big: {params: {width: 2.0}, input: {size: 64}}
    blocks:
      unit:
        params: {out: int, stride: 1, expand: 1}
        layers:
          - {name: conv, conv: {out: "$out * $expand", kernel: 3, stride: $stride, act: $act}}
    stages:
      - {block: unit, repeat: "2 * $depth", out: "int(8 * $width)", stride: 2}
      - {block: unit, out: 16, blocks: [{stride: 2}, {expand: 2}]}
    """


def test_network_parameters_reach_every_expression():
    g = secompile.build_ir(textwrap.dedent(BASE), params={"width": 2.0, "depth": 2})
    assert [len(s.blocks) for s in g.stages] == [4, 2]
    assert g.shape("stages.0.blocks.0.conv.conv") == (16, 16, 16)
    assert g.shape("stages.1.blocks.1.conv.conv") == (32, 8, 8)
    assert g.node("stages.1.blocks.0.conv.conv")["attrs"]["stride"] == (2, 2)


def test_block_index_in_a_stage_entry():
    text = textwrap.dedent(BASE).replace('blocks: [{stride: 2}, {expand: 2}]',
                                         'repeat: 3, expand: "1 + $block_index"')
    g = secompile.build_ir(text)
    assert [g.shape(f"stages.1.blocks.{j}.conv.conv")[0] for j in range(3)] == [16, 32, 48]


@pytest.mark.parametrize("params,message", [
    ({"widht": 2}, "<params>:1:8: params.widht: unknown network parameter 'widht' "
                   "(did you mean 'width'?)"),
    ({"width": "big"}, "<params>:1:14: params.width: network parameter 'width' is a number "
                       "(default 1.0), got 'big'"),
    ({"depth": 1.5}, "<params>:1:14: params.depth: network parameter 'depth' is an integer "
                     "(default 1), got 1.5"),
])
def test_bad_parameters_are_located(params, message):
    assert _errors(BASE, params=params) == [message]


def test_per_block_problems_point_at_the_entry():
    text = BASE.replace("{expand: 2}", "{expnd: 2}")
    assert _errors(text) == ["<string>:13:51: stages[1].blocks[1].expnd: unknown parameter "
                             "'expnd' of block template 'unit' (did you mean 'expand'?)"]
    text = BASE.replace('out: 16, blocks', 'out: 16, repeat: 1, blocks')
    assert _errors(text) == ["<string>:13:47: stages[1].blocks: 2 per-block entries for 1 "
                             "blocks (repeat: 1)"]


def test_variant_of_a_spec_file():
    spec = secompile.load_spec(textwrap.dedent(BASE), variant="fam_big")
    assert spec.name == "fam_big" and spec.params["width"] == 2.0
    assert secompile.count(spec)["input"] == [3, 64, 64]
    with pytest.raises(SpecError, match="no variant 'fam_bag' in this family "
                                        r"\(did you mean 'fam_big'\?\)"):
        secompile.load_spec(textwrap.dedent(BASE), variant="fam_bag")


GENERATED = """\
    name: gen
    input: {channels: 3, size: 64}
    params: {w0: 24, wa: 36.44, wm: 2.49, depth: 13, group_w: 8}
    blocks:
      unit:
        params: {out: int, stride: 1, groups: 1}
        layers:
          - {name: pw, conv: {out: $out, kernel: 1}}
          - {name: conv, conv: {out: $out, kernel: 3, stride: $stride, groups: $groups}}
    stages:
      - foreach: "regnet_stages($w0, $wa, $wm, $depth, $group_w)"
        as: s
        name: s
        block: unit
        repeat: $s.depth
        out: $s.width
        groups: "$s.width // $s.group_width"
        stride: 2
    """


def test_generated_stages():
    g = secompile.build_ir(textwrap.dedent(GENERATED))
    assert [s.name for s in g.stages] == ["s1", "s2", "s3", "s4"]
    assert [len(s.blocks) for s in g.stages] == [1, 1, 4, 7]          # timm regnetx_002
    assert [g.shape(f"stages.{i}.blocks.0.conv.conv")[0] for i in range(4)] == [24, 56, 152, 368]


def test_generated_stage_problems_name_the_entry():
    text = GENERATED.replace('groups: "$s.width // $s.group_width"', 'groups: "$s.width // 48"')
    assert _errors(text) == ["<string>:9:76: blocks.unit.layers[1].conv.groups: groups must be a "
                             "positive integer, got 0 (in stages[0][entry 0].blocks[0])"]
    text = GENERATED.replace("$s.depth", "$s.dept")
    assert _errors(text) == ["<string>:15:13: stages[0].repeat: no field 'dept' in expression "
                             "'$s.dept' (the entry has width, depth, group_width, "
                             "bottleneck_width, index) (did you mean 'depth'?) "
                             "(in stages[0][entry 0])"]
    text = GENERATED.replace("wm: 2.49", "wm: 0.5")
    assert _errors(text) == ["<string>:11:14: stages[0].foreach: regnet_stages(): needs wa >= 0, "
                             "wm > 1 and w0 a multiple of 8 (pycls), got wa=36.44, wm=0.5, w0=24"]


# -- weights: timm's state_dicts load (torch), outputs equal timm's (the timm venv) -------------
def _timm_state_dict(name):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    sd = {}
    for key, shape in REF[name]["state_dict"]:
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        sd[key] = (torch.randint(0, 100, dims, generator=g) if key.endswith("num_batches_tracked")
                   else torch.randn(dims, generator=g))
    return sd


def _loads(name):
    model = secompile.compile(name, seed=0)
    sd = _timm_state_dict(name)
    report = secompile.load_weights(model, sd)
    assert report.ok, str(report)
    key = next(k for k in sd if k.endswith(("conv_pwl.weight", "conv3.conv.weight",
                                            "conv_pwl.conv.weight")))   # ReXNet: ConvNormAct
    ours = dict(zip(sd, model.state_dict().values()))[key]
    assert ours.equal(sd[key])      # loaded, in timm's order


# 0.3-1.3 G parameters: paired on the meta device (no values) instead of loaded
HUGE = ["regnety_640", "regnety_1280", "regnety_2560"]


@pytest.mark.slow        # compiles every member (torch); the layout twin above runs by default
@pytest.mark.parametrize("name", [n for n in MEMBERS if n not in HUGE])
def test_load_weights_maps_every_members_state_dict(name):
    _loads(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", HUGE)
def test_huge_members_pair_every_timm_module(name):
    """load_weights' structural pairing (weights_in_order) on shapes alone: every module of
    timm's state_dict pairs with one of ours, none left on either side."""
    torch = pytest.importorskip("torch")
    from secompile.backends.torch.weights_in_order import (
        checkpoint_modules,
        model_modules,
        pair_by_structure,
    )
    with torch.device("meta"):
        model = secompile.compile(name)
        sd = {k: torch.empty(() if s == "scalar" else tuple(int(d) for d in s.split("x")))
              for k, s in REF[name]["state_dict"]}
    src, ours = checkpoint_modules(sd), model_modules(model, frozenset())
    pairs, difference, n = pair_by_structure(src, ours)
    assert difference is None and n == len(pairs) == len(src) == len(ours)


@pytest.mark.slow        # the timm venv only (tools/timm_parity.py): one member of each family
@pytest.mark.parametrize("name", ["efficientnet_b2", "regnetx_016", "mobilenetv3_small_050",
                                  "rexnet_150"])
def test_outputs_equal_timms(name):
    pytest.importorskip("timm")
    import importlib.util
    import sys
    s = importlib.util.spec_from_file_location("timm_parity", ROOT / "tools" / "timm_parity.py")
    parity = importlib.util.module_from_spec(s)
    sys.modules["timm_parity"] = parity
    s.loader.exec_module(parity)
    rep = parity.parity(name, secompile.compile(name, seed=0), spec=name)
    assert rep.ok, str(rep)
    assert rep.max_abs_timm > 0.05
