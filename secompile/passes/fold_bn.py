"""Inference fusions read off the IR: which BatchNorms fold into their producer, and which
conv -> [BN] -> ReLU chains can run as one convolution with a ReLU post-op.

Both are decisions about the graph alone (op kinds and consumers), so every backend makes the
same ones: the ONNX backend folds `foldable_bn(g)` into its Conv/Gemm initialisers
(`to_onnx(fold_bn=True)`), `optimize_for_inference` folds the same BNs into the torch module's
convolutions and fuses `conv_chains(g)` into oneDNN convolutions. Neither changes the graph:
analyses and the unfused backends keep reading every node. `fold` is the arithmetic both use.
"""
from __future__ import annotations

from typing import NamedTuple

from ..ir.graph import Graph

FOLD_INTO = ("conv2d", "linear")


def foldable_bn(g: Graph) -> dict[str, str]:
    """BatchNorm path -> the conv2d/linear it folds into: its producer, read by nothing else
    (a value read elsewhere too must stay unnormalised) and not the network's output."""
    out = {}
    for p, d in g.nodes():
        if d["op"] != "batchnorm":
            continue
        src = d["inputs"][0]
        if g.op(src) in FOLD_INTO and g.consumers(src) == [p] and src != g.output:
            out[p] = src
    return out


def fold(weight, bias, gamma, beta, mean, var, eps: float):
    """The weight and bias of the conv/linear computing bn(layer(x)): W * s per output channel and
    (b - mean) * s + beta, with s = gamma / sqrt(var + eps). Arrays of numpy (ONNX backend) or
    torch (optimize_for_inference), given in float64 so folding adds no rounding of its own; a
    missing bias, gamma or beta is passed as zeros / ones by the caller."""
    s = gamma / (var + eps) ** 0.5
    return weight * s.reshape((-1,) + (1,) * (weight.ndim - 1)), (bias - mean) * s + beta


class ConvChain(NamedTuple):
    """A conv2d whose only reader is a ReLU, directly or through a BN that folds into it."""

    conv: str
    bn: str | None
    act: str


def conv_chains(g: Graph, kinds: tuple = ("relu",)) -> list[ConvChain]:
    """conv2d -> [foldable batchnorm] -> act (of `kinds`), each value read only by the next, in
    IR order: after folding, the act can run as the convolution's post-op (one pass over its
    output instead of two)."""
    folds = foldable_bn(g)
    chains = []
    for p, d in g.nodes():
        if d["op"] != "act" or d["attrs"]["kind"] not in kinds:
            continue
        src = d["inputs"][0]
        bn = src if src in folds else None
        conv = folds[bn] if bn else src
        if g.op(conv) == "conv2d" and g.consumers(src) == [p] and src != g.output:
            chains.append(ConvChain(conv, bn, p))
    return chains
