"""The SE insertion pass: positions, selectors, overrides, idempotence, any depth."""
import pytest
import torch
from helpers import strip_se

import secompile
from secompile.backends.torch import trace_shapes
from secompile.frontend import attention_modules, expand
from secompile.passes import insert_se
from secompile.passes.insert_se import glob_match

NET = """
name: tiny
include: [blocks/resnet.yaml]
input: {channels: 3, size: 32}
stem: [{name: conv1, conv: {out: 16, kernel: 3}}]
stages:
  - {block: basic, repeat: 2, out: 16}
  - {block: basic, repeat: 2, out: 32, stride: 2}
  - {block: bottleneck, repeat: 1, out: 64, width: 16, stride: 2, cardinality: 4, name: last}
head: [{name: pool, global_avgpool: {}}, {name: fc, linear: {out: 10}}]
"""


def build(se_yaml, spec_dir):
    spec = secompile.load_spec(NET + "se:\n" + se_yaml, base_dir=str(spec_dir))
    return spec, secompile.build_ir(spec)


def se_scopes(g):
    return sorted(g.se)


def test_standard_everywhere_but_last_stage(spec_dir):
    _, g = build("  - {where: {stages: [0, 1]}}\n", spec_dir)
    assert se_scopes(g) == [f"stages.{s}.blocks.{b}.se" for s in (0, 1) for b in (0, 1)]
    _, g2 = build("  - {where: {stages: all}, exclude: {stages: [-1]}}\n", spec_dir)
    assert g2.structural_hash() == g.structural_hash()


def test_standard_wires_branch_into_add(spec_dir):
    _, g = build("  - {where: {stages: all}}\n", spec_dir)
    assert g.inputs("stages.1.blocks.0.add") == ["stages.1.blocks.0.shortcut.0.bn", "stages.1.blocks.0.se.scale"]
    assert g.inputs("stages.1.blocks.0.se.scale") == ["stages.1.blocks.0.branch.conv2.bn", "stages.1.blocks.0.se.gate"]
    assert [g.op(f"stages.1.blocks.0.se.{n}") for n in ("pool", "fc1", "act", "fc2", "gate", "scale")] == \
        ["global_pool", "conv2d", "act", "conv2d", "act", "mul"]
    assert g.node("stages.1.blocks.0.se.fc1")["attrs"]["out"] == 2   # 32 // 16


@pytest.mark.parametrize("position,scope,reads", [
    ("pre", "se_pre", "stages.0.blocks.0.branch.conv1.conv"),
    ("post", "se_post", "stages.0.blocks.1.branch.conv1.conv"),
    ("identity", "se_identity", "stages.0.blocks.0.add"),
])
def test_positions(spec_dir, position, scope, reads):
    _, g = build(f"  - {{where: {{stages: 0, blocks: 0}}, position: {position}, reduction: 4}}\n", spec_dir)
    s = f"stages.0.blocks.0.{scope}"
    assert se_scopes(g) == [s]
    assert s + ".scale" in g.inputs(reads)


def test_pre_keeps_identity_path_plain(spec_dir):
    _, g = build("  - {where: {stages: 0, blocks: 0}, position: pre, reduction: 4}\n", spec_dir)
    # the branch sees the recalibrated input; the identity shortcut still reads the block input
    assert g.inputs("stages.0.blocks.0.branch.conv1.conv") == ["stages.0.blocks.0.se_pre.scale"]
    assert g.inputs("stages.0.blocks.0.add")[0] == "stem.conv1.act"


def test_after_path_glob_inside_blocks(spec_dir):
    _, g = build("  - {where: {path: 'stages.*.blocks.*.branch.conv1'}, reduction: 4}\n", spec_dir)
    assert len(g.se) == 5
    assert g.inputs("stages.2.blocks.0.branch.conv2.conv") == ["stages.2.blocks.0.branch.conv1_se.scale"]
    _, g2 = build("  - {where: {stages: all}, position: {after: branch.conv1}, reduction: 4}\n", spec_dir)
    assert g2.structural_hash() == g.structural_hash()


def test_after_a_single_op(spec_dir):
    _, g = build("  - {where: {path: 'stages.2.blocks.0.branch.conv2.bn'}, reduction: 4}\n", spec_dir)
    assert g.inputs("stages.2.blocks.0.branch.conv2.act") == ["stages.2.blocks.0.branch.conv2.bn_se.scale"]


def test_select_by_template_and_stage_name(spec_dir):
    _, g = build("  - {where: {blocks: 'bottle*'}}\n", spec_dir)
    assert se_scopes(g) == ["stages.2.blocks.0.se"]
    _, g = build("  - {where: {name: last}}\n", spec_dir)
    assert se_scopes(g) == ["stages.2.blocks.0.se"]


def test_later_rule_overrides_and_none_removes(spec_dir):
    _, g = build("  - {where: {stages: all}}\n  - {where: {stages: 1}, reduction: 4}\n"
                 "  - {where: {stages: 0, blocks: 1}, position: none}\n", spec_dir)
    assert g.se["stages.1.blocks.0.se"]["reduced"] == 8
    assert g.se["stages.0.blocks.0.se"]["reduced"] == 1
    assert "stages.0.blocks.1.se" not in g.se


def test_options_squeeze_gate_bias(spec_dir):
    _, g = build("  - {where: {stages: 1}, squeeze: max, gate: hard_sigmoid, bias: false, channels: 3}\n", spec_dir)
    assert g.node("stages.1.blocks.0.se.pool")["attrs"]["mode"] == "max"
    assert g.node("stages.1.blocks.0.se.gate")["attrs"]["kind"] == "hard_sigmoid"
    assert g.node("stages.1.blocks.0.se.fc1")["attrs"] == {**g.node("stages.1.blocks.0.se.fc1")["attrs"],
                                                           "bias": False, "out": 3}


def test_applying_rules_twice_is_idempotent(spec_dir):
    spec, g = build("  - {where: {stages: all}}\n  - {where: {path: 'stages.0.**.conv1.bn'}, reduction: 4}\n",
                    spec_dir)
    again = insert_se(g, spec.data["se"], spec.smap, modules=attention_modules(spec))
    assert again.structural_hash() == g.structural_hash()
    assert again.attention == g.attention and again.scopes == g.scopes


def test_insert_se_in_place_gives_what_the_copy_gives(spec_dir):
    spec, _ = build("  - {where: {stages: all}}\n", spec_dir)
    rules, modules = spec.data["se"], attention_modules(spec)
    plain = expand(spec)
    before = plain.structural_hash()
    copied = insert_se(plain, rules, spec.smap, modules=modules)
    assert plain.structural_hash() == before and not plain.attention   # left as it was
    same = insert_se(plain, rules, spec.smap, modules=modules, copy=False)
    assert same is plain and same.structural_hash() == copied.structural_hash() != before
    assert (same.attention, same.scopes, same.blocks, same.composites) == (
        copied.attention, copied.scopes, copied.blocks, copied.composites)


def test_insert_se_needs_the_attention_templates(spec_dir):
    spec, g = build("  - {where: {stages: all}}\n", spec_dir)
    with pytest.raises(TypeError, match="modules=frontend.attention_modules"):
        insert_se(g, spec.data["se"], spec.smap, None)


def test_removing_rules_gives_the_plain_ir(spec_dir):
    spec, g = build("  - {where: {stages: all}, position: post}\n", spec_dir)
    plain = secompile.build_ir(spec, se=False)
    assert expand(spec).structural_hash() == plain.structural_hash()
    assert plain.structural_hash() != g.structural_hash()


def test_every_position_compiles_and_shapes_match(spec_dir):
    rules = ("  - {where: {stages: 0}, position: pre, reduction: 4}\n"
             "  - {where: {stages: 1}, position: identity, reduction: 4}\n"
             "  - {where: {stages: 2}, position: post, reduction: 4}\n"
             "  - {where: {path: 'stages.2.blocks.0.branch.conv2'}, reduction: 4}\n"
             "  - {where: {path: 'stem.conv1'}, reduction: 4}\n")
    spec, g = build(rules, spec_dir)
    model = secompile.compile(spec, seed=0)
    seen = trace_shapes(model.eval(), torch.randn(2, 3, 32, 32))
    assert seen == {p: g.shape(p) for p in g.order if p != "input"}
    assert sum(p.numel() for p in model.parameters()) == secompile.count(spec)["total"]["params"]


def test_rule_errors(spec_dir):
    with pytest.raises(secompile.SpecError) as e:
        build("  - {where: {path: 'stages.*.blocks.*.branch.conv9'}}\n"
              "  - {where: {stages: 0}, position: {after: branch.cnv1}}\n"
              "  - {where: {path: 'head.fc'}}\n", spec_dir)
    msgs = [m.split(": ", 1)[1] for m in e.value.messages]
    assert msgs == [
        "se[0].where.path: selector {path: stages.*.blocks.*.branch.conv9} matches nothing "
        "(did you mean 'stages.*.blocks.*.branch.conv3'?)",
        "se[1].position.after: 'branch.cnv1' is not inside block stages.0.blocks.0 "
        "(did you mean 'branch.conv1'?)",
        "se[2]: SE needs a feature map (C, H, W); head.fc has shape (10,)",
    ]


def test_glob_segments():
    assert glob_match("stages.*.blocks.*.branch.conv2", "stages.3.blocks.10.branch.conv2")
    assert not glob_match("stages.*.conv2", "stages.3.blocks.10.branch.conv2")
    assert glob_match("stages.**.conv2", "stages.3.blocks.10.branch.conv2")
    assert glob_match("**", "stem")


def test_after_then_identity_on_the_next_block():
    """onnx-1: an `after` SE feeding a block whose identity shortcut also gets an SE."""
    spec = {"name": "t", "input": {"channels": 4, "size": 8},
            "blocks": {"r": {"params": {}, "residual": {"branch": [{"conv": {"out": 8, "kernel": 3}}]}}},
            "stages": [{"layers": [{"name": "a", "conv": {"out": 8, "kernel": 1}}]}, {"block": "r"}],
            "se": [{"where": {"path": "stages.0.a"}, "reduction": 4},
                   {"where": {"stages": [1]}, "position": "identity", "reduction": 4},
                   {"where": {"path": "stages.1.blocks.0.branch.0"}, "reduction": 4},
                   {"where": {"stages": [1]}, "position": "standard", "reduction": 4}]}
    g = secompile.build_ir(spec)
    assert g.inputs("stages.1.blocks.0.se_identity.pool") == ["stages.0.a_se.scale"]
    assert g.inputs("stages.1.blocks.0.se.pool") == ["stages.1.blocks.0.branch.0_se.scale"]
    assert g.inputs("stages.1.blocks.0.add") == ["stages.1.blocks.0.se_identity.scale", "stages.1.blocks.0.se.scale"]


LAYER_SE_NET = """
name: layer_se
input: {channels: 8, size: 8}
blocks:
  mb:
    params: {out: int}
    residual:
      branch:
        - {name: dw, conv: {out: $in_channels, kernel: 3, groups: $in_channels, act: silu}}
        - {name: se, block: {template: se, channels: 2, act: silu}}
        - {name: pwl, conv: {out: $out, act: none}}
stages: [{block: mb, repeat: 2, out: 8}]
se: [{where: {stages: all}, position: post, reduction: 4}]
"""


def test_rules_twice_keep_the_modules_written_as_layers():
    """Regression (session 3's 'twice != once'): a spec's own attention layers are records too
    (rule None); re-applying the rules leaves them and the rules' modules as they were, and
    dropping the rules drops only the rules' modules."""
    spec = secompile.load_spec(LAYER_SE_NET)
    once = secompile.build_ir(spec)
    by_rule = {s: a.rule for s, a in once.attention.items()}
    assert by_rule == {"stages.0.blocks.0.branch.se": None, "stages.0.blocks.0.se_post": ("se", 0),
                       "stages.0.blocks.1.branch.se": None, "stages.0.blocks.1.se_post": ("se", 0)}
    twice = insert_se(once, spec.data["se"], spec.smap, modules=attention_modules(spec))
    assert twice.structural_hash() == once.structural_hash()
    assert twice.attention == once.attention and twice.scopes == once.scopes
    plain = secompile.build_ir(spec, se=False)
    assert sorted(plain.attention) == ["stages.0.blocks.0.branch.se", "stages.0.blocks.1.branch.se"]
    assert len(once) - len(plain) == 2 * 6   # pool, fc1, act, fc2, gate, scale per se_post
    stripped, want = strip_se(once), plain.to_dict()   # the property tests' view (helpers.py)
    assert (stripped["output"], stripped["nodes"]) == (want["output"], want["nodes"])


@pytest.mark.parametrize("name", ["se_resnext50", "cbam_resnet50", "rexnet_100", "efficientnet_b0",
                                  "skresnet18"])
def test_names_in_use_is_the_set_of_scopes(name):
    """insert_se's name check reads the graph's prefix index (no walk of the order): the same
    set as `scopes`, modules the SE rules inserted excluded, layers' attention modules kept."""
    from secompile.passes.se_rules import names_in_use, scopes
    g = secompile.build_ir(name)
    assert names_in_use(g) == set(scopes(g))
    inserted = [s for s, a in g.attention.items() if a.rule is not None]
    assert all(s not in names_in_use(g) for s in inserted)
