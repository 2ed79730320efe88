"""Shrunk specs of the bugs the properties found, kept as plain tests.

While a fix is pending its test is marked xfail(strict=True) naming the request
(/tmp/secompile-requests/props-N.md); when the fix lands the strict xfail turns into a failure,
and the mark comes out. All found so far are fixed.
"""
import pickle

import pytest
import torch
from helpers import compiled, ir_shapes, trace_shapes

import secompile

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


# props-3 (fixed in dd1f2f7): layer names that are attributes of nn.Module
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


# props-4 (fixed in dd1f2f7): a layer named like the SE scope that a rule creates
@pytest.mark.parametrize("layers, rule, scope", [
    ([{"name": "se_post", "conv": {"out": 4}}], {"where": {"stages": "all"}, "position": "post"}, "stages.0.se_post"),
    ([{"name": "se_pre", "bn": None}], {"where": {"stages": "all"}, "position": "pre"}, "stages.0.se_pre"),
    ([{"name": "c", "conv": {"out": 4}}, {"name": "c_se", "conv": {"out": 4}}], {"where": {"path": "**.c"}},
     "stages.0.c_se"),
    ([{"name": "p", "parallel": {"branches": {"x": [{"conv": {"out": 4}}], "x_se": ["relu"]}}}],
     {"where": {"path": "**.x"}}, "stages.0.p.x_se"),
])
def test_layer_named_like_an_se_scope(layers, rule, scope):
    spec = {"name": "t", "input": {"channels": 4, "size": 8}, "stages": [{"layers": layers}],
            "se": [{**rule, "reduction": 2}]}
    with pytest.raises(secompile.SpecError) as err:
        secompile.compile(spec)
    assert any(p.path == "se[0]" and scope in p.message for p in err.value.problems)


# props-5 (fixed in dd1f2f7): empty branches
X_PLUS_X = {"parallel": {"branches": [[], []], "merge": "add"}}


@pytest.mark.parametrize("case", ["after", "post"])
def test_add_of_the_same_se_scale_twice(case):
    if case == "after":
        spec = {"name": "t", "input": {"channels": 4, "size": 8},
                "stages": [{"layers": [{"name": "c", "conv": {"out": 4}}, X_PLUS_X]}],
                "se": [{"where": {"path": "**.c"}, "reduction": 2}]}
    else:
        spec = {"name": "t", "input": {"channels": 4, "size": 8},
                "blocks": {"p": X_PLUS_X, "c": {"layers": [{"conv": {"out": 4}}]}},
                "stages": [{"block": "c"}, {"block": "p"}],
                "se": [{"where": {"stages": [0]}, "position": "post", "reduction": 2}]}
    g = check(spec)
    model = secompile.compile(spec, seed=0).eval()
    x = torch.randn(1, *g.input_shape)
    feats = model.stages[0](model.stem(x))
    assert torch.allclose(model(x), feats + feats if case == "post" else model(x))


def test_empty_residual_branch_is_refused():
    spec = {"name": "t", "input": {"channels": 4, "size": 8}, "blocks": {"r": {"residual": {"branch": []}}},
            "stages": [{"block": "r"}], "se": [{"where": {"stages": "all"}, "reduction": 2}]}
    with pytest.raises(secompile.SpecError) as err:
        secompile.build_ir(spec)
    assert any(p.path == "blocks.r.residual.branch" for p in err.value.problems)


@pytest.mark.parametrize("name", ["", "a.b"])
def test_branch_names_are_path_segments(name):
    spec = {"name": "t", "input": {"channels": 4, "size": 8},
            "stages": [{"layers": [{"parallel": {"branches": {name: [{"conv": {"out": 4}}], "e": ["relu"]}}}]}]}
    with pytest.raises(secompile.SpecError) as err:
        secompile.compile(spec)
    assert any(p.path.startswith("stages[0].layers[0].parallel.branches") for p in err.value.problems)


# props-6 (fixed in fabaf42): an in-place ReLU after an op that returns its input or a view of it
@pytest.mark.parametrize("first", ["identity", {"dropout": {}}, {"channel_shuffle": {"groups": 3}},
                                   {"channel_shuffle": {"groups": 1}}])
@pytest.mark.parametrize("at_unit_input", [False, True])
def test_relu_after_an_aliasing_op(first, at_unit_input):
    residual = {"residual": {"branch": [first, "relu", {"conv": {"out": 3, "kernel": 3}}], "shortcut": "identity"}}
    layers = [residual] if at_unit_input else [{"conv": {"out": 3, "act": "none"}}, residual]
    spec = {"name": "t", "input": {"channels": 3, "size": [6, 6]}, "stages": [{"layers": layers}]}
    model = secompile.compile(spec, seed=0).eval()
    x = torch.randn(2, 3, 6, 6)
    x0 = x.clone()
    with torch.no_grad():
        y = model(x)
        assert torch.equal(x, x0), "the caller's input was overwritten"
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        assert torch.equal(y, model(x0))


# props-7 (found by test_v2.py): an SE rule with `divisor` gets make_divisible(C / reduction,
# divisor) >= divisor channels, but insert_se refused C // reduction < 1 (the v1 check).
def test_se_divisor_rule_on_fewer_channels_than_the_reduction():
    spec = {"name": "t", "input": {"channels": 2, "size": 4},
            "stages": [{"layers": [{"name": "c", "conv": {"out": 2}}]}],
            "se": [{"where": {"stages": "all"}, "position": "post", "reduction": 4, "divisor": 8}]}
    g = check(spec)
    assert g.shape("stages.0.se_post.fc1") == (8, 1, 1)
