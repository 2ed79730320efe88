"""Language v2 (issue 12, items 1-4): derived values, builtins, per-block names, `when`,
`skip: auto`, drop_path, gate templates and attention modules as SE-rule templates."""

import glob
import math
import os

import numpy as np
import pytest
import torch

import secompile
from secompile.analysis.counts import Counts
from secompile.frontend import attention_modules, expand
from secompile.lang import expr
from secompile.lang.errors import SpecError
from secompile.passes import fuse_scale_add, insert_se
from support import SPECS, randomise_bn


def timm_make_divisible(v, divisor=8, min_value=None, round_limit=0.9):  # timm/layers/helpers.py
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def build(text, **kw):
    return secompile.build_ir(secompile.load_spec(text, base_dir=str(SPECS)), **kw)


def problems(text):
    with pytest.raises(SpecError) as e:
        build(text)
    return [str(p).split(": ", 1)[1] for p in e.value.problems]


def net(blocks="", stages="", se="", size=16, stem=None):
    stem = stem or "stem: [{name: conv1, conv: {out: 16, kernel: 3}}]\n"
    return (
        f"name: t\ninclude: [blocks/resnet.yaml]\ninput: {{channels: 3, size: {size}}}\n"
        + (f"blocks:\n{blocks}" if blocks else "")
        + stem
        + f"stages:\n{stages}"
        + "head: [{name: pool, global_avgpool: {}}, {name: fc, linear: {out: 10}}]\n"
        + (f"se:\n{se}" if se else "")
    )


# -- builtins -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "v, d",
    [
        (16 * 0.25, 8),
        (72 / 4, 8),
        (240 / 4, 8),
        (960 * 0.25, 8),
        (3.9, 8),
        (32 / 8, 16),
        (100, 1),
        (27.5, 4),
        (1, 8),
    ],
)
def test_make_divisible_is_timms(v, d):
    assert expr.evaluate(f"make_divisible({v}, {d})", {}) == timm_make_divisible(v, d)
    assert expr.evaluate(
        f"make_divisible({v}, divisor={d}, round_limit=0.0)", {}
    ) == timm_make_divisible(v, d, round_limit=0.0)


def test_math_builtins_and_keyword_errors():
    assert expr.evaluate("log2($c)", {"c": 256}) == 8.0
    assert expr.evaluate("ceil(7 / 2) + floor(7 / 2)", {}) == 7
    with pytest.raises(expr.ExprError, match="make_divisible.. takes no keyword argument 'divsor'"):
        expr.evaluate("make_divisible(8, divsor=8)", {})
    with pytest.raises(expr.ExprError, match="max.. takes no keyword argument 'key'"):
        expr.evaluate("max(1, 2, key=3)", {})
    with pytest.raises(expr.ExprError, match="log2..: log2 needs a positive number, got 0"):
        expr.evaluate("log2(0)", {})
    with pytest.raises(expr.ExprError, match="make_divisible..: .*division"):
        expr.evaluate("make_divisible(8, 0)", {})


# -- derived parameters, vars, per-block names ------------------------------------------------
BLOCKS = """\
  inv:
    params: {out: int, expand: 4, mid: "$in_channels * $expand", rate: 0.3}
    vars:
      width: "make_divisible($mid / 3, 8)"
      p: "$rate * $net_block_index / $net_blocks"
    residual:
      branch:
        - {name: pw, conv: {out: $width}}
        - {name: pwl, conv: {out: $out, act: none}}
        - {name: drop, drop_path: {p: $p}, when: "$net_block_index > 0"}
      skip: auto
"""


def test_params_derive_from_earlier_params_and_vars():
    g = build(
        net(
            BLOCKS,
            "  - {block: inv, repeat: 2, out: 16}\n  - {block: inv, repeat: 2, out: 24, mid: 40}\n",
        )
    )
    widths = [
        g.node(f"stages.{s}.blocks.{b}.branch.pw.conv")["attrs"]["out"]
        for s in (0, 1)
        for b in (0, 1)
    ]
    # 16 * 4 / 3 = 21.3 -> 24;  given mid 40 / 3 -> 16 (then 13.3 -> 16)
    assert widths == [24, 24, 16, 16]
    drops = [g.node(p)["attrs"]["p"] for p in g.order if g.op(p) == "drop_path"]
    assert drops == pytest.approx(
        [0.3 * 1 / 4, 0.3 * 2 / 4, 0.3 * 3 / 4]
    )  # block 0's left out (when)
    assert sorted(p for p in g.order if g.op(p) == "add") == [
        "stages.0.blocks.0.add",
        "stages.0.blocks.1.add",
        "stages.1.blocks.1.add",
    ]
    # stages.1.blocks.0 changes the width: no skip, no add; the block is just its branch
    assert (
        g.blocks["stages.1.blocks.0"].kind == "layers"
        and g.blocks["stages.1.blocks.0"].merge is None
    )
    assert g.blocks["stages.1.blocks.0"].output == "stages.1.blocks.0.branch.drop"


def test_per_block_names():
    blocks = """\
  probe:
    params: {out: int}
    layers:
      - name: c
        conv: {out: "$out + 1000 * $stage_index + 100 * $block_index + 10 * $stage_blocks"}
      - {name: d, conv: {out: "$net_block_index * 1000 + $net_blocks * 10 + $block_in // 16"}}
"""
    g = build(
        net(
            blocks,
            "  - {block: probe, repeat: 2, out: 1}\n  - {block: probe, repeat: 1, out: 2}\n"
            "  - layers:\n      - name: l\n"
            '        conv: {out: "$stage_index + $net_block_index * 10 + $block_index"}\n',
        )
    )
    outs = {p: g.node(p)["attrs"]["out"] for p in g.order if g.op(p) == "conv2d"}
    assert [outs[f"stages.0.blocks.{j}.c.conv"] for j in (0, 1)] == [21, 121]
    assert outs["stages.1.blocks.0.c.conv"] == 1012
    # block_in: 16 from the stem, then block 0's output (its conv d: 41 channels)
    assert [outs[f"stages.0.blocks.{j}.d.conv"] for j in (0, 1)] == [
        0 + 40 + 16 // 16,
        1000 + 40 + 41 // 16,
    ]
    assert outs["stages.2.l.conv"] == 2 + 30


def test_expression_default_errors_are_located_at_the_template():
    msgs = problems(
        net(
            '  b:\n    params: {out: int, mid: "$in_channels * $expnd"}\n'
            "    layers: [{conv: {out: $mid}}]\n",
            "  - {block: b, out: 8}\n",
        )
    )
    assert msgs == [
        "blocks.b.params.mid: unknown parameter 'expnd' in expression '$in_channels * $expnd' "
        "(in stages[0].blocks[0])"
    ]


# -- when, skip: auto -------------------------------------------------------------------------
def test_when_removes_a_layer_and_must_be_boolean():
    stages = (
        '  - {layers: [{name: a, conv: {out: 8}, when: "$stage_index == 1"},\n'
        "              {name: b, conv: {out: 8}}]}\n"
    )
    g = build(net("", stages))
    assert "stages.0.a.conv" not in g and "stages.0.b.conv" in g
    msgs = problems(
        net("", '  - {layers: [{name: a, conv: {out: 8}, when: "$stage_index + 1"}]}\n')
    )
    assert msgs == ["stages[0].layers[0].when: when: expected true or false, got 1"]


def test_skip_auto_and_se_positions():
    blocks = (
        "  r:\n    params: {out: int, stride: 1}\n    residual:\n"
        "      branch: [{name: c, conv: {out: $out, stride: $stride}}]\n      skip: auto\n"
    )
    text = net(blocks, "  - {block: r, repeat: 2, out: 32, stride: 2}\n")
    g = build(text)
    assert "stages.0.blocks.0.add" not in g and g.inputs("stages.0.blocks.1.add") == [
        "stages.0.blocks.0.branch.c.act",
        "stages.0.blocks.1.branch.c.act",
    ]
    g = build(text + "se:\n  - {where: {stages: 0, blocks: 1}}\n")
    assert list(g.se) == ["stages.0.blocks.1.se"]
    msgs = problems(text + "se:\n  - {where: {stages: 0, blocks: 0}}\n")
    assert msgs == [
        "se[0]: position 'standard' needs a residual block; stages.0.blocks.0 is layers "
        "(use post or pre)"
    ]
    assert list(build(text + "se:\n  - {where: {stages: 0, blocks: 0}, position: post}\n").se) == [
        "stages.0.blocks.0.se_post"
    ]


# -- drop_path -------------------------------------------------------------------------------
def test_drop_path_counts_nothing_and_is_the_identity_in_eval_and_onnx():
    text = net(BLOCKS, "  - {block: inv, repeat: 3, out: 16, rate: 0.5}\n")
    g = build(text)
    c = Counts(g)
    dp = [p for p in g.order if g.op(p) == "drop_path"]
    assert len(dp) == 2 and all(c.nodes[p].macs == 0 and c.nodes[p].params == 0 for p in dp)
    model = secompile.compile(secompile.load_spec(text, base_dir=str(SPECS)), seed=0).eval()
    x = torch.randn(8, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        assert not torch.equal(model.eval()(x), model.train()(x))  # training drops (and BN) differ
    om = secompile.to_onnx(secompile.load_spec(text, base_dir=str(SPECS)), model)
    assert {n.op_type for n in om.graph.node if n.name in dp} == {"Identity"}
    _onnx_matches_torch(text)


def test_drop_path_drops_whole_samples_in_training():
    from secompile.backends.torch import DropPath

    m = DropPath(0.5).train()
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 2, 2)
    y = m(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()  # a sample is dropped whole
    assert abs((per_sample[:, 0] == 0).float().mean().item() - 0.5) < 0.05
    assert torch.equal(m.eval()(x), x)


def test_drop_path_p_is_checked():
    msgs = problems(net(BLOCKS, "  - {block: inv, repeat: 2, out: 16, rate: 2.0}\n"))
    assert msgs == [
        "blocks.inv.residual.branch[2].drop_path.p: drop_path p must be in [0, 1), got 1.0 "
        "(in stages[0].blocks[1])"
    ]


# -- attention modules: the paper's SE as a template -----------------------------------------
SE_SPECS = [   # the paper's SE (no module:): the `se` template is its one definition
    p for p in sorted(glob.glob(str(SPECS / "*.yaml")))
    if (rules := secompile.load_spec(p).data.get("se")) and not any("module" in r for r in rules)
]
PAPER_SE = {"pool": "global_pool", "fc1": "conv2d", "act": "act", "fc2": "conv2d", "gate": "act",
            "scale": "mul"}


@pytest.mark.parametrize("path", SE_SPECS, ids=lambda p: os.path.basename(p)[:-5])
def test_the_se_template_is_the_papers_block(path):
    spec = secompile.load_spec(path)
    g = insert_se(expand(spec), spec.data["se"], spec.smap, modules=attention_modules(spec))
    counts = Counts(g)
    assert g.attention and len(g.attention) == len(g.se)
    for s, m in g.attention.items():
        inside = {p[len(s) + 1:]: g.op(p) for p in g.order if p.startswith(s + ".")}
        c = g.shape(m.input)[0]
        assert (inside, m.module, m.kind, m.fusion, m.output) == (PAPER_SE, "se", "se", "mul",
                                                                 f"{s}.scale")
        assert g.inputs(f"{s}.pool") == [m.input] and g.inputs(m.output) == [m.input, f"{s}.gate"]
        assert (g.shape(f"{s}.fc1")[0], g.shape(f"{s}.fc2")[0]) == (m.width, c)
        assert m.param_count == counts.scope(s).params > 0 and m.rule[0] == "se"
        assert g.scopes[s].kind == "attention" and g.scopes[s].template == "se"


def test_fuse_pass_works_on_template_se():
    g = secompile.build_ir(SPECS / "se_resnet50.yaml")
    fused = fuse_scale_add(g)
    assert sum(fused.op(p) == "scale_add" for p in fused.order) == 16


def test_se_rule_with_block_input_width_silu_and_divisor():
    stages = "  - {block: bottleneck, repeat: 2, out: 64, width: 16}\n"
    g = build(
        net("", stages, '  - {where: {stages: all}, channels: "$block_in // 4", act: silu}\n')
    )
    # block 0: block_in 16 (stem) -> 4; block 1: 64 -> 16; the SE input is the branch's 64 channels
    assert [g.node(f"stages.0.blocks.{j}.se.fc1")["attrs"]["out"] for j in (0, 1)] == [4, 16]
    assert g.node("stages.0.blocks.0.se.act")["attrs"]["kind"] == "silu"
    assert g.node("stages.0.blocks.0.se.fc2")["attrs"]["out"] == 64
    g = build(net("", stages, "  - {where: {stages: all}, reduction: 6, divisor: 8}\n"))
    assert g.node("stages.0.blocks.0.se.fc1")["attrs"]["out"] == timm_make_divisible(
        64 / 6, 8, round_limit=0.0
    )


def test_effective_se_module_counts():
    stages = "  - {block: bottleneck, repeat: 2, out: 64, width: 16}\n"
    plain = Counts(build(net("", stages))).total.params
    g = build(net("", stages, "  - {where: {stages: all}, module: effective_se}\n"))
    assert Counts(g).total.params - plain == 2 * (64 * 64 + 64)
    assert [g.op(f"stages.0.blocks.0.se.{n}") for n in ("pool", "fc", "gate", "scale")] == [
        "global_pool",
        "conv2d",
        "act",
        "mul",
    ]
    assert g.node("stages.0.blocks.0.se.gate")["attrs"]["kind"] == "hard_sigmoid"
    assert g.se["stages.0.blocks.0.se"]["module"] == "effective_se"
    assert "stages.0.blocks.0.se.fc" in secompile.api.to_dot(g, "op")  # drawn without fc1/fc2


def test_user_gate_template_and_rule_errors_are_located_at_the_rule():
    blocks = (
        "  mygate:\n    params: {k: 3}\n    gate:\n      - {name: pool, global_pool: {mode: max}}\n"
        "      - {name: gate, act: sigmoid}\n"
    )
    stages = "  - {block: bottleneck, repeat: 1, out: 64, width: 16}\n"
    g = build(net(blocks, stages, "  - {where: {stages: all}, module: mygate}\n"))
    assert g.inputs("stages.0.blocks.0.se.scale") == [
        "stages.0.blocks.0.branch.conv3.bn",
        "stages.0.blocks.0.se.gate",
    ]
    msgs = problems(net(blocks, stages, "  - {where: {stages: all}, module: mygate, kk: 5}\n"))
    assert msgs == [
        "se[0].kk: unknown parameter 'kk' of block template 'mygate' (did you mean 'k'?)"
    ]
    msgs = problems(net(blocks, stages, "  - {where: {stages: all}, module: mygat}\n"))
    assert msgs == ["se[0].module: unknown attention module 'mygat' (did you mean 'mygate'?)"]
    msgs = problems(net("", stages, "  - {where: {stages: all}, reductoin: 4}\n"))
    assert msgs == ["se[0].reductoin: unknown key 'reductoin' (did you mean 'reduction'?)"]
    msgs = problems(net("", stages, "  - {where: {stages: all}, reduction: 128}\n"))
    assert msgs == [
        "se[0].reduction: reduction 128 leaves no channel for 64 channels (64 // 128 = 0)"
    ]


def test_attention_module_problems_are_reported_with_the_network_s():
    """issue 12 item 5 with modules: a rule's module is checked on the partly built graph too
    (a bad module name, a bad module parameter), next to the network's own problems."""
    stages = (
        "  - {block: bottleneck, repeat: 1, out: 64, width: 16}\n"
        "  - {block: bottleneck, repeat: 1, out: 128, width: 32, bogus: 1}\n"
    )
    se = (
        "  - {where: {stages: all}, module: ecaa}\n"
        "  - {where: {stages: [0]}, module: eca, kk: 1}\n"
    )
    assert problems(net("", stages, se)) == [
        "stages[1].bogus: unknown parameter 'bogus' of block template 'bottleneck'",
        "se[0].module: unknown attention module 'ecaa' (did you mean 'eca'?)",
        "se[1].kk: unknown parameter 'kk' of block template 'eca'",
    ]


def test_a_module_the_schema_refused_is_not_called_unknown():
    blocks = "  mygate:\n    gate: [{global_pool: {mode: avgg}}, {act: sigmoid}]\n"
    stages = "  - {block: bottleneck, repeat: 1, out: 64, width: 16}\n"
    msgs = problems(net(blocks, stages, "  - {where: {stages: all}, module: mygate}\n"))
    assert len(msgs) == 1 and msgs[0].startswith("blocks.mygate.gate[0].global_pool.mode: ")


# -- ECA, CBAM, Selective Kernel (v2ops' ops) -------------------------------------------------
def eca_k(c, gamma=2, beta=1):  # timm/layers/eca.py
    t = int(abs(math.log(c, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


RESNET50_BLOCKS = [(256, 3), (512, 4), (1024, 6), (2048, 3)]  # (out channels, blocks) per stage


def test_eca_kernel_rule():
    assert [eca_k(c) for c, _ in RESNET50_BLOCKS] == [5, 5, 5, 7]
    for c in (16, 64, 100, 256, 2048, 3000):
        t = expr.evaluate("int(abs(log2($c) + 1) / 2)", {"c": c})
        assert expr.evaluate("max($t if $t % 2 else $t + 1, 3)", {"t": t}) == eca_k(c)


def test_eca_resnet50_parameters_follow_from_the_definition():
    plain = secompile.count(SPECS / "resnet50_tv.yaml")["total"]["params"]
    g = secompile.build_ir(SPECS / "eca_resnet50.yaml")
    assert Counts(g).total.params == plain + sum(n * eca_k(c) for c, n in RESNET50_BLOCKS)
    assert [g.node(f"stages.{s}.blocks.0.se.conv")["attrs"]["kernel"] for s in range(4)] == [
        5,
        5,
        5,
        7,
    ]


def test_cbam_resnet50_parameters_follow_from_the_definition():
    plain = secompile.count(SPECS / "resnet50_tv.yaml")["total"]["params"]
    g = secompile.build_ir(SPECS / "cbam_resnet50.yaml")
    # channel MLP C -> C/16 -> C without bias; spatial 7x7 conv 2 -> 1 without bias + BN (2)
    per_block = {c: 2 * c * (c // 16) + 2 * 49 + 2 for c, _ in RESNET50_BLOCKS}
    assert Counts(g).total.params == plain + sum(n * per_block[c] for c, n in RESNET50_BLOCKS)


def _onnx_matches_torch(text):
    import onnxruntime as ort

    spec = secompile.load_spec(text, base_dir=str(SPECS))
    model = secompile.compile(spec, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    randomise_bn(model, gen)   # randomised BN: statistics a plain init would hide
    om = secompile.to_onnx(spec, model)
    sess = ort.InferenceSession(om.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(2, *spec.input_shape, generator=gen)
    with torch.no_grad():
        want = model(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - want).max() < 1e-4


SMALL_R50 = """
name: small
include: [blocks/resnet.yaml]
input: {channels: 3, size: 32}
stem: [{name: conv1, conv: {out: 16, kernel: 3}}]
stages:
  - {block: bottleneck, repeat: 2, out: 64, width: 16, stride_at: conv2}
  - {block: bottleneck, repeat: 1, out: 128, width: 32, stride: 2, stride_at: conv2}
head: [{name: pool, global_avgpool: {}}, {name: fc, linear: {out: 10}}]
"""


@pytest.mark.parametrize("module", ["se", "effective_se", "eca", "cbam"])
def test_attention_modules_onnx_matches_torch(module):
    _onnx_matches_torch(SMALL_R50 + f"se:\n  - {{where: {{stages: all}}, module: {module}}}\n")


def test_se_and_effective_se_onnx_matches_torch():
    for module in ("se", "effective_se"):
        _onnx_matches_torch(
            SMALL_R50 + f"se:\n  - {{where: {{stages: all}}, module: {module}, act: silu}}\n"
            if module == "se"
            else SMALL_R50 + f"se:\n  - {{where: {{stages: all}}, module: {module}}}\n"
        )


SK = """
name: sk
input: {channels: 3, size: 16}
blocks:
  sk_conv:
    params: {out: int, stride: 1}
    parallel:
      branches:
        d1: [{name: conv, conv: {out: $out, kernel: 3, stride: $stride}}]
        d2: [{name: conv, conv: {out: $out, kernel: 3, stride: $stride, dilation: 2}}]
      merge: {select: sk_attention, reduction: 8, divisor: 16}
stem: [{name: conv1, conv: {out: 32, kernel: 3}}]
stages:
  - {block: sk_conv, repeat: 2, out: 32}
head: [{name: pool, global_avgpool: {}}, {name: fc, linear: {out: 10}}]
"""


def test_selective_kernel_merge():
    g = build(SK)
    b = "stages.0.blocks.0"
    assert g.inputs(f"{b}.select") == [
        f"{b}.attn.fc_select",
        f"{b}.d1.conv.act",
        f"{b}.d2.conv.act",
    ]
    assert g.inputs(f"{b}.attn.pool") == [f"{b}.add"]
    assert g.node(f"{b}.attn.fc_reduce")["attrs"]["out"] == timm_make_divisible(32 / 8, 16)
    assert g.shape(f"{b}.attn.fc_select") == (64, 1, 1)
    _onnx_matches_torch(SK)


def test_select_merge_errors():
    msgs = problems(SK.replace("select: sk_attention", "select: sk_atention"))
    assert msgs == [
        "blocks.sk_conv.parallel.merge.select: unknown block template 'sk_atention' "
        "(did you mean 'sk_attention'?) (in stages[0].blocks[0])"
    ]
