"""The registry of IR ops: every fact about an op that more than one module needs.

Over 400 lines on purpose: one entry per op, each op's facts (attributes, weights, shape,
cost) side by side in one table, as the rule "an op's facts live in one registry" asks.

Each `OpDef` declares the op's attributes, its weight tensors (state_dict suffix and shape
as functions of the attributes and input shapes), its shape rule, its multiply-add rule and
whether its output is always a newly allocated tensor. Parameter counts are derived from the
declared weights, so the count, the torch module and the ONNX initializers cannot disagree.
Backends keep one emitter per op in a table keyed by these names (tests/ir/test_registry.py
fails when one is missing); the spec schema's enums are generated from here
(`python -m secompile.ir.schema_gen`).

Shapes exclude the batch dimension: (C, H, W) for feature maps, (F,) for vectors.
Counting rules (docs/counting.md):

- conv2d:   MACs = Cout * (Cin / groups) * kh * kw * Hout * Wout; params = weights (+ Cout bias)
- linear:   MACs = Fin * Fout; params = Fin * Fout (+ Fout bias)
- avg pool: one add per input element read (kh * kw per output element; global: C * H * W)
- channel_conv: ECA's Conv1d across channels, C_out * k (counted with conv + fc, as timm's Conv1d)
- mul:      SE scale (C, 1, 1) or spatial scale (1, H, W), one multiply per element (C * H * W)
- dual_pool, channel_pool: the average half, one add per element read (C * H * W); max is free
- spatial_sum: one add per element read (C * h * w)
- select:   Selective Kernel merge, one multiply-add per path and output element (P * C * H * W)
- channel_slice, drop_path: 0 (a view; per-sample stochastic depth is training-only)
- add:      a plain add is 0; a scaled input (residual scaling) is one multiply-add per element;
            inputs broadcast ((C, 1, 1) or (1, H, W) against (C, H, W): GC's add fusion)
- partial_add: ReXNet's partial residual, cat(branch[:Cs] + shortcut, branch[Cs:]): 0, as add
- softmax, layernorm: 0 (normalisations, like BatchNorm); layernorm has 2 * C parameters
- attn_pool: GC's context, the softmax-weighted sum of positions, one multiply-add per element
  of x (C * H * W; a matmul in timm, not a conv or fc)
- layer_scale: a learned per-channel multiply, one per element (C * H * W), C parameters
- split_sum: split attention's sum of the radix parts, one add per element read (P * C * H * W)
- split_select: split attention's weighted sum of the parts, P * C * H * W, as select
- scale_add: the fused SE scale + add (passes/fuse.py): the multiply of `mul`, C * H * W
- batchnorm, activations, max pooling, concat, shuffle, flatten, dropout, identity: 0 MACs
  (BatchNorm folds into the convolution at inference; max and activations are not
  multiply-adds). BatchNorm has 2 * C parameters (affine); running statistics are buffers.
Bias adds are not counted, as in the paper and in torch.utils.flop_counter.

Over 400 lines on purpose: the registry is the one place each op's facts live (one entry
per op); splitting it would scatter them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

ACTIVATIONS = ("relu", "relu6", "sigmoid", "hard_sigmoid", "hard_swish", "silu", "tanh", "gelu")
SOFTMAX_AXES = ("channels", "positions")   # softmax over C, or over the H * W positions
POOL_MODES = ("avg", "max")
REQUIRED = object()   # an attribute without a default


class OpError(ValueError):
    """A semantic problem with an op's inputs or attributes (reported with the spec location)."""


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def _always(a) -> bool:
    return True


@dataclass(frozen=True)
class Weight:
    """One tensor an op owns, named `<node path>.<name>` in the state_dict."""

    name: str
    shape: Callable[[dict, list], tuple]        # (attrs, input shapes) -> shape
    buffer: bool = False                        # state, not a parameter (BN running statistics)
    inference: bool = True                      # needed at inference (not a training counter)
    present: Callable[[dict], bool] = _always   # e.g. a bias only when attrs["bias"]


@dataclass(frozen=True)
class OpDef:
    name: str
    shape: Callable[[dict, list], tuple]        # (attrs, input shapes) -> output shape
    attrs: dict = field(default_factory=dict)   # attribute name -> default (or REQUIRED)
    weights: tuple = ()                         # Weight declarations, in state_dict order
    macs: Callable = lambda a, ins, out: 0      # (attrs, input shapes, output shape) -> int
    fresh: bool = False                         # output always new, never a view of an input

    def tensors(self, a: dict, ins: list, inference: bool = False) -> dict[str, tuple]:
        """name -> shape of the tensors a node owns (`inference`: only those a runtime needs)."""
        if not self.weights:   # most ops: asked for every node verified
            return {}
        return {w.name: tuple(w.shape(a, ins)) for w in self.weights
                if w.present(a) and (w.inference or not inference)}

    def params(self, a: dict, ins: list) -> int:
        if not self.weights:   # most ops: asked for every node counted
            return 0
        return sum(_prod(w.shape(a, ins)) for w in self.weights if not w.buffer and w.present(a))


# -- shape rules ---------------------------------------------------------------------------
def _spatial(shape, op):
    if len(shape) != 3:
        raise OpError(f"{op} needs a feature map (C, H, W), got shape {tuple(shape)}")
    return shape


def conv_out(size, kernel, stride, pad, dilation=1, ceil=False) -> int:
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if ceil:
        out = -(-span // stride) + 1
        # the last window must start inside the input (Caffe/PyTorch rule)
        if (out - 1) * stride >= size + pad:
            out -= 1
        return out
    return span // stride + 1


def shape_conv2d(a, ins):
    c, h, w = _spatial(ins[0], "conv")
    if c % a["groups"] or a["out"] % a["groups"]:
        raise OpError(f"groups={a['groups']} must divide input channels {c} "
                      f"and output channels {a['out']}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    return (a["out"], conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw))


def shape_pool(a, ins):
    c, h, w = _spatial(ins[0], "pooling")
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    if ph * 2 > kh or pw * 2 > kw:
        raise OpError(f"pool padding {a['padding']} must be at most half the kernel {a['kernel']}")
    ceil = a["ceil_mode"]
    return (c, conv_out(h, kh, sh, ph, 1, ceil), conv_out(w, kw, sw, pw, 1, ceil))


def shape_global_pool(a, ins):
    c = _spatial(ins[0], "global pooling")[0]
    return (c, 1, 1) if a["keepdim"] else (c,)


def shape_linear(a, ins):
    if len(ins[0]) != 1:
        raise OpError(f"linear needs a vector (F,), got shape {tuple(ins[0])}: "
                      "add flatten or a global pool")
    return (a["out"],)


def shape_same(a, ins):
    return tuple(ins[0])


def shape_add(a, ins):
    """Equal shapes, or broadcasting ones (each size equal or 1: x + (C, 1, 1), GC's fusion)."""
    out = tuple(ins[0])
    for s in ins[1:]:
        s = tuple(s)
        if len(s) != len(out) or any(i != j and 1 not in (i, j) for i, j in zip(out, s)):
            raise OpError(f"add needs equal shapes, got {tuple(ins[0])} and {s}")
        out = tuple(max(i, j) for i, j in zip(out, s))
    return out


def shape_partial_add(a, ins):
    """cat(branch[:Cs] + shortcut, branch[Cs:]) (ReXNet): the shortcut adds to the first Cs."""
    s, b = (_spatial(t, "partial_add") for t in ins)
    if s[1:] != b[1:] or s[0] > b[0]:
        raise OpError(f"partial_add needs a shortcut of at most the branch's channels and the same "
                      f"size, got {tuple(s)} and {tuple(b)}")
    return tuple(b)


def shape_concat(a, ins):
    for s in ins:
        _spatial(s, "concat")
    if len({tuple(s[1:]) for s in ins}) != 1:
        sizes = ", ".join(f"{s[1]}x{s[2]}" for s in ins)
        raise OpError(f"concat needs equal spatial sizes, got {sizes}")
    return (sum(s[0] for s in ins),) + tuple(ins[0][1:])


def shape_mul(a, ins):
    """u * s, the scale broadcast: per channel (C, 1, 1) or per position (1, H, W)."""
    u, s = ins
    if len(u) != 3 or tuple(s) not in ((u[0], 1, 1), (1, u[1], u[2])):
        raise OpError(f"scale needs (C, H, W) and (C, 1, 1) or (1, H, W), "
                      f"got {tuple(u)} and {tuple(s)}")
    return tuple(u)


def shape_scale_add(a, ins):
    """other + u * s (torch.addcmul's argument order): the shape of the add of other and u * s."""
    return shape_add(a, [ins[0], shape_mul(a, ins[1:])])


def shape_shuffle(a, ins):
    c = _spatial(ins[0], "channel_shuffle")[0]
    if c % a["groups"]:
        raise OpError(f"channel_shuffle groups={a['groups']} must divide channels {c}")
    return tuple(ins[0])


def shape_flatten(a, ins):
    return (_prod(ins[0]),)


def eca_padding(a) -> int:
    """channel_conv's zero padding at both ends of the channel axis: (k - 1) // 2 unless given."""
    return (a["kernel"] - 1) // 2 if a.get("padding") is None else a["padding"]


def shape_channel_conv(a, ins):
    s = tuple(ins[0])
    if len(s) not in (1, 3) or s[1:] not in ((), (1, 1)):
        raise OpError(f"channel_conv needs pooled channels (C, 1, 1) or (C,), got shape {s}")
    return (s[0] + 2 * eca_padding(a) - a["kernel"] + 1,) + s[1:]


def shape_dual_pool(a, ins):
    """[mean ; max] over H, W stacked on the H axis: 1x1 convs then share their MLP (CBAM)."""
    return (_spatial(ins[0], "dual_pool")[0], 2, 1)


def shape_spatial_sum(a, ins):
    return (_spatial(ins[0], "spatial_sum")[0], 1, 1)


def shape_channel_pool(a, ins):
    _, h, w = _spatial(ins[0], "channel_pool")
    return (2, h, w)


def shape_select(a, ins):
    p = a["paths"]
    if p < 1:
        raise OpError(f"select needs at least one path, got paths={p}")
    if len(ins) != p + 1:
        raise OpError(f"select over {p} paths needs logits and {p} branches, got {len(ins)} inputs")
    logits, branches = tuple(ins[0]), [tuple(b) for b in ins[1:]]
    first = _spatial(branches[0], "select")
    if any(b != first for b in branches):
        raise OpError(f"select needs branches of equal shapes, got {', '.join(map(str, branches))}")
    if logits != (p * first[0], 1, 1):
        raise OpError(f"select needs logits ({p} x {first[0]}, 1, 1) for {p} paths of {first[0]} "
                      f"channels, got {logits}")
    return first


def shape_softmax(a, ins):
    s = tuple(ins[0])
    if a["axis"] not in SOFTMAX_AXES:
        raise OpError(f"softmax axis must be one of {', '.join(SOFTMAX_AXES)}, got {a['axis']!r}")
    if a["axis"] == "positions":
        _spatial(s, "softmax over positions")
    return s


def shape_layernorm(a, ins):
    s = tuple(ins[0])
    if len(s) not in (1, 3):
        raise OpError(f"layernorm needs (C, H, W) or (C,), got shape {s}")
    return s


def shape_attn_pool(a, ins):
    """sum over positions of x * w: x (C, H, W), w (1, H, W) -> (C, 1, 1)."""
    x, w = (tuple(t) for t in ins)
    if len(x) != 3 or w != (1, *x[1:]):
        raise OpError(f"attn_pool needs (C, H, W) and weights (1, H, W), got {x} and {w}")
    return (x[0], 1, 1)


def shape_split_sum(a, ins):
    c, h, w = _spatial(ins[0], "split_sum")
    if a["parts"] < 1 or c % a["parts"]:
        raise OpError(f"split_sum parts={a['parts']} must divide the {c} channels")
    return (c // a["parts"], h, w)


def shape_split_select(a, ins):
    """x (P * C, H, W) and logits (P * C, 1, 1) -> (C, H, W)."""
    out = shape_split_sum(a, ins[:1])
    logits, groups = tuple(ins[1]), a["groups"]
    if logits != (ins[0][0], 1, 1):
        raise OpError(f"split_select needs logits ({ins[0][0]}, 1, 1) for {tuple(ins[0])}, "
                      f"got {logits}")
    if groups < 1 or out[0] % groups:
        raise OpError(f"split_select groups={groups} must divide the {out[0]} channels")
    return out


def shape_channel_slice(a, ins):
    c, h, w = _spatial(ins[0], "channel_slice")
    start, size = a["start"], a["size"]
    if start < 0 or size < 1 or start + size > c:
        raise OpError(f"channel_slice [{start}, {start + size}) is outside the {c} input channels")
    return (size, h, w)


# -- weight shapes -------------------------------------------------------------------------
def _has_bias(a) -> bool:
    return a["bias"]


def _out(a, ins) -> tuple:
    return (a["out"],)


def _channels(a, ins) -> tuple:
    return (ins[0][0],)


CONV_WEIGHTS = (Weight("weight", lambda a, ins: (a["out"], ins[0][0] // a["groups"], *a["kernel"])),
                Weight("bias", _out, present=_has_bias))
LINEAR_WEIGHTS = (Weight("weight", lambda a, ins: (a["out"], ins[0][0])),
                  Weight("bias", _out, present=_has_bias))
BN_WEIGHTS = (Weight("weight", _channels), Weight("bias", _channels),
              Weight("running_mean", _channels, buffer=True),
              Weight("running_var", _channels, buffer=True),
              Weight("num_batches_tracked", lambda a, ins: (), buffer=True, inference=False))

LN_WEIGHTS = (Weight("weight", _channels), Weight("bias", _channels))
LAYER_SCALE_WEIGHTS = (Weight("gamma", _channels),)   # timm LayerScale2d

POOL_ATTRS = {"kernel": REQUIRED, "stride": REQUIRED, "padding": (0, 0), "ceil_mode": False}


def _numel(shape) -> int:
    return _prod(shape)


def _conv_macs(a, ins, out) -> int:
    return a["out"] * (ins[0][0] // a["groups"]) * _prod(a["kernel"]) * out[1] * out[2]


def _first_numel(a, ins, out) -> int:
    return _numel(ins[0])


ECA_WEIGHTS = (Weight("weight", lambda a, ins: (1, 1, a["kernel"])),)   # timm: Conv1d(1, 1, k)


def _add_macs(a, ins, out) -> int:
    return _numel(out) * sum(1 for s in a.get("scales") or () if s != 1.0)


_DEFS = (
    OpDef("input", lambda a, ins: tuple(a["shape"]), attrs={"shape": REQUIRED}),
    OpDef("conv2d", shape_conv2d, fresh=True, weights=CONV_WEIGHTS, macs=_conv_macs,
          attrs={"out": REQUIRED, "kernel": (1, 1), "stride": (1, 1), "padding": (0, 0),
                 "dilation": (1, 1), "groups": 1, "bias": True}),
    OpDef("batchnorm", shape_same, fresh=True, weights=BN_WEIGHTS,
          attrs={"eps": 1e-5, "momentum": 0.1}),
    OpDef("act", shape_same, attrs={"kind": REQUIRED}),   # kind: one of ACTIVATIONS
    OpDef("maxpool2d", shape_pool, fresh=True, attrs=POOL_ATTRS),
    OpDef("avgpool2d", shape_pool, fresh=True, attrs={**POOL_ATTRS, "count_include_pad": True},
          macs=lambda a, ins, out: _prod(a["kernel"]) * _numel(out)),
    OpDef("global_pool", shape_global_pool, fresh=True,
          attrs={"mode": "avg", "keepdim": False},   # mode: one of POOL_MODES
          macs=lambda a, ins, out: _numel(ins[0]) if a["mode"] == "avg" else 0),
    # identity, dropout (in eval), flatten and channel_shuffle may return their input or a view
    # of it: an in-place op after them would overwrite a tensor other nodes read (props-6)
    OpDef("flatten", shape_flatten),
    OpDef("linear", shape_linear, fresh=True, weights=LINEAR_WEIGHTS,
          attrs={"out": REQUIRED, "bias": True}, macs=lambda a, ins, out: ins[0][0] * a["out"]),
    OpDef("dropout", shape_same, attrs={"p": 0.5}),
    OpDef("identity", shape_same),
    OpDef("add", shape_add, fresh=True, macs=_add_macs,
          attrs={"scales": None}),   # one per input; None: all 1
    OpDef("concat", shape_concat, fresh=True),
    OpDef("mul", shape_mul, fresh=True, macs=lambda a, ins, out: _numel(out)),
    OpDef("scale_add", shape_scale_add, fresh=True, macs=lambda a, ins, out: _numel(out)),
    OpDef("channel_shuffle", shape_shuffle, attrs={"groups": REQUIRED}),
    # attention building blocks (ECA, CBAM, Selective Kernel; docs/notes/timm-architectures.md)
    OpDef("channel_conv", shape_channel_conv, fresh=True, weights=ECA_WEIGHTS,
          attrs={"kernel": REQUIRED, "padding": None},   # None: (kernel - 1) // 2
          macs=lambda a, ins, out: out[0] * a["kernel"]),
    OpDef("dual_pool", shape_dual_pool, fresh=True, macs=_first_numel),
    OpDef("spatial_sum", shape_spatial_sum, fresh=True, macs=_first_numel),
    OpDef("channel_pool", shape_channel_pool, fresh=True, macs=_first_numel),
    OpDef("select", shape_select, fresh=True, attrs={"paths": REQUIRED},
          macs=lambda a, ins, out: a["paths"] * _numel(out)),
    OpDef("channel_slice", shape_channel_slice, attrs={"start": REQUIRED, "size": REQUIRED}),
    OpDef("drop_path", shape_same, attrs={"p": REQUIRED}),   # stochastic depth; a view in eval
    # global context, split attention, partial residuals, layer scale (issue 22)
    OpDef("softmax", shape_softmax, fresh=True, attrs={"axis": REQUIRED}),   # one of SOFTMAX_AXES
    OpDef("layernorm", shape_layernorm, fresh=True, weights=LN_WEIGHTS,
          attrs={"eps": 1e-5}),   # over the channels at each position (timm LayerNorm2d)
    OpDef("attn_pool", shape_attn_pool, fresh=True, macs=_first_numel),
    OpDef("layer_scale", shape_same, fresh=True, weights=LAYER_SCALE_WEIGHTS,
          attrs={"init": 1e-5}, macs=lambda a, ins, out: _numel(out)),
    OpDef("split_sum", shape_split_sum, fresh=True, attrs={"parts": REQUIRED}, macs=_first_numel),
    OpDef("split_select", shape_split_select, fresh=True,
          attrs={"parts": REQUIRED, "groups": 1},   # groups: cardinality of timm's RadixSoftmax
          macs=_first_numel),
    OpDef("partial_add", shape_partial_add, fresh=True),
)
OPS: dict[str, OpDef] = {d.name: d for d in _DEFS}


def check_attrs(op: str, attrs: dict) -> None:
    """An unknown op, an undeclared attribute or a missing required one is a compiler bug."""
    opdef = OPS.get(op)
    known = _ATTR_SETS.get(op)
    if known is None or known[0] is not opdef:   # first use, or an op registered (again) since
        if opdef is None:
            raise ValueError(f"unknown IR op {op!r} (ops: {', '.join(OPS)})")
        known = _ATTR_SETS[op] = (opdef, frozenset(opdef.attrs),
                                  frozenset(k for k, v in opdef.attrs.items() if v is REQUIRED))
    # every node is checked twice (added, verified): the usual case is two C-level set tests
    keys = attrs.keys()
    if keys <= known[1] and keys >= known[2]:
        return
    declared = opdef.attrs
    extra = set(attrs) - set(declared)
    missing = [k for k, v in declared.items() if v is REQUIRED and k not in attrs]
    raise ValueError(f"IR op {op}: undeclared attributes {sorted(extra)}, missing {missing}")


_ATTR_SETS: dict[str, tuple] = {}   # op -> (its OpDef, its attributes, its required ones)


def infer(op: str, attrs: dict, in_shapes: list) -> tuple:
    """Output shape of `op`; raises OpError for inconsistent inputs or sizes below 1."""
    out = tuple(OPS[op].shape(attrs, in_shapes))
    if out and min(out) < 1:
        first = tuple(in_shapes[0]) if in_shapes else ()
        raise OpError(f"output shape {out} has a size below 1 (input {first})")
    return out


def params(op: str, attrs: dict, in_shapes: list) -> int:
    return OPS[op].params(attrs, in_shapes)


def macs(op: str, attrs: dict, in_shapes: list, out_shape: tuple) -> int:
    return OPS[op].macs(attrs, in_shapes, out_shape)


def same_padding(kernel: int, dilation: int = 1) -> int:
    return dilation * (kernel - 1) // 2


# Ops whose multiply-adds are the "conv + fc" figure (report: total.conv_linear_macs): the
# convolutions and fully connected layers timm's and the reference models' counts include.
CONV_LINEAR_OPS = ("conv2d", "channel_conv", "linear")

# What the spec schema's enums are generated from (schema_gen.py writes spec/op_enums.json).
SCHEMA_ENUMS = {"activations": list(ACTIVATIONS), "pool_modes": list(POOL_MODES),
                "softmax_axes": list(SOFTMAX_AXES)}

__all__ = ["OPS", "OpDef", "Weight", "OpError", "REQUIRED", "check_attrs", "infer", "params",
           "macs", "conv_out", "same_padding", "eca_padding", "CONV_LINEAR_OPS", "ACTIVATIONS",
           "POOL_MODES", "SOFTMAX_AXES", "SCHEMA_ENUMS"]
