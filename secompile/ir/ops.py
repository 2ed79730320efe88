"""IR op types: for each op, its output shape, parameter count and multiply-adds.

Shapes exclude the batch dimension: (C, H, W) for feature maps, (F,) for vectors.
Counting rules (documented in docs/counting.md):

- conv2d:   MACs = Cout * (Cin / groups) * kh * kw * Hout * Wout; params = weights (+ Cout bias)
- linear:   MACs = Fin * Fout; params = Fin * Fout (+ Fout bias)
- avg pool: one add per input element read (kh * kw per output element; global: C * H * W)
- mul:      SE scale, one multiply per element (C * H * W)
- add:      a plain add is 0; a scaled input (residual scaling) is one multiply-add per element
- batchnorm, activations, max pooling, concat, shuffle, flatten, dropout, identity: 0 MACs
  (BatchNorm folds into the convolution at inference; max and activations are not
  multiply-adds). BatchNorm has 2 * C parameters (affine); running statistics are buffers.
Bias adds are not counted, as in the paper and in torch.utils.flop_counter.
"""
from __future__ import annotations

ACTIVATIONS = ("relu", "relu6", "sigmoid", "hard_sigmoid", "hard_swish", "silu", "tanh")


class OpError(ValueError):
    """A semantic problem with an op's inputs or attributes (reported with the spec location)."""


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def _spatial(shape, op):
    if len(shape) != 3:
        raise OpError(f"{op} needs a feature map (C, H, W), got shape {tuple(shape)}")
    return shape


def conv_out(size, kernel, stride, pad, dilation=1, ceil=False) -> int:
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if ceil:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + pad:  # last window must start inside the input (Caffe/PyTorch rule)
            out -= 1
        return out
    return span // stride + 1


def shape_conv2d(a, ins):
    c, h, w = _spatial(ins[0], "conv")
    if c % a["groups"] or a["out"] % a["groups"]:
        raise OpError(f"groups={a['groups']} must divide input channels {c} and output channels {a['out']}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    return (a["out"], conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw))


def params_conv2d(a, ins):
    c = ins[0][0]
    return a["out"] * (c // a["groups"]) * _prod(a["kernel"]) + (a["out"] if a["bias"] else 0)


def macs_conv2d(a, ins, out):
    return a["out"] * (ins[0][0] // a["groups"]) * _prod(a["kernel"]) * out[1] * out[2]


def shape_pool(a, ins):
    c, h, w = _spatial(ins[0], "pooling")
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    if ph * 2 > kh or pw * 2 > kw:
        raise OpError(f"pool padding {a['padding']} must be at most half the kernel {a['kernel']}")
    return (c, conv_out(h, kh, sh, ph, 1, a["ceil_mode"]), conv_out(w, kw, sw, pw, 1, a["ceil_mode"]))


def shape_global_pool(a, ins):
    c = _spatial(ins[0], "global pooling")[0]
    return (c, 1, 1) if a["keepdim"] else (c,)


def shape_linear(a, ins):
    if len(ins[0]) != 1:
        raise OpError(f"linear needs a vector (F,), got shape {tuple(ins[0])}: add flatten or a global pool")
    return (a["out"],)


def shape_same(a, ins):
    return tuple(ins[0])


def shape_add(a, ins):
    first = tuple(ins[0])
    for s in ins[1:]:
        if tuple(s) != first:
            raise OpError(f"add needs equal shapes, got {first} and {tuple(s)}")
    return first


def shape_concat(a, ins):
    for s in ins:
        _spatial(s, "concat")
    if len({tuple(s[1:]) for s in ins}) != 1:
        raise OpError("concat needs equal spatial sizes, got " + ", ".join(f"{s[1]}x{s[2]}" for s in ins))
    return (sum(s[0] for s in ins),) + tuple(ins[0][1:])


def shape_mul(a, ins):
    u, s = ins
    if len(u) != 3 or tuple(s) != (u[0], 1, 1):
        raise OpError(f"channel scale needs (C, H, W) and (C, 1, 1), got {tuple(u)} and {tuple(s)}")
    return tuple(u)


def shape_shuffle(a, ins):
    c = _spatial(ins[0], "channel_shuffle")[0]
    if c % a["groups"]:
        raise OpError(f"channel_shuffle groups={a['groups']} must divide channels {c}")
    return tuple(ins[0])


def shape_flatten(a, ins):
    return (_prod(ins[0]),)


def _zero(a, ins, out=None):
    return 0


def _numel(shape) -> int:
    return _prod(shape)


class OpType:
    def __init__(self, shape, params=_zero, macs=_zero):
        self.shape, self.params, self.macs = shape, params, macs


OPS: dict[str, OpType] = {
    "input": OpType(lambda a, ins: tuple(a["shape"])),
    "conv2d": OpType(shape_conv2d, params_conv2d, macs_conv2d),
    "batchnorm": OpType(shape_same, lambda a, ins: 2 * ins[0][0]),
    "act": OpType(shape_same),
    "maxpool2d": OpType(shape_pool),
    "avgpool2d": OpType(shape_pool, macs=lambda a, ins, out: _prod(a["kernel"]) * _numel(out)),
    "global_pool": OpType(shape_global_pool,
                          macs=lambda a, ins, out: _numel(ins[0]) if a["mode"] == "avg" else 0),
    "flatten": OpType(shape_flatten),
    "linear": OpType(shape_linear,
                     lambda a, ins: ins[0][0] * a["out"] + (a["out"] if a["bias"] else 0),
                     lambda a, ins, out: ins[0][0] * a["out"]),
    "dropout": OpType(shape_same),
    "identity": OpType(shape_same),
    "add": OpType(shape_add, macs=lambda a, ins, out: _numel(out) * sum(
        1 for s in a.get("scales", ()) if s != 1.0)),
    "concat": OpType(shape_concat),
    "mul": OpType(shape_mul, macs=lambda a, ins, out: _numel(out)),
    "channel_shuffle": OpType(shape_shuffle),
}


def infer(op: str, attrs: dict, in_shapes: list) -> tuple:
    """Output shape of `op`; raises OpError for inconsistent inputs or sizes below 1."""
    out = tuple(OPS[op].shape(attrs, in_shapes))
    if any(d < 1 for d in out):
        raise OpError(f"output shape {out} has a size below 1 (input {tuple(in_shapes[0]) if in_shapes else ()})")
    return out


def params(op: str, attrs: dict, in_shapes: list) -> int:
    return OPS[op].params(attrs, in_shapes)


def macs(op: str, attrs: dict, in_shapes: list, out_shape: tuple) -> int:
    return OPS[op].macs(attrs, in_shapes, out_shape)


def same_padding(kernel: int, dilation: int = 1) -> int:
    return dilation * (kernel - 1) // 2


__all__ = ["OPS", "OpError", "infer", "params", "macs", "conv_out", "same_padding", "ACTIVATIONS"]
