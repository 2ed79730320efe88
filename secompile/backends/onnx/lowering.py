"""ONNX backend: lower the IR to an `onnx.ModelProto` with `onnx.helper`.

Over 400 lines on purpose: one emitter per op of the registry (the rule: one emitter per op
per backend), in one table beside the lowering loop that calls them, as in the torch backend.

Each IR node becomes one ONNX node named by its IR path, whose output tensor is named
by the same path (the network's result is called `output`, its input `input`). A few
ops need a short pattern; the helper nodes are named `<path>/<role>` and the node that
produces the IR value keeps the bare path:

    conv2d          Conv (group, pads, dilations kept)       linear     Gemm (transB=1)
    batchnorm       BatchNormalization (also on (N, F))      act        Relu, Sigmoid, Tanh,
    maxpool2d       MaxPool (ceil_mode kept, see _pool)                 HardSigmoid(1/6, 1/2),
    avgpool2d       AveragePool (count_include_pad too)                 HardSwish, Clip(0, 6),
    global_pool     GlobalAveragePool / GlobalMaxPool (keepdim)         silu: Sigmoid -> Mul
                    ReduceMean / ReduceMax (to a vector)     mul        Mul (broadcast scale)
    flatten         Flatten(axis=1)                          concat     Concat(axis=1)
    dropout, identity  Identity (inference)                  add        Add / Sum; a scaled input
    channel_shuffle Reshape -> Transpose -> Reshape                     is Mul(x, scale) first
    channel_conv    Reshape (N, 1, C) -> Conv (1-D, ECA) -> Reshape
    dual_pool       GlobalAveragePool, GlobalMaxPool -> Concat(axis=2)
    channel_pool    ReduceMean, ReduceMax (axis 1) -> Concat(axis=1)
    spatial_sum     ReduceSum (axes 2, 3)                    channel_slice  Slice (axis 1)
    select          Reshape logits (N, P, C, 1, 1) -> Softmax(axis=1); Unsqueeze the branches
                    -> Concat(axis=1) -> Mul -> ReduceSum (axis 1)
    drop_path       Identity (stochastic depth is training-only)
    softmax         Softmax(axis=1); positions: Reshape (N, C, HW) -> Softmax(axis=2) -> Reshape
    layernorm       Transpose to channels-last -> LayerNormalization(axis=-1) -> Transpose back
    attn_pool       Reshape x (N, C, HW), w (N, HW, 1) -> MatMul -> Reshape (N, C, 1, 1)
    layer_scale     Mul by gamma reshaped to (C, 1, 1)     gelu   x * (1 + Erf(x / sqrt 2)) / 2
    split_sum       Reshape (N, P, C, H, W) -> ReduceSum(axis 1)
    split_select    logits (-> Transpose for groups) Reshape (N, P, C, 1, 1) -> Softmax(axis=1);
                    x Reshape (N, P, C, H, W) -> Mul -> ReduceSum(axis 1)
    partial_add     Slice the branch at Cs -> Add the shortcut to the first part -> Concat

so an SE block reads GlobalAveragePool -> Conv 1x1 -> Relu -> Conv 1x1 -> Sigmoid -> Mul.
Initializers are exactly the parameters and BN running statistics, named by their
`state_dict` keys; constants that are not weights (reshape targets, clip bounds, residual
scales) are `Constant` nodes. With `fold_bn`, a BatchNorm whose input is a conv (or linear)
read by nothing else is folded into it (`weights.fold`); the fused node keeps the
conv's path and produces the BN's tensor. See docs/onnx.md.

The batch dimension is symbolic (`N`); every other dimension, and every intermediate
tensor's shape (value_info), comes from the IR's inferred shapes. Output is
deterministic: the same graph and weights serialise to the same bytes.

Over 400 lines on purpose: one emitter per registry op (as codegen.py), beside the model
assembly that calls them.
"""
from __future__ import annotations

import os

import numpy as np

import onnx
from onnx import TensorProto, helper, numpy_helper

from ..._version import __version__
from ...ir import plugins
from ...ir.graph import Graph
from ...ir.ops import eca_padding
from ...outputs import atomic_write
from .weights import fold, foldable

DEFAULT_OPSET = 17
MIN_OPSET = 17
BATCH = "N"
# protobuf cannot serialise a message over 2 GiB: bigger models keep their tensors in
# `<file>.data` (ONNX external data). The margin leaves room for the graph itself.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26
EXTERNAL_MIN_TENSOR = 1024          # smaller tensors stay inline (as onnx.save does)

_ACT = {"relu": ("Relu", {}), "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}),
        # = relu6(x + 3) / 6, as torch
        "hard_sigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
        "hard_swish": ("HardSwish", {})}


class _Lowering:
    """Emits nodes, initializers and value_info for one graph, in IR order."""

    def __init__(self, g: Graph, state: dict, opset: int, fold_bn: bool):
        self.g, self.state, self.opset = g, state, opset
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}
        self.info: dict[str, tuple] = {}          # tensor name -> shape without batch
        self.tensor: dict[str, str] = {}          # IR path -> tensor holding its value
        self.fold = foldable(g) if fold_bn else {}
        self.folded_into = {conv: bn for bn, conv in self.fold.items()}

    # -- emission helpers ------------------------------------------------------------
    def node(self, op_type, inputs, name, out=None, shape=None, **attrs) -> str:
        out = out or name
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        if shape is not None:
            self.info[out] = tuple(shape)
        return out

    def weight(self, key: str, value: np.ndarray | None = None) -> str:
        self.inits[key] = self.state[key] if value is None else value
        return key

    def const(self, name: str, value) -> str:
        """A non-weight constant as a Constant node (initializers hold only weights)."""
        arr = np.asarray(value)
        self.nodes.append(helper.make_node("Constant", [], [name], name=name,
                                           value=numpy_helper.from_array(arr, name)))
        return name

    # -- ops ---------------------------------------------------------------------------
    def emit(self, p: str, d: dict) -> None:
        op, a, shape = d["op"], d["attrs"], d["shape"]
        xs = [self.tensor[i] for i in d["inputs"]]
        if op == "batchnorm" and p in self.fold:
            self.tensor[p] = self.tensor[self.fold[p]]   # the conv already produced this value
            return
        out = self.folded_into.get(p, p)                 # a folded conv writes the BN's tensor
        if op in EMITTERS:
            self.tensor[p] = EMITTERS[op](self, p, a, xs, out, shape)
        else:   # a plug-in op (ir/plugins.py); lower() checked it has an emitter
            emit = OnnxEmit(self, p, a, xs, [self.g.shape(i) for i in d["inputs"]], out, shape)
            self.tensor[p] = plugins.get(op).onnx(emit)

    def _params(self, p, bias: bool) -> list[str]:
        bn = self.folded_into.get(p)
        if bn is not None:
            w, b = fold(self.state, self.g, bn, p)
            return [self.weight(f"{p}.weight", w), self.weight(f"{p}.bias", b)]
        return [self.weight(f"{p}.weight")] + ([self.weight(f"{p}.bias")] if bias else [])

    def op_conv2d(self, p, a, xs, out, shape):
        (ph, pw) = a["padding"]
        return self.node("Conv", xs + self._params(p, a["bias"]), p, out, shape,
                         kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                         pads=[ph, pw, ph, pw],
                         dilations=list(a["dilation"]), group=a["groups"])

    def op_linear(self, p, a, xs, out, shape):
        return self.node("Gemm", xs + self._params(p, a["bias"]), p, out, shape, transB=1)

    def op_batchnorm(self, p, a, xs, out, shape):
        ws = [self.weight(f"{p}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        return self.node("BatchNormalization", xs + ws, p, out, shape, epsilon=float(a["eps"]))

    def op_act(self, p, a, xs, out, shape):
        kind = a["kind"]
        if kind in _ACT:
            op_type, attrs = _ACT[kind]
            return self.node(op_type, xs, p, out, shape, **attrs)
        if kind == "relu6":
            lo, hi = self.const(f"{p}/min", np.float32(0)), self.const(f"{p}/max", np.float32(6))
            return self.node("Clip", xs + [lo, hi], p, out, shape)
        if kind == "silu":   # opset 17 has no Swish: x * sigmoid(x)
            s = self.node("Sigmoid", xs, f"{p}/sigmoid", shape=shape)
            return self.node("Mul", [xs[0], s], p, out, shape)
        if kind == "gelu":   # Gelu is opset 20: x * (1 + erf(x / sqrt(2))) / 2, torch's exact GELU
            y = self.node("Div", [xs[0], self.const(f"{p}/sqrt2", np.float32(np.sqrt(2.0)))],
                          f"{p}/scaled", shape=shape)
            y = self.node("Erf", [y], f"{p}/erf", shape=shape)
            y = self.node("Add", [y, self.const(f"{p}/one", np.float32(1))], f"{p}/plus1",
                          shape=shape)
            y = self.node("Mul", [xs[0], y], f"{p}/mul", shape=shape)
            return self.node("Mul", [y, self.const(f"{p}/half", np.float32(0.5))], p, out, shape)
        raise NotImplementedError(f"onnx backend: activation {kind}")

    def _pool(self, op_type, p, a, xs, out, shape, **attrs):
        """MaxPool / AveragePool. PyTorch drops a ceil_mode window that would start in the end
        padding; onnxruntime does too, but ONNX's shape inference does not. Where that rule
        changes the size, the pool runs in floor mode with the end padding that gives the IR's
        size, so the file's shapes and its values agree with torch. AveragePool counting that
        padding gets it from an explicit Pad (zeros) instead, the extra end cells uncounted."""
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        axes = list(zip(self.g.shape(self.g.inputs(p)[0])[1:], shape[1:], a["kernel"],
                        a["stride"], a["padding"]))
        if all(_onnx_pool_size(n, k, st, pd, a["ceil_mode"]) == o for n, o, k, st, pd in axes):
            return self.node(op_type, xs, p, out, shape, kernel_shape=[kh, kw], strides=[sh, sw],
                             pads=[ph, pw, ph, pw], ceil_mode=int(a["ceil_mode"]), **attrs)
        # (out - 1) * s + k - n - pad: the last window ends at the padded end; it starts inside
        # the input (PyTorch's rule), so this padding stays below the kernel, as ONNX requires
        eh, ew = (max(pd, (o - 1) * st + k - n - pd) for n, o, k, st, pd in axes)
        h, w = axes[0][0], axes[1][0]
        if attrs.get("count_include_pad") and (ph or pw):
            pads = self.const(f"{p}/pads", np.array([0, 0, ph, pw, 0, 0, ph, pw], np.int64))
            xs = [self.node("Pad", xs + [pads], f"{p}/pad",
                            shape=(shape[0], h + 2 * ph, w + 2 * pw))]
            eh, ew, ph, pw = eh - ph, ew - pw, 0, 0
            attrs["count_include_pad"] = 0
        return self.node(op_type, xs, p, out, shape, kernel_shape=[kh, kw], strides=[sh, sw],
                         pads=[ph, pw, eh, ew], ceil_mode=0, **attrs)

    def op_maxpool2d(self, p, a, xs, out, shape):
        return self._pool("MaxPool", p, a, xs, out, shape)

    def op_avgpool2d(self, p, a, xs, out, shape):
        return self._pool("AveragePool", p, a, xs, out, shape,
                          count_include_pad=int(a["count_include_pad"]))

    def op_global_pool(self, p, a, xs, out, shape):
        if a["keepdim"]:   # the SE squeeze: (N, C, 1, 1)
            return self.node("GlobalAveragePool" if a["mode"] == "avg" else "GlobalMaxPool",
                             xs, p, out, shape)
        op_type = "ReduceMean" if a["mode"] == "avg" else "ReduceMax"
        if self.opset >= 18:   # axes moved from an attribute to an input in opset 18
            return self.node(op_type, xs + [self.const(f"{p}/axes", np.array([2, 3], np.int64))],
                             p, out, shape, keepdims=0)
        return self.node(op_type, xs, p, out, shape, axes=[2, 3], keepdims=0)

    def op_flatten(self, p, a, xs, out, shape):
        return self.node("Flatten", xs, p, out, shape, axis=1)

    def op_identity(self, p, a, xs, out, shape):
        return self.node("Identity", xs, p, out, shape)

    def op_mul(self, p, a, xs, out, shape):
        return self.node("Mul", xs, p, out, shape)

    def op_concat(self, p, a, xs, out, shape):
        return self.node("Concat", xs, p, out, shape, axis=1)

    def op_add(self, p, a, xs, out, shape):
        scales = a.get("scales") or (1.0,) * len(xs)
        terms = []
        for i, (x, s) in enumerate(zip(xs, scales)):
            if s != 1.0:   # residual scaling: shortcut + s * branch
                x = self.node("Mul", [x, self.const(f"{p}/scale{i}", np.float32(s))],
                              f"{p}/mul{i}", shape=shape)
            terms.append(x)
        return self.node("Add" if len(terms) == 2 else "Sum", terms, p, out, shape)

    def op_scale_add(self, p, a, xs, out, shape):
        """The torch backend's fused SE scale + add (passes/fuse.py) as the Mul and Add it replaces.
        Export lowers the unfused graph (one ONNX node per IR node), so this is for graphs fused
        by a caller."""
        other, u, s = xs
        scaled = self.node("Mul", [u, s], f"{p}/mul", shape=shape)
        return self.node("Add", [other, scaled], p, out, shape)

    def op_channel_shuffle(self, p, a, xs, out, shape):
        gr = a["groups"]
        c, h, w = shape
        # 0 copies the (symbolic) batch dimension:
        # (N, g, C/g, HW) -> (N, C/g, g, HW) -> (N, C, H, W)
        split = self.const(f"{p}/split_shape", np.array([0, gr, c // gr, h * w], np.int64))
        y = self.node("Reshape", xs + [split], f"{p}/split", shape=(gr, c // gr, h * w))
        y = self.node("Transpose", [y], f"{p}/transpose", shape=(c // gr, gr, h * w),
                      perm=[0, 2, 1, 3])
        return self.node("Reshape",
                         [y, self.const(f"{p}/merge_shape", np.array([0, c, h, w], np.int64))],
                         p, out, shape)

    # -- attention building blocks (ECA, CBAM, Selective Kernel) -----------------------
    def _reduce(self, op_type, xs, axes, name, out=None, shape=None, keepdims=1):
        """ReduceMean/ReduceMax take their axes as an attribute before opset 18, ReduceSum (13+)
        as an input."""
        axes = list(axes)
        if op_type == "ReduceSum" or self.opset >= 18:
            xs = xs + [self.const(f"{name}/axes", np.array(axes, np.int64))]
            return self.node(op_type, xs, name, out, shape, keepdims=keepdims)
        return self.node(op_type, xs, name, out, shape, axes=axes, keepdims=keepdims)

    def op_channel_conv(self, p, a, xs, out, shape):
        """ECA: the channels as a 1-D signal (N, 1, C) through a 1-D Conv, then back."""
        c_in = self.g.shape(self.g.inputs(p)[0])[0]
        pad = eca_padding(a)
        flat = self.const(f"{p}/signal_shape", np.array([0, 1, c_in], np.int64))
        y = self.node("Reshape", xs + [flat], f"{p}/signal", shape=(1, c_in))
        y = self.node("Conv", [y, self.weight(f"{p}.weight")], f"{p}/conv", shape=(1, shape[0]),
                      kernel_shape=[a["kernel"]], pads=[pad, pad])
        back = self.const(f"{p}/shape", np.array([0, *shape], np.int64))
        return self.node("Reshape", [y, back], p, out, shape)

    def op_dual_pool(self, p, a, xs, out, shape):
        c = shape[0]
        avg = self.node("GlobalAveragePool", xs, f"{p}/mean", shape=(c, 1, 1))
        mx = self.node("GlobalMaxPool", xs, f"{p}/max", shape=(c, 1, 1))
        return self.node("Concat", [avg, mx], p, out, shape, axis=2)

    def op_spatial_sum(self, p, a, xs, out, shape):
        return self._reduce("ReduceSum", xs, [2, 3], p, out, shape)

    def op_channel_pool(self, p, a, xs, out, shape):
        half = (1,) + tuple(shape[1:])
        avg = self._reduce("ReduceMean", xs, [1], f"{p}/mean", shape=half)
        mx = self._reduce("ReduceMax", xs, [1], f"{p}/max", shape=half)
        return self.node("Concat", [avg, mx], p, out, shape, axis=1)

    def op_select(self, p, a, xs, out, shape):
        """Softmax over the paths of the path-major logits (N, P, C, 1, 1), times the stacked
        branches (N, P, C, H, W), summed over P."""
        logits, *branches = xs
        paths, c = a["paths"], shape[0]
        view = self.const(f"{p}/logits_shape", np.array([0, paths, c, 1, 1], np.int64))
        w = self.node("Reshape", [logits, view], f"{p}/logits", shape=(paths, c, 1, 1))
        w = self.node("Softmax", [w], f"{p}/softmax", shape=(paths, c, 1, 1), axis=1)
        axis = self.const(f"{p}/path_axis", np.array([1], np.int64))
        stacked = [self.node("Unsqueeze", [b, axis], f"{p}/path{i}", shape=(1, *shape))
                   for i, b in enumerate(branches)]
        y = self.node("Concat", stacked, f"{p}/stack", shape=(paths, *shape), axis=1)
        y = self.node("Mul", [y, w], f"{p}/weighted", shape=(paths, *shape))
        return self._reduce("ReduceSum", [y], [1], p, out, shape, keepdims=0)

    def op_channel_slice(self, p, a, xs, out, shape):
        start = a["start"]
        bounds = [self.const(f"{p}/{k}", np.array([v], np.int64))
                  for k, v in (("starts", start), ("ends", start + a["size"]), ("axes", 1))]
        return self.node("Slice", xs + bounds, p, out, shape)

    # -- global context, split attention, partial residuals, layer scale ---------------
    def _reshape(self, x, name, dims, shape=None, out=None):
        """Reshape to (N, *dims) (0 copies the symbolic batch)."""
        target = self.const(f"{name}/shape", np.array([0, *dims], np.int64))
        return self.node("Reshape", [x, target], name, out, shape or tuple(dims))

    def op_softmax(self, p, a, xs, out, shape):
        if a["axis"] == "channels":
            return self.node("Softmax", xs, p, out, shape, axis=1)
        c, h, w = shape
        y = self._reshape(xs[0], f"{p}/flat", (c, h * w))
        y = self.node("Softmax", [y], f"{p}/softmax", shape=(c, h * w), axis=2)
        return self._reshape(y, p, shape, shape, out)

    def op_layernorm(self, p, a, xs, out, shape):
        ws = [self.weight(f"{p}.weight"), self.weight(f"{p}.bias")]
        if len(shape) == 1:
            return self.node("LayerNormalization", xs + ws, p, out, shape, axis=-1,
                             epsilon=float(a["eps"]))
        c, h, w = shape
        y = self.node("Transpose", xs, f"{p}/nhwc", shape=(h, w, c), perm=[0, 2, 3, 1])
        y = self.node("LayerNormalization", [y] + ws, f"{p}/norm", shape=(h, w, c), axis=-1,
                      epsilon=float(a["eps"]))
        return self.node("Transpose", [y], p, out, shape, perm=[0, 3, 1, 2])

    def op_attn_pool(self, p, a, xs, out, shape):
        x, w = xs
        c, (_, h, wd) = shape[0], self.g.shape(self.g.inputs(p)[0])
        x = self._reshape(x, f"{p}/x", (c, h * wd))
        w = self._reshape(w, f"{p}/weights", (h * wd, 1))
        y = self.node("MatMul", [x, w], f"{p}/matmul", shape=(c, 1))
        return self._reshape(y, p, shape, shape, out)

    def op_layer_scale(self, p, a, xs, out, shape):
        dims = (shape[0],) + (1,) * (len(shape) - 1)
        gamma = self.node("Reshape", [self.weight(f"{p}.gamma"),
                                      self.const(f"{p}/gamma_shape", np.array(dims, np.int64))],
                          f"{p}/gamma", shape=None)
        return self.node("Mul", [xs[0], gamma], p, out, shape)

    def op_split_sum(self, p, a, xs, out, shape):
        y = self._reshape(xs[0], f"{p}/splits", (a["parts"], *shape))
        return self._reduce("ReduceSum", [y], [1], p, out, shape, keepdims=0)

    def op_split_select(self, p, a, xs, out, shape):
        x, logits = xs
        parts, c, gr = a["parts"], shape[0], a["groups"]
        if parts == 1:
            s = self.node("Sigmoid", [logits], f"{p}/gate", shape=(c, 1, 1))
            return self.node("Mul", [x, s], p, out, shape)
        if gr > 1:   # timm RadixSoftmax: (N, G, P, C/G) -> (N, P, G, C/G)
            logits = self._reshape(logits, f"{p}/groups", (gr, parts, c // gr))
            logits = self.node("Transpose", [logits], f"{p}/radix_major",
                               shape=(parts, gr, c // gr), perm=[0, 2, 1, 3])
        wts = self._reshape(logits, f"{p}/logits", (parts, c, 1, 1))
        wts = self.node("Softmax", [wts], f"{p}/softmax", shape=(parts, c, 1, 1), axis=1)
        y = self._reshape(x, f"{p}/splits", (parts, *shape))
        y = self.node("Mul", [y, wts], f"{p}/weighted", shape=(parts, *shape))
        return self._reduce("ReduceSum", [y], [1], p, out, shape, keepdims=0)

    def op_partial_add(self, p, a, xs, out, shape):
        short, branch = xs
        cs = self.g.shape(self.g.inputs(p)[0])[0]
        if cs == shape[0]:
            return self.node("Add", [branch, short], p, out, shape)

        def part(name, lo, hi):
            bounds = [self.const(f"{p}/{name}_{k}", np.array([v], np.int64))
                      for k, v in (("starts", lo), ("ends", hi), ("axes", 1))]
            return self.node("Slice", [branch] + bounds, f"{p}/{name}",
                             shape=(hi - lo, *shape[1:]))
        head = self.node("Add", [part("head", 0, cs), short], f"{p}/add", shape=(cs, *shape[1:]))
        return self.node("Concat", [head, part("rest", cs, shape[0])], p, out, shape, axis=1)


# One emitter per IR op (ops.OPS); each returns the tensor holding the node's value.
EMITTERS = {
    "conv2d": _Lowering.op_conv2d,
    "linear": _Lowering.op_linear,
    "batchnorm": _Lowering.op_batchnorm,
    "act": _Lowering.op_act,
    "maxpool2d": _Lowering.op_maxpool2d,
    "avgpool2d": _Lowering.op_avgpool2d,
    "global_pool": _Lowering.op_global_pool,
    "flatten": _Lowering.op_flatten,
    "identity": _Lowering.op_identity,
    "dropout": _Lowering.op_identity,   # inference: dropout is the identity
    "mul": _Lowering.op_mul,
    "concat": _Lowering.op_concat,
    "add": _Lowering.op_add,
    "scale_add": _Lowering.op_scale_add,
    "channel_shuffle": _Lowering.op_channel_shuffle,
    "channel_conv": _Lowering.op_channel_conv,
    "dual_pool": _Lowering.op_dual_pool,
    "spatial_sum": _Lowering.op_spatial_sum,
    "channel_pool": _Lowering.op_channel_pool,
    "select": _Lowering.op_select,
    "channel_slice": _Lowering.op_channel_slice,
    "drop_path": _Lowering.op_identity,   # stochastic depth is training-only
    "softmax": _Lowering.op_softmax,
    "layernorm": _Lowering.op_layernorm,
    "attn_pool": _Lowering.op_attn_pool,
    "layer_scale": _Lowering.op_layer_scale,
    "split_sum": _Lowering.op_split_sum,
    "split_select": _Lowering.op_split_select,
    "partial_add": _Lowering.op_partial_add,
}
NOT_EMITTED = {"input"}   # a graph input (value_info), not a node


class OnnxEmit:
    """What a plug-in's ONNX emitter sees of its node, and how it adds ONNX nodes: helper nodes
    are named `<path>/<role>`, the last (role None) produces the node's value; initialisers are
    the node's state_dict tensors, `<path>.<name>`. The emitter returns the value's tensor."""

    def __init__(self, low: _Lowering, path, attrs, inputs, in_shapes, out, shape):
        self._low, self._out = low, out
        self.path, self.attrs, self.shape = path, attrs, tuple(shape)
        self.inputs = list(inputs)            # tensor names, in the node's input order
        self.in_shapes = [tuple(s) for s in in_shapes]
        self.opset = low.opset

    def node(self, op_type: str, inputs: list, role: str | None = None, shape=None,
             **attrs) -> str:
        """One ONNX node -> its output tensor; `shape` (no batch) records its value_info."""
        if role is None:
            return self._low.node(op_type, inputs, self.path, self._out, self.shape, **attrs)
        return self._low.node(op_type, inputs, f"{self.path}/{role}", shape=shape, **attrs)

    def weight(self, name: str) -> str:
        """The initialiser of the node's tensor `name` (as declared in register_op's weights)."""
        return self._low.weight(f"{self.path}.{name}")

    def const(self, role: str, value) -> str:
        """A constant that is not a weight (a reshape target, a bound) as a Constant node."""
        return self._low.const(f"{self.path}/{role}", value)


def missing_emitters(g: Graph) -> None:
    """Refuse a graph holding a plug-in op registered without an ONNX emitter (PluginError)."""
    for op in sorted({d["op"] for _, d in g.nodes()} - set(EMITTERS) - NOT_EMITTED):
        plugin = plugins.get(op)
        plugins.require(op, "ONNX", plugin and plugin.onnx)


def _onnx_pool_size(n, k, s, pad, ceil) -> int:
    """Output size by ONNX's shape-inference rule (ceil without PyTorch's start-inside rule)."""
    span = n + 2 * pad - k
    return (-(-span // s) if ceil else span // s) + 1


def _value_info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *shape])


def lower(g: Graph, state: dict, *, fold_bn: bool = False, opset: int = DEFAULT_OPSET,
          outputs: dict | None = None) -> onnx.ModelProto:
    """IR graph + weights (key -> float32 array, see onnx.weights.load_state) -> ModelProto.
    `outputs` ({name: node path}, in order) names the graph outputs; default {'output': g.output}
    (backbones: one output per feature, see api.to_onnx)."""
    check_opset(opset)
    missing_emitters(g)
    low = _Lowering(g, state, opset, fold_bn)
    inputs = []
    for p, d in g.nodes():
        if d["op"] == "input":
            low.tensor[p] = p
            inputs.append(_value_info(p, d["shape"]))
            continue
        low.emit(p, d)
    outputs = outputs or {"output": g.output}
    for name, node in outputs.items():
        out = low.tensor[node]
        if out in {i.name for i in inputs}:   # a network without ops still needs a node
            out = low.node("Identity", [out], name, shape=g.shape(node))
        _rename(low, out, name)
    graph = helper.make_graph(
        low.nodes, g.name, inputs,
        [_value_info(name, g.shape(node)) for name, node in outputs.items()],
        initializer=[numpy_helper.from_array(v, k) for k, v in low.inits.items()],
        value_info=[_value_info(k, s) for k, s in low.info.items() if k not in outputs])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="secompile",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets),
                              doc_string=f"{g.name}, lowered from the secompile IR"
                                         f"{' with BatchNorm folded' if fold_bn else ''}")
    helper.set_model_props(model, {"secompile.structural_hash": g.structural_hash(),
                                   "secompile.fold_bn": str(bool(fold_bn)).lower()})
    return model


def _rename(low: _Lowering, old: str, new: str) -> None:
    """Call the network's result `output` (a stable name for deployment code)."""
    for n in low.nodes:
        n.output[:] = [new if o == old else o for o in n.output]
        n.input[:] = [new if i == old else i for i in n.input]
    low.info.pop(old, None)


def check_opset(opset: int) -> None:
    top = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= top:
        raise ValueError(f"opset {opset} is not supported: use {MIN_OPSET}..{top}")


# -- files -------------------------------------------------------------------------------
def save(model: onnx.ModelProto, path: str) -> list[str]:
    """Write atomically; models over 2 GiB put their tensors in `<file>.data`. -> file names."""
    path = os.fspath(path)
    inits = model.graph.initializer
    if sum(len(t.raw_data) for t in inits) <= EXTERNAL_DATA_THRESHOLD:
        atomic_write(path, model.SerializeToString(deterministic=True))
        return [os.path.basename(path)]
    location = os.path.basename(path) + ".data"
    big = [t for t in inits if len(t.raw_data) >= EXTERNAL_MIN_TENSOR]
    chunks, offset = [], 0
    for t in big:   # 4 KiB-aligned offsets, so runtimes can mmap each tensor
        pad = -offset % 4096
        chunks += [b"\0" * pad, t.raw_data]
        offset += pad
        del t.external_data[:]
        for k, v in (("location", location), ("offset", str(offset)),
                     ("length", str(len(t.raw_data)))):
            t.external_data.add(key=k, value=v)
        offset += len(t.raw_data)
    raws = [t.raw_data for t in big]
    data_path = os.path.join(os.path.dirname(path), location)
    try:
        for t in big:
            t.data_location, t.raw_data = TensorProto.EXTERNAL, b""
        # the data first: a model never points at nothing
        atomic_write(data_path, b"".join(chunks))
        del chunks
        try:
            atomic_write(path, model.SerializeToString(deterministic=True))
        except BaseException:
            os.unlink(data_path)
            raise
    finally:   # give the caller's proto its tensors back
        for t, raw in zip(big, raws):
            t.data_location, t.raw_data = TensorProto.DEFAULT, raw
            del t.external_data[:]
    return [os.path.basename(path), location]
