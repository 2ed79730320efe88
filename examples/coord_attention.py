"""Coordinate attention (Hou et al., CVPR 2021) as a secompile plug-in op: docs/extending.md.

    python examples/coord_attention.py            # registers the op, counts, compiles, exports

The op pools x along W (giving C x H) and along H (C x W), runs both through one shared 1x1 conv
+ BN + activation, splits the result back, and turns each part into a sigmoid gate with its own
1x1 conv: out = x * a_h * a_w. Nothing in the package changes: the program registers the op and
its specs use `coord_attn` as a layer.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import secompile
from secompile import Attr, Buffer, OpError

ACTS = {"hard_swish": nn.Hardswish, "relu": nn.ReLU, "silu": nn.SiLU}


def reduced(a: dict, c: int) -> int:
    """The shared conv's width: max(min_channels, C // reduction), as the paper's code."""
    return max(a["min_channels"], c // a["reduction"])


class CoordAttention(nn.Module):
    """The paper's CoordAtt (in = out channels); the state_dict names are the ones declared."""

    def __init__(self, channels: int, mip: int, act: str):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = ACTS[act]()
        self.conv_h = nn.Conv2d(mip, channels, 1)
        self.conv_w = nn.Conv2d(mip, channels, 1)

    def forward(self, x):
        h, w = x.shape[2:]
        x_h = x.mean(3, keepdim=True)                          # (N, C, H, 1)
        x_w = x.mean(2, keepdim=True).transpose(2, 3)          # (N, C, W, 1)
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], 2))))
        y_h, y_w = y.split([h, w], 2)
        a_h = self.conv_h(y_h).sigmoid()                       # (N, C, H, 1)
        a_w = self.conv_w(y_w.transpose(2, 3)).sigmoid()       # (N, C, 1, W)
        return x * a_w * a_h


def shape(a: dict, ins: list) -> tuple:
    if len(ins[0]) != 3:
        raise OpError(f"coord_attn needs a feature map (C, H, W), got shape {tuple(ins[0])}")
    return tuple(ins[0])


def weights(a: dict, ins: list) -> dict:
    """state_dict name -> shape, in the module's order; BN statistics are buffers."""
    c, m = ins[0][0], reduced(a, ins[0][0])
    return {"conv1.weight": (m, c, 1, 1), "conv1.bias": (m,),
            "bn1.weight": (m,), "bn1.bias": (m,),
            "bn1.running_mean": Buffer((m,)), "bn1.running_var": Buffer((m,)),
            "bn1.num_batches_tracked": Buffer((), inference=False),
            "conv_h.weight": (c, m, 1, 1), "conv_h.bias": (c,),
            "conv_w.weight": (c, m, 1, 1), "conv_w.bias": (c,)}


def macs(a: dict, ins: list, out: tuple) -> int:
    """Two average pools (one add per element read each), the shared conv over H + W positions,
    the two gate convs (H and W positions), two multiplies per element."""
    c, h, w = ins[0]
    m = reduced(a, c)
    return 2 * c * h * w + m * c * (h + w) + c * m * (h + w) + 2 * c * h * w


def to_onnx(e) -> str:
    """ONNX nodes for one coord_attn node (e: secompile's OnnxEmit)."""
    (c, h, w), m = e.in_shapes[0], reduced(e.attrs, e.in_shapes[0][0])
    x = e.inputs[0]

    def mean(axis, role, shape):   # ReduceMean takes its axes as an input from opset 18
        if e.opset >= 18:
            return e.node("ReduceMean", [x, e.const(f"{role}_axes", np.array([axis]))], role,
                          shape)
        return e.node("ReduceMean", [x], role, shape, axes=[axis])

    def cut(y, role, lo, hi):
        bounds = [e.const(f"{role}_{k}", np.array([v])) for k, v in
                  (("starts", lo), ("ends", hi), ("axes", 2))]
        return e.node("Slice", [y] + bounds, role, (m, hi - lo, 1))

    x_h = mean(3, "pool_h", (c, h, 1))
    x_w = e.node("Transpose", [mean(2, "pool_w", (c, 1, w))], "pool_w_t", (c, w, 1),
                 perm=[0, 1, 3, 2])
    y = e.node("Concat", [x_h, x_w], "cat", (c, h + w, 1), axis=2)
    y = e.node("Conv", [y, e.weight("conv1.weight"), e.weight("conv1.bias")], "conv1",
               (m, h + w, 1))
    y = e.node("BatchNormalization", [y] + [e.weight(f"bn1.{k}") for k in
                                            ("weight", "bias", "running_mean", "running_var")],
               "bn1", (m, h + w, 1), epsilon=1e-5)
    act = e.attrs["act"]
    if act == "silu":
        y = e.node("Mul", [y, e.node("Sigmoid", [y], "act_gate", (m, h + w, 1))], "act",
                   (m, h + w, 1))
    else:
        y = e.node({"hard_swish": "HardSwish", "relu": "Relu"}[act], [y], "act", (m, h + w, 1))
    y_w = e.node("Transpose", [cut(y, "split_w", h, h + w)], "split_w_t", (m, 1, w),
                 perm=[0, 1, 3, 2])
    gates = []
    for part, yp, shp in (("h", cut(y, "split_h", 0, h), (c, h, 1)), ("w", y_w, (c, 1, w))):
        z = e.node("Conv", [yp, e.weight(f"conv_{part}.weight"), e.weight(f"conv_{part}.bias")],
                   f"conv_{part}", shp)
        gates.append(e.node("Sigmoid", [z], f"gate_{part}", shp))
    y = e.node("Mul", [x, gates[1]], "scale_w", (c, h, w))
    return e.node("Mul", [y, gates[0]])            # the node's value: role None


def register(onnx: bool = True):
    """Register `coord_attn` for this program (a context manager: `with register(): ...`)."""
    return secompile.register_op(
        "coord_attn",
        attrs={"reduction": Attr(int, 32, minimum=1), "min_channels": Attr(int, 8, minimum=1),
               "act": Attr(str, "hard_swish", choices=tuple(ACTS))},
        shape=shape, weights=weights, macs=macs,
        torch=lambda a, ins: CoordAttention(ins[0][0], reduced(a, ins[0][0]), a["act"]),
        onnx=to_onnx if onnx else None,
        graphviz=("se", lambda a, ins: f"coordinate attention, r={a['reduction']}"),
        fresh=True)


SPEC = {   # a small network using it: the op is a layer like any other
    "name": "coord_net", "input": {"channels": 3, "size": 32},
    "stem": [{"conv": {"out": 16, "kernel": 3, "stride": 2}}],
    "stages": [{"layers": [
        {"residual": {"branch": [{"conv": {"out": 16, "kernel": 3}},
                                 {"conv": {"out": 16, "kernel": 3, "act": "none"}},
                                 {"name": "ca", "coord_attn": {"reduction": 4}}],
                      "post": ["relu"]}}]}],
    "head": ["global_avgpool", {"linear": {"out": 10}}],
}


def check_generated_specs(max_examples: int = 10) -> None:
    """A property test: random valid specs that use coord_attn compile, and every node's shape
    and the parameter count agree between the IR and torch."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from secompile.testing import check_shapes, specs

    @settings(max_examples=max_examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def check(data):
        with register():
            spec = data.draw(specs(ops=["coord_attn"], max_stages=2, max_width=16))
            check_shapes(spec, modes=("eval",))
            model = secompile.compile(spec)
            report = secompile.count(spec)
            assert report["total"]["params"] == sum(p.numel() for p in model.parameters())

    check()


if __name__ == "__main__":
    with register():
        report = secompile.count(SPEC)
        print(f"params {report['total']['params']:,}  MACs {report['total']['macs']:,}")
        model = secompile.compile(SPEC).eval()
        print("output", tuple(model(torch.randn(2, 3, 32, 32)).shape))
        secompile.to_onnx(SPEC, model, "coord_net.onnx")
        print("wrote coord_net.onnx")
    check_generated_specs()
    print("property test passed")
