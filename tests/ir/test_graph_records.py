"""Graph's rewriting methods keep the records true (scopes, attention modules, composites, the
index of scope names), and the verifier holds every pass to it."""
import dataclasses

import pytest

import secompile
from secompile.ir.verify import IRError, check
from secompile.passes import fuse_scale_add
from secompile.passes.truncate import truncate

NET = """
name: rec
input: {channels: 4, size: 8}
blocks:
  res:
    params: {out: int}
    residual:
      branch:
        - {name: conv1, conv: {out: $out, kernel: 3}}
        - {name: conv2, conv: {out: $out, kernel: 3, act: none}}
stem: [{name: conv1, conv: {out: 8, kernel: 3}}]
stages:
  - {block: res, repeat: 2, out: 8}
  - name: tail
    layers:
      - {name: a, conv: {out: 8, kernel: 3, stride: 2}}
      - {name: b, conv: {out: 8, kernel: 3}}
head: [{name: pool, global_avgpool: {}}, {name: fc, linear: {out: 3}}]
se: [{where: {stages: [0]}, reduction: 4}]
"""


@pytest.fixture
def g():
    return secompile.build_ir(NET)


def test_fusion_moves_every_record_of_the_multiply_to_the_scale_add(g):
    f = fuse_scale_add(g)
    for b in ("stages.0.blocks.0", "stages.0.blocks.1"):
        assert g.attention[f"{b}.se"].output == f"{b}.se.scale"   # the input graph is left alone
        assert f.attention[f"{b}.se"].output == f"{b}.add"
        assert f.scopes[f"{b}.se"].exit == f"{b}.add"
        assert f.blocks[b].branch_out == f"{b}.branch.conv2.bn"   # SE'd in the block: its own
        assert f.blocks[b].merge == f"{b}.add"
        assert f.op(f"{b}.add") == "scale_add" and f"{b}.se.scale" not in f
    check(f)


def test_remove_refuses_a_node_a_record_names(g):
    g = g.copy()
    g.rewire("stages.0.blocks.0.se.scale", "stages.0.blocks.0.branch.conv2.bn",
             ["stages.0.blocks.0.add"])
    with pytest.raises(ValueError, match=r"cannot remove stages\.0\.blocks\.0\.se\.scale: "
                       r"stages\.0\.blocks\.0\.se\.exit, stages\.0\.blocks\.0\.se\.output name it"):
        g.remove("stages.0.blocks.0.se.scale")


def test_the_verifier_flags_an_attention_output_that_is_not_its_result(g):
    bad = g.copy()
    s = "stages.0.blocks.0.se"
    bad.attention[s] = dataclasses.replace(bad.attention[s], output="stages.0.blocks.1.add")
    with pytest.raises(IRError) as e:
        check(bad)
    assert e.value.findings == [f"attention module {s}: its output stages.0.blocks.1.add lies "
                                "outside it"]
    gone = g.copy()
    gone.attention[s] = dataclasses.replace(gone.attention[s], output=f"{s}.mul")
    with pytest.raises(IRError) as e:
        check(gone)
    assert e.value.findings == [f"attention module {s}: input 'stages.0.blocks.0.branch.conv2.bn' "
                                f"or output '{s}.mul' is not a node"]


def test_prune_drops_what_is_cut_and_ends_a_cut_stage_at_its_last_node(g):
    t = truncate(g, "stages.1.a.act")
    assert t.output == "stages.1.a.act" and "stages.1.b.conv" not in t and "head.fc" not in t
    assert t.units == ["stem", "stages.0.blocks.0", "stages.0.blocks.1", "stages.1"]
    assert t.blocks["stages.1"].output == "stages.1.a.act"    # the layer stage ends earlier
    assert [st.blocks for st in t.stages] == [["stages.0.blocks.0", "stages.0.blocks.1"],
                                              ["stages.1"]]
    assert sorted(t.attention) == ["stages.0.blocks.0.se", "stages.0.blocks.1.se"]
    assert "head" not in t._scopes and "stages.1.b" not in t._scopes
    assert t._scopes["stages.1"] == 3    # a.conv, a.bn, a.act
    check(t)
    t.add("head", "flatten", {}, ["stages.1.a.act"])   # a scope with no node left is free
    assert t.shape("head") == (8 * 4 * 4,)


def test_prune_refuses_a_cut_that_keeps_a_node_without_its_input(g):
    with pytest.raises(ValueError, match="cannot keep head.fc without its input head.pool"):
        g.copy().prune({"input", "head.fc"}, output="head.fc")
    with pytest.raises(ValueError, match="the output head.fc is not kept"):
        g.copy().prune({"input"})


def test_the_verifier_flags_a_stale_scope_index(g):
    bad = g.copy()
    bad._scopes["gone"] = 1
    with pytest.raises(IRError, match=r"stale \['gone'\], missing \[\], miscounted \[\]"):
        check(bad)


def test_insert_between_moves_the_input_of_a_module_reading_the_tensor(g):
    """A module spliced in under another that read the same tensor: the outer now reads it."""
    spec = NET.replace("se: [{where: {stages: [0]}, reduction: 4}]",
                       "se: [{where: {stages: [0]}, reduction: 4},\n"
                       "     {where: {path: 'stages.0.blocks.0.branch.conv2.bn'}, reduction: 2}]")
    h = secompile.build_ir(spec)
    inner = "stages.0.blocks.0.branch.conv2.bn_se"
    assert h.attention[inner].input == "stages.0.blocks.0.branch.conv2.bn"
    assert h.attention["stages.0.blocks.0.se"].input == f"{inner}.scale"
    assert h.inputs("stages.0.blocks.0.se.pool") == [f"{inner}.scale"]
    check(h)
    f = fuse_scale_add(h)   # the outer module's scale folds into the add; the inner one stays
    assert f.attention["stages.0.blocks.0.se"].output == "stages.0.blocks.0.add"
    assert f.attention[inner].output == f"{inner}.scale"
    check(f)


def test_fusing_an_after_module_renames_the_branch_out_too():
    spec = NET.replace("se: [{where: {stages: [0]}, reduction: 4}]",
                       "se: [{where: {path: 'stages.0.blocks.0.branch.conv2.bn'}, reduction: 2}]")
    h = secompile.build_ir(spec)
    s = "stages.0.blocks.0.branch.conv2.bn_se"
    assert h.blocks["stages.0.blocks.0"].branch_out == f"{s}.scale"
    f = fuse_scale_add(h)
    assert f.blocks["stages.0.blocks.0"].branch_out == "stages.0.blocks.0.add"
    assert (f.attention[s].output, f.scopes[s].exit) == ("stages.0.blocks.0.add",) * 2
    check(f)
