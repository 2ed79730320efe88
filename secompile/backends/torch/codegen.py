"""PyTorch backend: lower the IR to nested nn.Modules with generated, straight-line forwards.

Each top-level unit of the IR (stem, every block, layer stages, head) becomes a `Unit`
module whose children mirror the node paths (so `state_dict` keys read like the IR:
`stages.0.blocks.0.branch.conv1.conv.weight`) and whose `forward` is Python source
generated once from the graph, like torch.fx's codegen: no graph interpretation per
call, readable (`print(unit.code)`), friendly to torch.compile and torch.export.

Ops with weights or state are modules; parameter-free ops are inline tensor code, one
emitter per op in `EMITTERS`. The forward runs the graph after `passes.fuse`, so an SE
scale feeding a residual add is one `torch.addcmul` (the reference Caffe models' Axpy
layer): one pass over memory instead of two.

Over 400 lines on purpose: the emitter table is one entry per op of the registry (the rule:
one emitter per op per backend), kept beside the code generator that calls it.
"""
from __future__ import annotations

import hashlib
import keyword
import linecache
import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ...ir import plugins
from ...ir.graph import Graph
from ...ir.ops import OPS, eca_padding
from ...passes.fuse import fuse_scale_add

_ACT_MODULES = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "hard_swish": nn.Hardswish}
_ACT_INLINE = {"sigmoid": "{}.sigmoid()", "tanh": "{}.tanh()", "hard_sigmoid": "F.hardsigmoid({})",
               "gelu": "F.gelu({})"}
_FN_CACHE: dict = {}


class Scope(nn.Module):
    """A container for a named scope of the IR (no forward of its own).

    Children are named by the spec, and a name may also be an attribute of nn.Module
    ('training', 'forward', 'to', ...): such a child lives in `_modules` only (generated code
    reads it as `self._modules['to']`), and the attribute keeps its own value beside it.
    """

    def __setattr__(self, name, value):
        modules = self.__dict__.get("_modules")
        if modules is not None and name in modules and not isinstance(value, nn.Module):
            # e.g. train() setting `training` next to a child 'training'
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, *args):  # pragma: no cover - never called
        raise RuntimeError("a Scope only groups modules; call its parent unit")


def _compile_source(src: str):
    fn = _FN_CACHE.get(src)
    if fn is None:
        name = f"<secompile-{hashlib.sha1(src.encode()).hexdigest()[:12]}>"
        # tracebacks show the code
        linecache.cache[name] = (len(src), None, src.splitlines(True), name)
        ns = {"torch": torch, "F": F}
        exec(compile(src, name, "exec"), ns)  # our own generated source, never user text
        fn = _FN_CACHE[src] = (ns["forward"], ns["probe"])
    return fn


class Unit(Scope):
    """One unit of the network (stem, a block, a layer stage, the head)."""

    def __init__(self, path: str, code: str):
        super().__init__()
        self.path = path
        self.code = code
        self._fwd, self._probe = _compile_source(code)

    def forward(self, x):
        return self._fwd(self, x)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_fwd", None)
        state.pop("_probe", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fwd, self._probe = _compile_source(self.code)

    def extra_repr(self) -> str:
        return f"path={self.path!r}"


class Stage(nn.Module):
    def __init__(self, blocks: list[Unit]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x)


class _IR:
    """The graph a module was lowered from. A plain attribute (not in the state_dict), pickled
    with the module (tens of kB) and shared by deep copies: a lowered graph is never changed
    (passes copy first), and copying it would add ~15% to deep-copying a ResNet-50."""

    __slots__ = ("graph",)

    def __init__(self, graph: Graph):
        self.graph = graph

    def __deepcopy__(self, memo):
        return self


class CompiledNet(nn.Module):
    """The network: stem -> stages -> head, as the spec names them. `graph` is the IR it was
    lowered from: node paths are child module paths (unit path + the node's path in it)."""

    def __init__(self, name: str, stem: nn.Module, stages: list[nn.Module], head: nn.Module,
                 graph: Graph | None = None):
        super().__init__()
        self.name = name
        self.stem = stem
        self.stages = nn.Sequential(*stages)
        self.head = head
        self._ir = _IR(graph)

    @property
    def graph(self) -> Graph | None:
        ir = self.__dict__.get("_ir")     # None in a module pickled before graphs were kept
        return ir.graph if ir is not None else None

    def forward_features(self, x):
        return self.stages(self.stem(x))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


# -- one emitter per op: its module (weights or state), and the expression of its forward --
class _Node:
    """What an emitter sees of one IR node inside a unit's forward."""

    def __init__(self, g: Graph, path: str, ins: list[str], call: str, pos: dict):
        d = g.node(path)
        self.g, self.path, self.a, self.shape = g, path, d["attrs"], d["shape"]
        self.ins = ins          # variable names of the inputs
        self.call = call        # the node's child module, e.g. self.branch.conv1.conv
        self.pos = pos          # unit node path -> position in the forward


class TorchOp(NamedTuple):
    expr: Callable[[_Node], str]
    # (attrs, input shape) -> the node's child module, or None: inline code only
    module: Callable[[dict, tuple], nn.Module | None] = lambda a, in_shape: None


def _call(n: _Node) -> str:
    return f"{n.call}({n.ins[0]})"


def _act_expr(n: _Node) -> str:
    kind = n.a["kind"]
    return _call(n) if kind in _ACT_MODULES else _ACT_INLINE[kind].format(n.ins[0])


def _global_pool_expr(n: _Node) -> str:
    fn = "mean" if n.a["mode"] == "avg" else "amax"
    return f"{n.ins[0]}.{fn}((2, 3){', keepdim=True' if n.a['keepdim'] else ''})"


def _shuffle_expr(n: _Node) -> str:
    gr = n.a["groups"]
    return f"{n.ins[0]}.unflatten(1, ({gr}, {n.shape[0] // gr})).transpose(1, 2).flatten(1, 2)"


def _add_expr(n: _Node) -> str:
    ins = n.ins
    scales = n.a.get("scales") or (1.0,) * len(ins)
    if len(ins) == 2 and scales[0] == 1.0 and scales[1] != 1.0:
        return f"torch.add({ins[0]}, {ins[1]}, alpha={scales[1]!r})"
    return " + ".join(name if s == 1.0 else f"{name} * {s!r}" for name, s in zip(ins, scales))


def _scale_add_expr(n: _Node) -> str:
    """other + u * s in one pass, into a new tensor whatever the grad mode: u is a module's output
    (the branch's last BN, or its conv once BN is folded), which a forward hook may hold, so it
    is never overwritten (issue 19). The allocation costs ~15% of this op (~0.5 ms of 130 ms for
    SE-ResNeXt-50 at batch 1, 1 thread) and the allocator reuses the block's freed buffers."""
    other, u, s = n.ins
    return f"torch.addcmul({other}, {u}, {s})"


def _channel_conv_expr(n: _Node) -> str:
    """ECA: the pooled channels as a 1-D signal, (B, 1, C), through Conv1d(1, 1, k)."""
    c_in = n.g.shape(n.g.inputs(n.path)[0])[0]
    rest = "".join(f", {d}" for d in n.shape[1:])
    return f"{n.call}({n.ins[0]}.reshape(-1, 1, {c_in})).reshape(-1, {n.shape[0]}{rest})"


def _select_expr(n: _Node) -> str:
    """Selective Kernel: softmax across the paths of path-major logits, weighted sum (timm)."""
    logits, *branches = n.ins
    paths, c = n.a["paths"], n.shape[0]
    return (f"(torch.stack([{', '.join(branches)}], 1) * "
            f"{logits}.reshape(-1, {paths}, {c}, 1, 1).softmax(1)).sum(1)")


def _mean_max(x: str, dims: str, cat: int) -> str:
    """[mean ; max] over `dims`, stacked on axis `cat` (CBAM's descriptors, mean first)."""
    return f"torch.cat([{x}.mean({dims}, keepdim=True), {x}.amax({dims}, keepdim=True)], {cat})"


def _slice_expr(n: _Node) -> str:
    start = n.a["start"]
    return f"{n.ins[0]}[:, {start}:{start + n.a['size']}]"


class DropPath(nn.Module):
    """Stochastic depth per sample (timm.layers.drop_path): in training each sample's branch is
    dropped with probability p and kept ones scaled by 1 / (1 - p); the identity in eval."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels at each position of (N, C, H, W) (timm LayerNorm2d); a plain
    LayerNorm on (N, C)."""

    def forward(self, x):
        if x.dim() != 4:
            return super().forward(x)
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class LayerScale2d(nn.Module):
    """x * gamma per channel (timm LayerScale2d; gamma starts at `init`)."""

    def __init__(self, channels: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x):
        return x * self.gamma.reshape((-1,) + (1,) * (x.dim() - 2))


def _softmax_expr(n: _Node) -> str:
    x = n.ins[0]
    return f"{x}.softmax(1)" if n.a["axis"] == "channels" else \
        f"{x}.flatten(2).softmax(-1).reshape({x}.shape)"


def _attn_pool_expr(n: _Node) -> str:
    """GC's context: (N, C, HW) @ (N, HW, 1) -> (N, C, 1, 1)."""
    x, w = n.ins
    return f"torch.matmul({x}.flatten(2), {w}.flatten(2).transpose(1, 2)).unsqueeze(-1)"


def _split_select_expr(n: _Node) -> str:
    """timm SplitAttn + RadixSoftmax: softmax across the P splits (logits cardinality-major
    when groups > 1), the weighted sum of the splits; P = 1 gates with a sigmoid."""
    x, logits = n.ins
    p, c, gr = n.a["parts"], n.shape[0], n.a["groups"]
    if p == 1:
        return f"{x} * {logits}.sigmoid()"
    w = f"{logits}.reshape(-1, {p}, {c}, 1, 1)" if gr == 1 else \
        f"{logits}.reshape(-1, {gr}, {p}, {c // gr}).transpose(1, 2).reshape(-1, {p}, {c}, 1, 1)"
    return f"({x}.unflatten(1, ({p}, {c})) * {w}.softmax(1)).sum(1)"


def _partial_add_expr(n: _Node) -> str:
    short, branch = n.ins
    cs = n.g.shape(n.g.inputs(n.path)[0])[0]
    if cs == n.shape[0]:
        return f"{branch} + {short}"
    return f"torch.cat([{branch}[:, :{cs}] + {short}, {branch}[:, {cs}:]], 1)"


def _conv2d(a, s):
    return nn.Conv2d(s[0], a["out"], a["kernel"], a["stride"], a["padding"], a["dilation"],
                     a["groups"], bias=a["bias"])


def _batchnorm(a, s):
    cls = nn.BatchNorm2d if len(s) == 3 else nn.BatchNorm1d
    return cls(s[0], eps=a["eps"], momentum=a["momentum"])


def _avgpool2d(a, s):
    return nn.AvgPool2d(a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"],
                        count_include_pad=a["count_include_pad"])


def _act(a, s):
    return _ACT_MODULES[a["kind"]]() if a["kind"] in _ACT_MODULES else None


EMITTERS: dict[str, TorchOp] = {
    "conv2d": TorchOp(_call, _conv2d),
    "batchnorm": TorchOp(_call, _batchnorm),
    "linear": TorchOp(_call, lambda a, s: nn.Linear(s[0], a["out"], bias=a["bias"])),
    "maxpool2d": TorchOp(_call, lambda a, s: nn.MaxPool2d(a["kernel"], a["stride"], a["padding"],
                                                          ceil_mode=a["ceil_mode"])),
    "avgpool2d": TorchOp(_call, _avgpool2d),
    "dropout": TorchOp(_call, lambda a, s: nn.Dropout(a["p"])),
    "act": TorchOp(_act_expr, _act),
    "global_pool": TorchOp(_global_pool_expr),
    "flatten": TorchOp(lambda n: f"{n.ins[0]}.flatten(1)"),
    "identity": TorchOp(lambda n: n.ins[0]),
    "concat": TorchOp(lambda n: f"torch.cat([{', '.join(n.ins)}], 1)"),
    "mul": TorchOp(lambda n: f"{n.ins[0]} * {n.ins[1]}"),
    "channel_shuffle": TorchOp(_shuffle_expr),
    "add": TorchOp(_add_expr),
    "scale_add": TorchOp(_scale_add_expr),   # passes/fuse.py
    "channel_conv": TorchOp(_channel_conv_expr, lambda a, s: nn.Conv1d(
        1, 1, a["kernel"], padding=eca_padding(a), bias=False)),
    "dual_pool": TorchOp(lambda n: _mean_max(n.ins[0], "(2, 3)", 2)),
    "spatial_sum": TorchOp(lambda n: f"{n.ins[0]}.sum((2, 3), keepdim=True)"),
    "channel_pool": TorchOp(lambda n: _mean_max(n.ins[0], "1", 1)),
    "select": TorchOp(_select_expr),
    "channel_slice": TorchOp(_slice_expr),
    "drop_path": TorchOp(_call, lambda a, s: DropPath(a["p"])),
    "softmax": TorchOp(_softmax_expr),
    "layernorm": TorchOp(_call, lambda a, s: LayerNorm2d(s[0], eps=a["eps"])),
    "attn_pool": TorchOp(_attn_pool_expr),
    "layer_scale": TorchOp(_call, lambda a, s: LayerScale2d(s[0], a["init"])),
    "split_sum": TorchOp(lambda n: f"{n.ins[0]}.unflatten(1, ({n.a['parts']}, {n.shape[0]}))"
                                   ".sum(1)"),
    "split_select": TorchOp(_split_select_expr),
    "partial_add": TorchOp(_partial_add_expr),
}
NOT_EMITTED = {"input"}   # the graph's input is the first unit's argument


def _plugin_module(plugin: plugins.Plugin, a: dict, ins: list) -> nn.Module:
    """The registered factory's module, refused unless its tensors are the declared ones (the
    counts and the ONNX weight check read the declaration)."""
    mod = plugin.torch(a, ins)
    if not isinstance(mod, nn.Module):
        raise plugins.PluginError(f"op {plugin.name!r} (registered by {plugin.owner}): torch "
                                  f"gave {type(mod).__name__}, not an nn.Module")
    have = {k: tuple(v.shape) for k, v in mod.state_dict().items()}
    want = plugin.opdef.tensors(a, ins)
    if have != want:
        diff = sorted(set(have.items()) ^ set(want.items()))
        raise plugins.PluginError(
            f"op {plugin.name!r} (registered by {plugin.owner}): the torch module's tensors "
            f"differ from the declared weights at {diff[0][0]!r}: module "
            f"{have.get(diff[0][0], 'none')}, declared {want.get(diff[0][0], 'none')}")
    return mod


def emitter(op: str) -> TorchOp:
    """The op's emitter: built in, or a registered plug-in's module called on the node's input."""
    if op in EMITTERS:
        return EMITTERS[op]
    plugin = plugins.get(op)
    plugins.require(op, "torch", plugin and plugin.torch)
    return TorchOp(lambda n: f"{n.call}({', '.join(n.ins)})",
                   lambda a, s: _plugin_module(plugin, a, [s]))


# Names a child cannot be registered (add_module) or read (attribute access) by.
_TAKEN = frozenset(dir(Unit)) | frozenset(vars(nn.Module())) | {"path", "code", "_fwd", "_probe"}


def _plain_name(seg: str) -> bool:
    return seg.isidentifier() and not keyword.iskeyword(seg) and seg not in _TAKEN


def _attr_chain(rel: str) -> str:
    out = "self"
    for seg in rel.split("."):
        out += f".{seg}" if _plain_name(seg) else f"._modules[{seg!r}]"
    return out


def _add_child(parent: nn.Module, name: str, mod: nn.Module) -> None:
    if name in _TAKEN:
        parent._modules[name] = mod   # add_module refuses the names of attributes
    else:
        parent.add_module(name, mod)


def _var(rel: str, used: set) -> str:
    v = "".join(ch if ch.isalnum() else "_" for ch in rel).strip("_") or "t"
    if v[0].isdigit() or keyword.iskeyword(v):
        v = "t_" + v
    base, k = v, 1
    while v in used:
        k += 1
        v = f"{base}_{k}"
    used.add(v)
    return v


def _inplace_ok(g: Graph, src: str, unit_input: str) -> bool:
    """ReLU may overwrite its input when that is a new tensor nothing else reads (props-6)."""
    return src != unit_input and len(g.consumers(src)) == 1 and OPS[g.op(src)].fresh


def _dead_after(g: Graph, nodes: list[str], x_in: str, out: str) -> dict[int, list[str]]:
    """Position in `nodes` -> the values last read there, from the graph's consumers (as torch.fx
    does). Setting them to None there lets the allocator reuse a block's intermediates at once
    instead of when the block returns (peak forward memory of SE-ResNeXt-50 at batch 32: -46%;
    CPU page faults per forward at batch 8: 35k -> 1k)."""
    pos = {p: i for i, p in enumerate(nodes)}
    dead: dict[int, list[str]] = {}
    for v in [x_in] + nodes:
        readers = [pos[c] for c in g.consumers(v) if c in pos]
        if readers and v != out:
            dead.setdefault(max(readers), []).append(v)
    return dead


def _unit_source(g: Graph, unit: str, nodes: list[str], x_in: str, out: str, probe: bool) -> str:
    """Python source of `forward(self, x)` (or `probe(self, x, rec)`, which records every
    node's output and frees nothing) for one unit."""
    rel = lambda p: p[len(unit) + 1:] if p.startswith(unit + ".") else p  # noqa: E731
    used = {"x", "self", "torch", "F", "rec"}
    names = {x_in: "x"}
    pos = {p: i for i, p in enumerate(nodes)}
    dead = {} if probe else _dead_after(g, nodes, x_in, out)
    lines = []
    for i, p in enumerate(nodes):
        node = _Node(g, p, [names[s] for s in g.inputs(p)], _attr_chain(rel(p)), pos)
        v = names[p] = _var(rel(p), used)
        lines.append(f"    {v} = {emitter(g.op(p)).expr(node)}")
        if probe:
            lines.append(f"    rec[{rel(p)!r}] = {v}")  # unit-relative: identical blocks share code
        if i in dead:
            lines.append("    " + "; ".join(f"{names[d]} = None" for d in dead[i]))
    head = "def probe(self, x, rec):" if probe else "def forward(self, x):"
    return "\n".join([head] + lines + [f"    return {names[out]}", ""])


def _unit_nodes(g: Graph) -> dict:
    units = {u: [] for u in g.units}
    for p in g.order:
        u = g.unit_of(p)
        if u is not None:
            units[u].append(p)
    return units


def _build_unit(g: Graph, fused: Graph, unit: str, nodes: list[str], fused_nodes: list[str]):
    """The unit's forward runs the fused graph; its probe records every node of the plain one."""
    inside = set(nodes)
    x_in = {i for p in nodes for i in g.inputs(p) if i not in inside}
    if len(x_in) != 1:
        raise ValueError(f"unit {unit} reads {sorted(x_in)}; units take one input")
    x_in = x_in.pop()
    outs = [p for p in nodes if p == g.output or any(c not in inside for c in g.consumers(p))]
    if len(outs) != 1:
        raise ValueError(f"unit {unit} has outputs {outs}; units give one output")
    code = _unit_source(fused, unit, fused_nodes, x_in, outs[0], probe=False) + "\n\n" + \
        _unit_source(g, unit, nodes, x_in, outs[0], probe=True)
    m = Unit(unit, code)
    for p in fused_nodes:
        d = fused.node(p)
        in_shape = fused.shape(d["inputs"][0]) if d["inputs"] else ()
        mod = emitter(d["op"]).module(d["attrs"], in_shape)
        if mod is None:
            continue
        if d["op"] == "act" and d["attrs"]["kind"] == "relu" and \
                _inplace_ok(fused, d["inputs"][0], x_in):
            mod = nn.ReLU(inplace=True)
        parent = m
        segs = p[len(unit) + 1:].split(".")
        for seg in segs[:-1]:
            if seg not in parent._modules:
                _add_child(parent, seg, Scope())
            parent = parent._modules[seg]
        _add_child(parent, segs[-1], mod)
    return m


def init_weights(model: nn.Module, seed: int | None = None,
                 zero_init_last_bn: bool = False) -> nn.Module:
    """He ("MSRA") initialisation as in the paper; BN to identity; biases to zero.

    Convs draw from normal(0, sqrt(2 / fan_out)) with fan_out = k_h * k_w * out_channels // groups:
    He's fan-out rule (kaiming_normal_, mode fan_out, relu) counted per group, as timm's
    EfficientNet/MobileNet/RegNet init does. Each output of a grouped or depthwise conv sums over
    only in_channels // groups inputs; without the division a depthwise 3x3 starts C times too
    small, and a stack of them (MBConv blocks) shrinks the signal to ~1e-14 by the head.
    """
    def _init():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.weight.shape[0] * m.weight[0][0].numel() // m.groups
                with torch.no_grad():   # the formula of kaiming_normal_: same draws at groups 1
                    m.weight.normal_(0, math.sqrt(2.0) / math.sqrt(fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv1d):
                # ECA's channel conv: PyTorch's default, as timm keeps it
                m.reset_parameters()             # (inside the seeded fork: reproducible)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))  # PyTorch's default fan-in rule
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    if seed is None:
        _init()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _init()
    if zero_init_last_bn:
        for unit in model.modules():
            if isinstance(unit, Unit) and hasattr(unit, "branch"):
                bns = [m for m in unit.branch.modules() if isinstance(m, nn.BatchNorm2d)]
                if bns:
                    nn.init.zeros_(bns[-1].weight)
    return model


def lower(g: Graph, seed: int | None = None, zero_init_last_bn: bool = False) -> CompiledNet:
    """IR graph -> CompiledNet (He-initialised; deterministic when `seed` is given)."""
    fused = fuse_scale_add(g)
    by_unit, fused_by_unit = _unit_nodes(g), _unit_nodes(fused)
    units = {u: _build_unit(g, fused, u, nodes, fused_by_unit[u])
             for u, nodes in by_unit.items() if nodes}
    stages = []
    for st in g.stages:
        if st.path in units:
            stages.append(units[st.path])
        else:
            stages.append(Stage([units[b] for b in st.blocks if b in units]))
    model = CompiledNet(g.name, units.get("stem", nn.Identity()), stages,
                        units.get("head", nn.Identity()), graph=g)
    return init_weights(model, seed, zero_init_last_bn)


@torch.no_grad()
def trace_shapes(model: CompiledNet, x: torch.Tensor) -> dict:
    """Run the model recording every IR node's output shape (batch dimension dropped)."""
    shapes: dict = {}
    for u in (m for m in model.modules() if isinstance(m, Unit)):
        rec: dict = {}
        x = u._probe(u, x, rec)
        shapes.update({f"{u.path}.{k}": tuple(v.shape[1:]) for k, v in rec.items()})
    return shapes
