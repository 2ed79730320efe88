"""Memory from the IR alone: activations per node, inference peak, training peak.

    m = memory(graph, batch=8, dtype="fp32", optimizer="sgd")
    m.activations["stages.0.blocks.0.branch.conv1.conv"]   # bytes of that node's output
    m.train_peak, m.inference_peak                           # bytes

The model is a simulation of what PyTorch keeps, run over `Graph.order` (the torch backend
frees every value after its last reader, as the generated forward does):

- inference (no_grad): the weights plus, at each node, every output still to be read;
- training: parameters, buffers, optimizer state (SGD momentum: 1 x params, AdamW: 2 x), the
  tensors autograd saves for backward (`SAVES`: conv and linear keep their input, BN its
  input, ReLU/sigmoid/softmax their output, SiLU/GELU/hard-swish their input, the SE scale
  both factors, max pool its input and int64 indices...), then backward in reverse order:
  each node allocates its inputs' gradients and its parameters' gradients, and frees its
  output's gradient and the saved tensors no earlier node still needs. The peak is the
  largest total at any step of either pass.

Views (flatten, identity, slices) and in-place ReLUs share their input's storage. dtype:
"fp32", or "bf16"/"fp16" autocast (activations in 16 bits except softmax/layer norm outputs,
fp32 master weights, gradients and optimizer state, plus autocast's 16-bit copies of conv and
linear weights). Measured against torch's allocator on CPU in tests/analysis/test_memory.py
(tolerance and reasons there and in docs/counting.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from ..ir import ops
from ..ir.graph import Graph

DTYPES = {"fp32": 4, "bf16": 2, "fp16": 2}
OPTIMIZERS = {"none": 0, "sgd": 1, "adamw": 2}        # fp32 state tensors per parameter
_FP32_UNDER_AUTOCAST = {"softmax", "layernorm"}
_VIEWS = {"flatten", "identity", "channel_slice", "split_select", "select"}
# what each op keeps for backward: "in" (its inputs), "out" (its output), "" (nothing)
SAVES = {
    "conv2d": "in", "linear": "in", "batchnorm": "in", "layernorm": "in", "channel_conv": "in",
    "avgpool2d": "in", "maxpool2d": "in", "mul": "in", "scale_add": "in", "layer_scale": "in",
    "attn_pool": "in", "softmax": "out", "add": "", "concat": "", "flatten": "",
    "identity": "", "channel_shuffle": "", "channel_slice": "", "split_sum": "",
    "split_select": "", "select": "", "partial_add": "", "input": "", "dropout": "",
    "drop_path": "",
}
_ACT_SAVES = {"relu": "out", "sigmoid": "out", "tanh": "out"}   # the others keep their input


@dataclass
class Memory:
    batch: int
    dtype: str
    optimizer: str
    activations: dict = field(default_factory=dict)   # node -> bytes of its output
    params: int = 0          # bytes (fp32)
    buffers: int = 0         # BN running statistics (fp32)
    optimizer_state: int = 0
    saved: int = 0           # bytes autograd keeps at the end of the forward
    inference_peak: int = 0
    train_peak: int = 0

    @property
    def activations_total(self) -> int:
        return sum(self.activations.values())

    def as_dict(self) -> dict:
        return {"batch": self.batch, "dtype": self.dtype, "optimizer": self.optimizer,
                "activations": self.activations_total, "params": self.params,
                "buffers": self.buffers, "gradients": self.params,
                "optimizer_state": self.optimizer_state, "saved_for_backward": self.saved,
                "inference_peak": self.inference_peak, "train_peak": self.train_peak}


def _saves(g: Graph, node: str) -> str:
    op = g.op(node)
    if op == "act":
        return _ACT_SAVES.get(g.node(node)["attrs"].get("kind"), "in")
    if op == "global_pool":
        return "" if g.node(node)["attrs"].get("mode") == "avg" else "in"
    return SAVES.get(op, "in")          # an op not listed (a plug-in): its inputs, to be safe


def memory(g: Graph, batch: int = 1, dtype: str = "fp32", optimizer: str = "sgd") -> Memory:
    """Activation bytes per node and the inference / training peaks for `batch` images."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype is one of {', '.join(DTYPES)}, not {dtype!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer is one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    order = g.order
    m = Memory(batch, dtype, optimizer)
    nodes = g.g.nodes
    weights: dict[str, int] = {}         # node -> parameter bytes
    cast_copies = 0                      # autocast's 16-bit conv/linear weights
    for p in order:
        d = nodes[p]
        ins = [nodes[i]["shape"] for i in d["inputs"]]
        n_params = ops.params(d["op"], d["attrs"], ins)
        n_all = sum(prod(s) for s in ops.OPS[d["op"]].tensors(d["attrs"], ins).values())
        weights[p] = 4 * n_params
        m.params += 4 * n_params
        m.buffers += 4 * (n_all - n_params)
        if dtype != "fp32" and d["op"] in ("conv2d", "linear"):
            cast_copies += DTYPES[dtype] * n_params
        elt = 4 if dtype == "fp32" or d["op"] in _FP32_UNDER_AUTOCAST else DTYPES[dtype]
        m.activations[p] = batch * prod(d["shape"]) * elt
    m.optimizer_state = OPTIMIZERS[optimizer] * m.params
    storage = _storages(g, order)
    base = m.params + m.buffers
    m.inference_peak = base + _forward_peak(g, order, storage, m.activations, train=False)[0]
    fwd_peak, kept = _forward_peak(g, order, storage, m.activations, train=True)
    m.saved = sum(m.activations[s] for s in kept)
    extra = 0
    for p in order:                      # max pool's int64 indices, kept for backward too
        if g.op(p) == "maxpool2d":
            extra += batch * prod(nodes[p]["shape"]) * 8
    m.saved += extra
    bwd_peak = _backward_peak(g, order, storage, m.activations, kept, weights) + extra
    transient = max(weights.values(), default=0) if optimizer == "adamw" else 0
    m.train_peak = (base + m.optimizer_state + cast_copies
                    + max(fwd_peak + extra, bwd_peak, m.params + transient))
    return m


def _storages(g: Graph, order: list[str]) -> dict[str, str]:
    """node -> the node whose storage holds its output (views and in-place ReLUs alias)."""
    root: dict[str, str] = {}
    for p in order:
        d = g.node(p)
        ins = d["inputs"]
        inplace = (d["op"] == "act" and d["attrs"].get("kind") == "relu" and len(ins) == 1
                   and len(g.consumers(ins[0])) == 1 and ops.OPS[g.op(ins[0])].fresh
                   and g.op(ins[0]) != "input")
        root[p] = root[ins[0]] if (d["op"] in _VIEWS or inplace) and ins else p
    return root


def _saved_storages(g: Graph, node: str, storage: dict) -> list[str]:
    how = _saves(g, node)
    if how == "in":
        return [storage[i] for i in g.node(node)["inputs"]]
    if how == "out":
        return [storage[node]]
    return []


def _transient(g: Graph, node: str, size: dict) -> int:
    """Scratch memory while a node runs: a CPU convolution (oneDNN) works in a blocked layout
    and reorders into the output, so a copy of its input and of its output lives meanwhile."""
    if g.op(node) != "conv2d":
        return 0
    return size[node] + sum(size[i] for i in g.node(node)["inputs"])


def _forward_peak(g, order, storage, size, train: bool) -> tuple[int, set]:
    """-> (the largest bytes of live activations during the forward, storages kept)."""
    last_read: dict[str, int] = {}
    for i, p in enumerate(order):
        for x in g.node(p)["inputs"]:
            last_read[storage[x]] = i
    live: set[str] = set()
    kept: set[str] = {storage[order[0]]}        # the input: its caller holds it throughout
    peak = 0
    for i, p in enumerate(order):
        live.add(storage[p])
        peak = max(peak, sum(size[s] for s in live) + _transient(g, p, size))
        if train:
            kept.update(_saved_storages(g, p, storage))
        live = {s for s in live if last_read.get(s, len(order)) > i or s in kept}
    return peak, kept


def _backward_peak(g, order, storage, size, kept, weights) -> int:
    """The largest bytes during backward: saved tensors, live gradients, parameter gradients."""
    # the last (in backward order: earliest in forward) node that needs each saved storage
    needed_until: dict[str, int] = {}
    for i, p in enumerate(order):
        for s in _saved_storages(g, p, storage):
            needed_until.setdefault(s, i)
    saved = set(kept)
    grads: dict[str, int] = {order[-1]: size[order[-1]]}   # node -> bytes of d(loss)/d(output)
    param_grads = 0
    peak = 0
    for i in range(len(order) - 1, -1, -1):
        p = order[i]
        if p not in grads:
            continue
        for x in g.node(p)["inputs"]:
            if g.op(x) != "input":
                grads[x] = size[x]           # accumulated in one buffer per value
        param_grads += weights[p]
        live = sum(size[s] for s in saved) + sum(grads.values()) + param_grads
        peak = max(peak, live)
        del grads[p]
        saved = {s for s in saved if needed_until.get(s, -1) < i}
    return peak


# -- for reports and sweeps ----------------------------------------------------------------------
def report_section(m: Memory, per_node: bool = True) -> dict:
    """The `memory` object of report.json / `count --json --batch N`."""
    out = m.as_dict()
    if per_node:
        out["per_node"] = dict(m.activations)
    return out


def sweep_metrics(g: Graph, batch: int = 1, dtype: str = "fp32",
                  optimizer: str = "sgd") -> dict[str, int]:
    """Metric name -> bytes, for a sweep's columns and `--where 'train_mem < 24GiB'` (the
    sweep engine calls this; compare with parse_bytes)."""
    m = memory(g, batch, dtype, optimizer)
    return {"train_mem": m.train_peak, "infer_mem": m.inference_peak,
            "act_mem": m.activations_total}


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """'24GiB' -> 25769803776, '1.5 GB' -> 1500000000, '4096' -> 4096."""
    import re
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"a memory size is a number and a unit (B, KB, MB, GB, KiB, MiB, "
                         f"GiB...), not {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
