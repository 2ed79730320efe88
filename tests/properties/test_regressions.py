"""Shrunk specs of the bugs the properties found, kept as plain tests.

A test marked xfail(strict=True) names a pending request (/tmp/secompile-requests/props-N.md,
see secompile/testing/pending.py); when its fix lands the test passes, the strict xfail turns
into a failure, and the mark (and the name in PENDING) comes out.
"""
import pickle

import pytest
import torch

import secompile
from helpers import compiled, ir_shapes, trace_shapes

R = {"params": {"out": "int"},
     "residual": {"branch": [{"name": "c", "conv": {"out": "$out", "kernel": 3}}], "shortcut": "identity"}}


def two_blocks(rules):
    return {"name": "t", "input": {"channels": 4, "size": 8}, "blocks": {"r": R},
            "stages": [{"block": "r", "repeat": 2, "out": 4}], "se": rules}


def check(spec):
    g, model, x = compiled(spec)
    assert trace_shapes(model, x) == ir_shapes(g)
    pos = {p: i for i, p in enumerate(g.order)}
    assert all(pos[i] < pos[p] for p in g.order for i in g.inputs(p)), "Graph.order is not topological"
    return g


# props-1 (fixed in 134eb63): the auto shortcut took its stride as hi // ho
def test_auto_shortcut_odd_size():
    spec = {"name": "t", "input": {"channels": 3, "size": 7},
            "blocks": {"basic": {"params": {"out": "int", "stride": 1},
                                 "residual": {"branch": [{"conv": {"out": 8, "kernel": 3, "stride": "$stride"}}],
                                              "shortcut": "auto"}}},
            "stages": [{"block": "basic", "out": 8, "stride": 2}]}
    g = check(spec)
    assert g.node("stages.0.blocks.0.shortcut.0.conv")["attrs"]["stride"] == (2, 2)


def test_auto_shortcut_non_square_stride():
    spec = {"name": "t", "input": {"channels": 3, "size": [7, 8]},
            "stages": [{"layers": [{"residual": {"branch": [{"conv": {"out": 4, "stride": [1, 2]}}]}}]}]}
    g = check(spec)
    assert g.node("stages.0.0.shortcut.0.conv")["attrs"]["stride"] == (1, 2)


# props-2 (fixed in 5123070): two SE blocks on one tensor
def test_se_after_branch_output_and_standard():
    g = check(two_blocks([{"where": {"path": "stages.0.blocks.0.branch.c"}, "reduction": 2},
                          {"where": {"stages": "all"}, "reduction": 2}]))
    assert g.inputs("stages.0.blocks.0.se.pool") == ["stages.0.blocks.0.branch.c_se.scale"]


def test_se_after_last_layer_and_post():
    spec = {"name": "t", "input": {"channels": 4, "size": 8},
            "stages": [{"layers": [{"name": "c", "conv": {"out": 4}}]}],
            "se": [{"where": {"stages": "all"}, "position": "post", "reduction": 2},
                   {"where": {"path": "**.c"}, "reduction": 2}]}
    g = check(spec)
    assert g.inputs("stages.0.se_post.pool") == ["stages.0.c_se.scale"]


def test_se_post_then_identity_order():
    g = check(two_blocks([{"where": {"blocks": [0]}, "position": "post", "reduction": 2},
                          {"where": {"blocks": [1]}, "position": "identity", "reduction": 2}]))
    assert g.inputs("stages.0.blocks.1.se_identity.pool") == ["stages.0.blocks.0.se_post.scale"]


# props-3: layer names that are attributes of nn.Module
@pytest.mark.xfail(strict=True, reason="props-3: add_module refuses nn.Module attribute names")
@pytest.mark.parametrize("name", ["training", "forward", "to", "path", "type", "_fwd"])
def test_layer_named_like_a_module_attribute(name):
    spec = {"name": "t", "input": {"channels": 3, "size": 8},
            "stages": [{"layers": [{"name": name, "conv": {"out": 4}},
                                   {"name": "z", "residual": {"branch": [{"name": name, "bn": None}]}}]}]}
    check(spec)
    model = secompile.compile(spec, seed=0)
    model.train()
    model.eval()
    assert f"stages.0.{name}.conv.weight" in model.state_dict()
    again = pickle.loads(pickle.dumps(model))
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(again(x), model(x))
