"""Block-template families the generator instantiates, each with its shape rule.

Every family is a template written in the spec language (what goes under `blocks:`)
plus the Python the generator needs to use it validly: which parameters to draw for
an input shape, the output shape, the channels at each SE position, and its named
scopes. `basic` and `bottleneck` are verbatim copies of specs/blocks/resnet.yaml, so
`specs(include_dir=...)` can include that file instead.
"""
from __future__ import annotations

from math import gcd

from hypothesis import strategies as st

from .oracle import ceil_div

BASIC = {
    "description": "two 3x3 convs; projection shortcut when the shape changes",
    "params": {"out": "int", "stride": 1},
    "residual": {
        "branch": [{"name": "conv1", "conv": {"out": "$out", "kernel": 3, "stride": "$stride"}},
                   {"name": "conv2", "conv": {"out": "$out", "kernel": 3, "act": "none"}}],
        "shortcut": "auto",
        "post": ["relu"],
    },
}

BOTTLENECK = {
    "description": "1x1 (width) -> 3x3 (width, cardinality groups) -> 1x1 (out)",
    "params": {"out": "int", "width": "int", "stride": 1, "cardinality": 1, "stride_at": "conv1"},
    "residual": {
        "branch": [
            {"name": "conv1", "conv": {"out": "$width", "kernel": 1,
                                       "stride": "$stride if $stride_at == 'conv1' else 1"}},
            {"name": "conv2", "conv": {"out": "$width", "kernel": 3,
                                       "stride": "$stride if $stride_at == 'conv2' else 1",
                                       "groups": "$cardinality"}},
            {"name": "conv3", "conv": {"out": "$out", "kernel": 1, "act": "none"}},
        ],
        "shortcut": "auto",
        "post": ["relu"],
    },
}

MIXED = {
    "description": "Inception-style: four branches concatenated to $out channels",
    "params": {"out": "int", "stride": 1},
    "parallel": {
        "branches": {
            "b1x1": [{"conv": {"out": "$out // 4", "kernel": 1, "stride": "$stride"}}],
            "b3x3": [{"conv": {"out": "$out // 4", "kernel": 1}},
                     {"conv": {"out": "$out // 4", "kernel": 3, "stride": "$stride"}}],
            "b5x5": [{"conv": {"out": "$out // 4", "kernel": [1, 5]}},
                     {"conv": {"out": "$out // 4", "kernel": [5, 1], "stride": "$stride"}}],
            "bpool": [{"maxpool": {"kernel": 3, "stride": "$stride", "padding": 1}},
                      {"conv": {"out": "$out - 3 * ($out // 4)", "kernel": 1}}],
        },
        "merge": "concat",
    },
}

PREACT = {
    "description": "pre-activation residual with scaling and an always-on projection",
    "params": {"out": "int", "stride": 1, "scale": 1.0, "act": "relu"},
    "residual": {
        "branch": ["bn",
                   {"name": "conv1", "conv": {"out": "$out", "kernel": 3, "stride": "$stride",
                                              "norm": "none", "act": "$act"}},
                   {"name": "conv2", "conv": {"out": "$out", "kernel": 3, "bias": False,
                                              "act": "none"}}],
        "shortcut": {"when": "always",
                     "layers": [{"conv": {"out": "$out", "kernel": 1, "stride": "$stride",
                                          "norm": "none", "act": "none"}}]},
        "scale": "$scale",
    },
}

DENSE = {
    "description": "DenseNet layer: the input concatenated with $growth new channels",
    "params": {"growth": "int", "expand": 2},
    "residual": {
        "branch": ["bn", "relu",
                   {"name": "squeeze_", "conv": {"out": "$growth * $expand", "kernel": 1}},
                   {"name": "grow", "conv": {"out": "$growth", "kernel": 3, "act": "none"}}],
        "merge": "concat",
    },
}

SHUFFLE = {
    "description": "ShuffleNet-style unit: grouped 1x1, channel shuffle, depthwise 3x3, "
                   "grouped 1x1",
    "params": {"out": "int", "groups": 2, "stride": 1},
    "layers": [
        {"name": "pw1", "conv": {"out": "$out", "kernel": 1, "groups": "$groups"}},
        {"channel_shuffle": {"groups": "$groups"}},
        {"name": "dw", "conv": {"out": "$out", "kernel": 3, "stride": "$stride", "groups": "$out",
                                "act": "none"}},
        {"name": "pw2", "conv": {"out": "$out", "kernel": 1, "groups": "$groups"}},
    ],
}

NESTED = {
    "description": "two basic blocks as one template (template instances inside a template)",
    "params": {"out": "int", "stride": 1},
    "layers": [
        {"name": "a", "block": {"template": "basic", "out": "$out", "stride": "$stride"}},
        {"name": "b", "block": {"template": "basic", "out": "$out"}},
    ],
}


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class Family:
    """A template plus its model. Subclasses fill in draw/out/named/branch_c/short_c."""

    name: str
    template: dict
    kind: str
    needs: tuple = ()
    takes_stride = True

    def template_name(self) -> str:
        return self.name

    def defaults(self) -> dict:
        return {k: v for k, v in self.template["params"].items()
                if v not in ("int", "float", "str", "bool")}

    def effective(self, given: dict) -> dict:
        return {**self.defaults(), **given}

    def ok(self, shape, p) -> bool:
        return True

    def spatial(self, shape, p):
        s = p.get("stride", 1)
        return ceil_div(shape[1], s), ceil_div(shape[2], s)

    def out(self, shape, p):
        return (p["out"],) + self.spatial(shape, p)

    def branch_c(self, shape, p):
        return None

    def short_c(self, shape, p):
        return None

    def named(self, shape, p) -> dict:
        return {}

    def draw(self, g, shape, stride: int) -> dict | None:
        raise NotImplementedError


def _stride_param(g, stride: int) -> dict:
    if stride != 1 or g.draw(st.booleans()):
        return {"stride": stride}
    return {}


class Basic(Family):
    name, template, kind = "basic", BASIC, "residual"

    def draw(self, g, shape, stride):
        return {"out": g.channels(shape[0]), **_stride_param(g, stride)}

    def branch_c(self, shape, p):
        return p["out"]

    short_c = branch_c

    def named(self, shape, p):
        return {"branch.conv1": p["out"], "branch.conv2": p["out"]}


class Bottleneck(Family):
    name, template, kind = "bottleneck", BOTTLENECK, "residual"
    grouped = False

    def draw(self, g, shape, stride):
        width = g.channels(shape[0], multiple=4 if self.grouped else 1)
        p = {"out": g.channels(shape[0]), "width": width, **_stride_param(g, stride)}
        cards = [d for d in divisors(width) if d > 1] if self.grouped else divisors(width)
        card = g.draw(st.sampled_from(cards))
        if card != 1 or g.draw(st.booleans()):
            p["cardinality"] = card
        at = g.draw(st.sampled_from(["conv2", "conv1"] if self.grouped else ["conv1", "conv2"]))
        if at != "conv1" or g.draw(st.booleans()):
            p["stride_at"] = at
        return p

    def ok(self, shape, p):
        return p["width"] % p["cardinality"] == 0

    def branch_c(self, shape, p):
        return p["out"]

    short_c = branch_c

    def named(self, shape, p):
        return {"branch.conv1": p["width"], "branch.conv2": p["width"], "branch.conv3": p["out"]}


class ResNeXt(Bottleneck):
    """The bottleneck template with cardinality > 1 (ResNeXt), the stride on conv2."""
    grouped = True

    def template_name(self) -> str:
        return "bottleneck"


class Mixed(Family):
    name, template, kind = "mixed", MIXED, "parallel"

    def draw(self, g, shape, stride):
        return {"out": g.channels(shape[0], minimum=4), **_stride_param(g, stride)}

    def ok(self, shape, p):
        return p["out"] >= 4

    def named(self, shape, p):
        q = p["out"] // 4
        return {"b1x1": q, "b3x3": q, "b5x5": q, "bpool": p["out"] - 3 * q}


class PreAct(Family):
    name, template, kind = "preact", PREACT, "residual"

    def draw(self, g, shape, stride):
        p = {"out": g.channels(shape[0]), **_stride_param(g, stride)}
        if g.draw(st.booleans()):
            p["scale"] = g.draw(st.sampled_from([0.5, 1, 0.2, 2.0]))
        if g.draw(st.booleans()):
            p["act"] = g.draw(st.sampled_from(["relu", "silu", "hard_swish", "relu6", "tanh",
                                               "none"]))
        return p

    def branch_c(self, shape, p):
        return p["out"]

    short_c = branch_c

    def named(self, shape, p):
        return {"branch.conv1": p["out"], "branch.conv2": p["out"]}


class Dense(Family):
    name, template, kind = "dense", DENSE, "residual"
    takes_stride = False

    def draw(self, g, shape, stride):
        if stride != 1:
            return None
        p = {"growth": g.draw(st.sampled_from([4, 2, 8, 3]))}
        if g.draw(st.booleans()):
            p["expand"] = g.draw(st.sampled_from([1, 2, 4]))
        return p

    def spatial(self, shape, p):
        return shape[1], shape[2]

    def out(self, shape, p):
        return (shape[0] + p["growth"],) + self.spatial(shape, p)

    def branch_c(self, shape, p):
        return p["growth"]

    def short_c(self, shape, p):
        return shape[0]

    def named(self, shape, p):
        return {"branch.squeeze_": p["growth"] * p["expand"], "branch.grow": p["growth"]}


class Shuffle(Family):
    name, template, kind = "shuffle", SHUFFLE, "layers"

    def draw(self, g, shape, stride):
        out = g.channels(shape[0])
        common = divisors(gcd(shape[0], out))
        groups = g.draw(st.sampled_from(sorted(common, key=lambda d: (d == 1, d))))
        p = {"out": out, **_stride_param(g, stride)}
        if groups != 2 or g.draw(st.booleans()):
            p["groups"] = groups
        return p

    def ok(self, shape, p):
        return shape[0] % p["groups"] == 0 and p["out"] % p["groups"] == 0

    def named(self, shape, p):
        return {"pw1": p["out"], "dw": p["out"], "pw2": p["out"]}


class Nested(Family):
    name, template, kind = "nested", NESTED, "layers"
    needs = ("basic",)

    def draw(self, g, shape, stride):
        return {"out": g.channels(shape[0]), **_stride_param(g, stride)}

    def named(self, shape, p):
        o = p["out"]
        return {"a": o, "a.branch.conv1": o, "a.branch.conv2": o,
                "b": o, "b.branch.conv1": o, "b.branch.conv2": o}


FAMILIES: dict[str, Family] = {f.name: f for f in (Basic(), Bottleneck(), Mixed(), PreAct(),
                                                   Dense(), Shuffle(), Nested())}
RESNEXT = ResNeXt()   # drawn as kind 'resnext', emitted as template 'bottleneck'
RESNET_FILE_TEMPLATES = ("basic", "bottleneck")   # the ones specs/blocks/resnet.yaml defines
