"""Each construct the model zoo needs, on its own, in a small spec: the IR (shapes, attributes,
counts) and the compiled module's numbers against a hand-written PyTorch computation."""
import pytest
import torch
import torch.nn.functional as F

import secompile
from secompile.analysis.counts import Counts
from secompile.lang.errors import SpecError


def build(text):
    return secompile.build_ir(text)


def compiled(text):
    model = secompile.compile(text, seed=0).eval()
    with torch.no_grad():   # non-trivial BN statistics, so that the references must apply them
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


def cbr(unit, path, x, relu=True):
    """conv + BN (+ ReLU) of the compiled layer `path` (its `.conv` and `.bn` children)."""
    layer = unit.get_submodule(path)
    y = layer.bn(layer.conv(x))
    return F.relu(y) if relu else y


def run(model, x):
    with torch.no_grad():
        return model(x)


def spec(body, size=16, channels=8):
    return f"name: t\ninput: {{channels: {channels}, size: {size}}}\n{body}"


# -- parallel branches merged by concat -----------------------------------------------------------
CONCAT = spec("""
stages:
  - layers:
      - name: mix
        parallel:
          branches:
            a: [{name: c, conv: {out: 6, kernel: 1}}]
            b: [{name: r, conv: {out: 4, kernel: 1}}, {name: c, conv: {out: 5, kernel: 3}}]
""")


def test_concat_parallel():
    g = build(CONCAT)
    assert g.op("stages.0.mix.concat") == "concat"
    assert g.inputs("stages.0.mix.concat") == ["stages.0.mix.a.c.act", "stages.0.mix.b.c.act"]
    assert g.shape("stages.0.mix.concat") == (11, 16, 16)
    c = Counts(g)
    assert c.total.macs == (6 * 8 + 4 * 8 + 5 * 4 * 9) * 256
    assert c.total.params == 6 * 8 + 4 * 8 + 5 * 4 * 9 + 2 * (6 + 4 + 5)
    m = compiled(CONCAT)
    x = torch.randn(2, 8, 16, 16)
    u = m.stages[0]
    ref = torch.cat([cbr(u, "mix.a.c", x), cbr(u, "mix.b.c", cbr(u, "mix.b.r", x))], 1)
    assert torch.allclose(run(m, x), ref, atol=1e-5)


def test_parallel_add_merge_and_post():
    g = build(spec("""
stages:
  - layers:
      - parallel:
          branches: [[{conv: {out: 8, kernel: 1}}], [identity]]
          merge: add
          post: [relu]
"""))
    assert g.op("stages.0.0.add") == "add" and g.shape("stages.0.0.post.0") == (8, 16, 16)


# -- pooling branches -------------------------------------------------------------------------------
POOL_BRANCH = spec("""
stages:
  - layers:
      - name: mix
        parallel:
          branches:
            conv: [{name: c, conv: {out: 4, kernel: 1}}]
            avg:
              - {name: pool, avgpool: {kernel: 3, stride: 1, padding: 1}}
              - {name: proj, conv: {out: 2, kernel: 1}}
            avg_nopad: [{name: pool, avgpool: {kernel: 3, stride: 1, padding: 1, count_include_pad: false}}]
            max: [{name: pool, maxpool: {kernel: 3, stride: 1, padding: 1}}]
""", size=7, channels=3)


def test_pooling_branches():
    g = build(POOL_BRANCH)
    assert g.shape("stages.0.mix.concat") == (4 + 2 + 3 + 3, 7, 7)
    c = Counts(g)
    assert c.nodes["stages.0.mix.avg.pool"].macs == 9 * 3 * 49      # 9 reads per output element
    assert c.nodes["stages.0.mix.max.pool"].macs == 0
    assert g.node("stages.0.mix.avg_nopad.pool")["attrs"]["count_include_pad"] is False
    m = compiled(POOL_BRANCH)
    x = torch.randn(1, 3, 7, 7)
    u = m.stages[0]
    ref = torch.cat([cbr(u, "mix.conv.c", x),
                     cbr(u, "mix.avg.proj", F.avg_pool2d(x, 3, 1, 1)),
                     F.avg_pool2d(x, 3, 1, 1, count_include_pad=False),
                     F.max_pool2d(x, 3, 1, 1)], 1)
    assert torch.allclose(run(m, x), ref, atol=1e-5)


# -- a stride-2 reduction module ----------------------------------------------------------------------
def reduction(ceil):
    return spec(f"""
blocks:
  reduce:
    params: {{out: int}}
    parallel:
      branches:
        conv: [{{name: c, conv: {{out: $out, kernel: 3, stride: 2}}}}]
        pool: [{{name: pool, maxpool: {{kernel: 3, stride: 2, ceil_mode: {str(ceil).lower()}}}}}]
stages:
  - {{block: reduce, out: 6}}
""", size=28, channels=5)


def test_stride2_reduction_module():
    g = build(reduction(True))
    # the pool branch passes the input channels through: out + in channels, half the size
    assert g.shape("stages.0.blocks.0.concat") == (6 + 5, 14, 14)
    m = compiled(reduction(True))
    x = torch.randn(1, 5, 28, 28)
    u = m.stages[0].blocks[0]
    ref = torch.cat([cbr(u, "conv.c", x), F.max_pool2d(x, 3, 2, ceil_mode=True)], 1)
    assert torch.allclose(run(m, x), ref, atol=1e-5)
    # rounded down, the pool gives 13 x 13 against the conv's 14 x 14: reported, not guessed
    with pytest.raises(SpecError, match="concat needs equal spatial sizes, got 14x14, 13x13"):
        build(reduction(False))


# -- asymmetric kernels and valid padding -----------------------------------------------------------
ASYM = spec("""
stages:
  - layers:
      - {name: a, conv: {out: 6, kernel: [1, 7]}}
      - {name: b, conv: {out: 4, kernel: [7, 1]}}
      - {name: c, conv: {out: 4, kernel: [1, 3], stride: [1, 2]}}
""", size=17, channels=3)


def test_asymmetric_kernels():
    g = build(ASYM)
    a = g.node("stages.0.a.conv")["attrs"]
    assert a["kernel"] == (1, 7) and a["padding"] == (0, 3) and g.shape("stages.0.a.conv") == (6, 17, 17)
    b = g.node("stages.0.b.conv")["attrs"]
    assert b["kernel"] == (7, 1) and b["padding"] == (3, 0) and g.shape("stages.0.b.conv") == (4, 17, 17)
    assert g.shape("stages.0.c.conv") == (4, 17, 9)
    c = Counts(g)
    assert c.nodes["stages.0.a.conv"].macs == 6 * 3 * 7 * 17 * 17
    assert c.nodes["stages.0.b.conv"].params == 4 * 6 * 7
    m = compiled(ASYM)
    assert m.stages[0].a.conv.weight.shape == (6, 3, 1, 7)
    x = torch.randn(1, 3, 17, 17)
    u = m.stages[0]
    ref = cbr(u, "c", cbr(u, "b", cbr(u, "a", x)))
    assert torch.allclose(run(m, x), ref, atol=1e-5)


VALID = spec("""
stem:
  - {name: c1, conv: {out: 4, kernel: 3, stride: 2, padding: valid}}
  - {name: c2, conv: {out: 4, kernel: 3, padding: valid}}
  - {name: c3, conv: {out: 4, kernel: 3}}
  - {name: c4, conv: {out: 4, kernel: 3, padding: 2}}
  - {name: c5, conv: {out: 4, kernel: 3, padding: [0, 1]}}
  - {name: pool, maxpool: {kernel: 3, stride: 2}}
stages:
  - layers: [identity]
""", size=35, channels=3)


def test_valid_padding():
    g = build(VALID)
    assert [g.shape(f"stem.{n}.conv")[1:] for n in ("c1", "c2", "c3", "c4", "c5")] == \
        [(17, 17), (15, 15), (15, 15), (17, 17), (15, 17)]
    assert g.node("stem.c1.conv")["attrs"]["padding"] == (0, 0)
    assert g.shape("stem.pool") == (4, 7, 8)            # unpadded pools round down by default
    m = compiled(VALID)
    assert m.stem.c1.conv.padding == (0, 0) and m.stem.c5.conv.padding == (0, 1)
    assert run(m, torch.randn(1, 3, 35, 35)).shape == (1, 4, 7, 8)


# -- residual scaling and a multi-branch residual ---------------------------------------------------
SCALED = spec("""
blocks:
  res:
    params: {scale: 1.0}
    residual:
      branch:
        - name: mixed
          parallel:
            branches:
              b0: [{name: c, conv: {out: 4, kernel: 1}}]
              b1: [{name: c1, conv: {out: 4, kernel: 1}}, {name: c2, conv: {out: 6, kernel: [1, 3]}},
                   {name: c3, conv: {out: 6, kernel: [3, 1]}}]
        - {name: up, conv: {out: $in_channels, kernel: 1, norm: none, act: none}}
      shortcut: identity
      scale: $scale
      post: [relu]
stages:
  - {block: res, repeat: 2, scale: 0.17}
""", size=6)


def test_residual_scaling_and_multi_branch_residual():
    g = build(SCALED)
    add = g.node("stages.0.blocks.0.add")
    assert add["attrs"]["scales"] == (1.0, 0.17)
    assert add["inputs"] == ["input", "stages.0.blocks.0.branch.up.conv"]     # identity shortcut
    assert g.shape("stages.0.blocks.0.branch.mixed.concat") == (10, 6, 6)
    up = g.node("stages.0.blocks.0.branch.up.conv")["attrs"]
    assert up["out"] == 8 and up["bias"] is True                             # linear, with bias
    c = Counts(g)
    assert c.nodes["stages.0.blocks.0.add"].macs == 8 * 36                 # the scaled input: one MAC each
    m = compiled(SCALED)
    x = torch.randn(2, 8, 6, 6)
    y = x
    for blk in m.stages[0].blocks:
        b1 = cbr(blk, "branch.mixed.b1.c3", cbr(blk, "branch.mixed.b1.c2", cbr(blk, "branch.mixed.b1.c1", y)))
        b = torch.cat([cbr(blk, "branch.mixed.b0.c", y), b1], 1)
        y = F.relu(y + 0.17 * blk.branch.up.conv(b))
    assert torch.allclose(run(m, x), y, atol=1e-5)


def test_residual_scale_must_be_a_number():
    with pytest.raises(SpecError, match="scale must be a finite number"):
        build(spec("""
blocks:
  r: {params: {s: half}, residual: {branch: [{conv: {out: 8, kernel: 1}}], scale: $s}}
stages: [{block: r}]
"""))


def test_a_branch_name_that_yaml_reads_as_a_number_is_refused_where_it_is_written():
    """`1:` is an int key to YAML: a located problem, not a TypeError from the front end (a
    mutation campaign found it inside a template body)."""
    text = spec("""
blocks:
  fork:
    params: {out: int}
    parallel:
      branches:
        1: [{conv: {out: $out, kernel: 1}}]
        b: [{conv: {out: $out, kernel: 3}}]
stages: [{block: fork, out: 8}]
""")
    with pytest.raises(SpecError) as e:
        build(text)
    assert [m.split(": ", 1)[1] for m in e.value.messages] == [
        "blocks.fork.parallel.branches[1]: branch name 1 is not text: quote it ('1') "
        "(in stages[0].blocks[0])"]


# -- depthwise convolution ---------------------------------------------------------------------------
DEPTHWISE = spec("""
blocks:
  dw_sep:
    params: {out: int, stride: 1}
    layers:
      - {name: dw, conv: {out: $in_channels, kernel: 3, stride: $stride, groups: $in_channels}}
      - {name: pw, conv: {out: $out, kernel: 1}}
stages:
  - {block: dw_sep, out: 16, stride: 2}
""", size=8)


def test_depthwise_conv():
    g = build(DEPTHWISE)
    a = g.node("stages.0.blocks.0.dw.conv")["attrs"]
    assert a["groups"] == 8 and g.shape("stages.0.blocks.0.dw.conv") == (8, 4, 4)
    c = Counts(g)
    assert c.nodes["stages.0.blocks.0.dw.conv"].macs == 8 * 1 * 9 * 16
    assert c.nodes["stages.0.blocks.0.dw.conv"].params == 8 * 9
    m = compiled(DEPTHWISE)
    blk = m.stages[0].blocks[0]
    assert blk.dw.conv.weight.shape == (8, 1, 3, 3)
    x = torch.randn(1, 8, 8, 8)
    w = blk.dw.conv.weight
    dw = F.relu(blk.dw.bn(torch.cat([F.conv2d(x[:, i:i + 1], w[i:i + 1], stride=2, padding=1)
                                     for i in range(8)], 1)))
    assert torch.allclose(run(m, x), cbr(blk, "pw", dw), atol=1e-5)


def test_groups_must_divide_channels():
    with pytest.raises(SpecError, match="3 does not divide the 8 input channels"):
        build(spec("stages: [{layers: [{conv: {out: 6, kernel: 1, groups: 3}}]}]"))


# -- grouped 1x1 convs and channel shuffle -----------------------------------------------------------
SHUFFLE = spec("""
stages:
  - layers:
      - {name: g1, conv: {out: 6, kernel: 1, groups: 3}}
      - {name: shuffle, channel_shuffle: {groups: 3}}
""", size=4, channels=9)


def test_grouped_1x1_and_channel_shuffle():
    g = build(SHUFFLE)
    assert g.node("stages.0.g1.conv")["attrs"]["groups"] == 3
    assert Counts(g).nodes["stages.0.g1.conv"].params == 6 * 3
    m = compiled(SHUFFLE)
    assert m.stages[0].g1.conv.weight.shape == (6, 3, 1, 1)
    x = torch.randn(2, 9, 4, 4)
    y = cbr(m.stages[0], "g1", x)
    # channel k of group j goes to position k * groups + j: (g, C/g) -> (C/g, g)
    ref = y.view(2, 3, 2, 4, 4).transpose(1, 2).reshape(2, 6, 4, 4)
    out = run(m, x)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(out[:, [0, 1, 2, 3, 4, 5]], y[:, [0, 2, 4, 1, 3, 5]], atol=1e-6)
    with pytest.raises(SpecError, match="channel_shuffle groups=4 must divide channels 6"):
        build(SHUFFLE.replace("channel_shuffle: {groups: 3}", "channel_shuffle: {groups: 4}"))


# -- concat shortcut with an average pool (ShuffleNet's stride-2 unit) -------------------------------
UNIT = spec("""
blocks:
  unit:
    params: {out: int, stride: 1}
    residual:
      branch:
        - {name: c1, conv: {out: "$out // 4", kernel: 1}}
        - {name: dw, conv: {out: "$out // 4", kernel: 3, stride: $stride, groups: "$out // 4", act: none}}
        - {name: c2, conv: {out: "$out - $in_channels if $stride > 1 else $out", kernel: 1, act: none}}
      merge: "'concat' if $stride > 1 else 'add'"
      shortcut: {when: auto, layers: [{name: pool, avgpool: {kernel: 3, stride: 2, padding: 1}}]}
      post: [relu]
stages:
  - {block: unit, out: 24, stride: 2, repeat: 2}
""", size=8)


def test_concat_shortcut_with_avg_pool():
    g = build(UNIT)
    b0, b1 = g.blocks["stages.0.blocks.0"], g.blocks["stages.0.blocks.1"]
    assert g.op(b0.merge) == "concat" and g.shape(b0.merge) == (24, 4, 4)
    assert g.inputs(b0.merge) == ["stages.0.blocks.0.shortcut.pool", "stages.0.blocks.0.branch.c2.bn"]
    assert g.shape("stages.0.blocks.0.branch.c2.bn") == (16, 4, 4)           # out - in channels
    assert g.op(b1.merge) == "add" and b1.shortcut_out == b1.input            # shapes agree: identity
    assert not any(p.startswith("stages.0.blocks.1.shortcut") for p in g.order)
    m = compiled(UNIT)
    x = torch.randn(1, 8, 8, 8)
    u0, u1 = m.stages[0].blocks
    y = F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1),
                          cbr(u0, "branch.c2", cbr(u0, "branch.dw", cbr(u0, "branch.c1", x), False), False)], 1))
    y = F.relu(y + cbr(u1, "branch.c2", cbr(u1, "branch.dw", cbr(u1, "branch.c1", y), False), False))
    assert torch.allclose(run(m, x), y, atol=1e-5)


# -- layer stages and a dropout head --------------------------------------------------------------------
LAYER_STAGES = spec("""
stages:
  - name: conv1
    layers: [{name: c1, conv: {out: 4, kernel: 3}}, {name: c2, conv: {out: 4, kernel: 3}}]
  - name: conv2
    layers: [{name: pool, maxpool: {kernel: 2, stride: 2}}, {name: c1, conv: {out: 8, kernel: 3}}]
head:
  - {name: pool, maxpool: {kernel: 2, stride: 2}}
  - {name: flatten, flatten: {}}
  - {name: fc1, linear: {out: 10}}
  - {name: relu1, relu: {}}
  - {name: drop1, dropout: {p: 0.5}}
  - {name: fc2, linear: {out: 3}}
se:
  - {where: {stages: all}, position: post, reduction: 2}
""", size=8, channels=3)


def test_layer_stages_and_dropout_head():
    g = build(LAYER_STAGES)
    assert [s.name for s in g.stages] == ["conv1", "conv2"]
    assert g.shape(g.blocks["stages.0"].output) == (4, 8, 8) and g.shape("stages.1.c1.act") == (8, 4, 4)
    assert [s["input"] for s in g.se.values()] == ["stages.0.c2.act", "stages.1.c1.act"]  # each stage's output
    assert g.shape("head.flatten") == (8 * 2 * 2,) and g.node("head.drop1")["attrs"]["p"] == 0.5
    m = compiled(LAYER_STAGES)
    assert isinstance(m.head.drop1, torch.nn.Dropout) and m.head.drop1.p == 0.5
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(run(m, x), run(m, x))                # eval: dropout is the identity
    m.train()
    torch.manual_seed(0)
    feats = m.stages(m.stem(x))
    h = F.relu(m.head.fc1(torch.flatten(F.max_pool2d(feats, 2, 2), 1)))
    torch.manual_seed(1)
    out = m.head(feats)
    torch.manual_seed(1)
    assert torch.allclose(out, m.head.fc2(F.dropout(h, 0.5, True)), atol=1e-5)


def test_layer_stage_takes_only_layers_and_name():
    with pytest.raises(SpecError, match="a layer stage takes only 'layers' and 'name', not 'stride'"):
        build(spec("stages: [{layers: [identity], stride: 2}]"))


# -- a three-conv stem ------------------------------------------------------------------------------------
STEM = spec("""
stem:
  - {name: conv1, conv: {out: 8, kernel: 3, stride: 2}}
  - {name: conv2, conv: {out: 8, kernel: 3}}
  - {name: conv3, conv: {out: 16, kernel: 3}}
  - {name: pool, maxpool: {kernel: 3, stride: 2, ceil_mode: true}}
stages:
  - layers: [identity]
""", size=32, channels=3)


def test_three_conv_stem():
    g = build(STEM)
    assert [g.shape(f"stem.conv{i}.act") for i in (1, 2, 3)] == [(8, 16, 16), (8, 16, 16), (16, 16, 16)]
    assert g.shape("stem.pool") == (16, 8, 8)
    assert Counts(g).scope("stem").params == 8 * 27 + 8 * 72 + 16 * 72 + 2 * (8 + 8 + 16)
    m = compiled(STEM)
    x = torch.randn(1, 3, 32, 32)
    ref = F.max_pool2d(cbr(m.stem, "conv3", cbr(m.stem, "conv2", cbr(m.stem, "conv1", x))), 3, 2, ceil_mode=True)
    assert torch.allclose(run(m, x), ref, atol=1e-5)


# -- a shortcut template with its own kernel (3x3 projection) -------------------------------------------
PROJ = spec("""
blocks:
  b:
    params: {out: int, stride: 1, down_kernel: 3}
    residual:
      branch:
        - {name: c1, conv: {out: $out, kernel: 3, stride: $stride}}
        - {name: c2, conv: {out: $out, kernel: 1, act: none}}
      shortcut:
        when: auto
        layers:
          - {name: down, conv: {out: $out, kernel: "$down_kernel if $stride > 1 else 1", stride: $stride, act: none}}
      post: [relu]
stages:
  - {block: b, out: 16, repeat: 2}             # 8 -> 16 channels at stride 1: a 1x1 projection
  - {block: b, out: 32, stride: 2, repeat: 2}  # stride 2: 3x3, padding 1, stride 2
""", size=8)


def test_3x3_projection_shortcut():
    g = build(PROJ)
    a = g.node("stages.0.blocks.0.shortcut.down.conv")["attrs"]
    assert (a["kernel"], a["stride"], a["padding"]) == ((1, 1), (1, 1), (0, 0))
    a = g.node("stages.1.blocks.0.shortcut.down.conv")["attrs"]
    assert (a["kernel"], a["stride"], a["padding"]) == ((3, 3), (2, 2), (1, 1))
    assert g.shape("stages.1.blocks.0.shortcut.down.bn") == (32, 4, 4)
    for blk in ("stages.0.blocks.1", "stages.1.blocks.1"):                      # shapes agree: identity
        assert g.blocks[blk].shortcut_out == g.blocks[blk].input
    m = compiled(PROJ)
    x = torch.randn(1, 8, 8, 8)
    y = m.stages[0](x)
    u = m.stages[1].blocks[0]
    ref = F.relu(cbr(u, "shortcut.down", y, False) + cbr(u, "branch.c2", cbr(u, "branch.c1", y), False))
    with torch.no_grad():
        assert torch.allclose(u(y), ref, atol=1e-5)
