"""Shared checks of the property tests."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import secompile
from secompile.analysis.counts import Counts
from secompile.backends.torch import trace_shapes
from secompile.ir.ops import CONV_LINEAR_OPS

BATCH = 2


def ir_shapes(g) -> dict:
    return {p: tuple(g.shape(p)) for p in g.order if p != "input"}


def compiled(spec, seed: int = 0):
    """-> (IR, module in eval mode with random BatchNorm statistics, an input batch)."""
    g = secompile.build_ir(spec)
    model = secompile.compile(spec, seed=seed).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    x = torch.randn(BATCH, *g.input_shape, generator=gen)
    return g, model, x


def own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def counts(g) -> Counts:
    return Counts(g)


def strip_se(g) -> dict:
    """The IR's to_dict() without the modules SE rules inserted (a spec's own attention layers
    stay): every consumer of an SE scale reads its input."""
    d = g.to_dict()
    scopes = tuple(s + "." for s, a in g.attention.items() if a.rule is not None)
    se_nodes = {n["path"] for n in d["nodes"] if n["path"].startswith(scopes)}
    scale_in = {n["path"]: n["inputs"][0] for n in d["nodes"] if n["path"] in se_nodes and n["op"] == "mul"}

    def source(p):
        while p in scale_in:
            p = scale_in[p]
        return p
    kept = [{**n, "inputs": [source(i) for i in n["inputs"]]} for n in d["nodes"] if n["path"] not in se_nodes]
    return {**d, "nodes": kept, "output": source(d["output"])}


__all__ = ["BATCH", "ir_shapes", "compiled", "own_params", "counts", "strip_se", "trace_shapes"]


def check_params_and_macs(g, model, x):
    """params == numel (per node and in total); conv/linear MACs == FlopCounterMode / 2 (per node
    and in total). Returns the model's output for `x` (as numpy)."""
    c = counts(g)
    assert sum(p.numel() for p in model.parameters()) == c.total.params
    modules = dict(model.named_modules())
    for path, d in g.nodes():
        if c.nodes[path].params:
            assert own_params(modules[path]) == c.nodes[path].params, path
    flops = FlopCounterMode(display=False)
    with flops, torch.no_grad():
        out = model(x).numpy()
    per_module = flops.get_flop_counts()
    prefix = type(model).__name__ + "."
    for path, d in g.nodes():
        if d["op"] in CONV_LINEAR_OPS:
            got = sum(per_module.get(prefix + path, {}).values())
            assert got == 2 * BATCH * c.nodes[path].macs, (path, got, c.nodes[path].macs)
    total = sum(per_module.get("Global", {}).values())
    assert total == 2 * BATCH * c.by_op(*CONV_LINEAR_OPS).macs
    return out
