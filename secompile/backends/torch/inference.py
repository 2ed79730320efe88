"""Inference compilation of a compiled module: `optimize_for_inference(model, example_input)`.

Works on the module the torch backend returns (a `CompiledNet` of `Unit`s whose generated
forwards call child modules), never on the code generator: a transformation of modules only.

1. Decisions from the IR. The module carries the graph it was lowered from (`model.graph`);
   which BNs fold and which ReLUs fuse are graph queries shared with the ONNX backend
   (`passes.fold_bn`: `foldable_bn`, `conv_chains`), and a node's module is found by its path
   (unit path + the node's path inside the unit). The generated code is never read back.
2. BN folding. A BatchNorm reading a conv/linear output that nothing else reads is folded
   into that layer (W * s per output channel, bias (b - mean) * s + beta, s = gamma /
   sqrt(var + eps), in float64) and replaced by `Folded`, an identity: the generated code
   still calls it, nothing is computed.
3. oneDNN convolutions (CPU, float32). Eager `conv2d` reorders the plain weight into oneDNN's
   blocked layout at every call; `OneDNNConv` keeps the reordered copy and calls oneDNN's
   fused convolution, with a ReLU that reads only its output (through a folded BN) as a
   post-op: the ReLU module becomes `Folded` too, one pass over the output instead of two.
4. Memory format: channels_last or contiguous (NCHW) for the input and the weights, chosen by
   the device and batch size of `example_input` (`memory_format="auto"`, see
   `choose_memory_format`), by timing both on it ("measure"), or forced.
5. No autograd: parameters have requires_grad False, and the forward runs in
   `torch.inference_mode()`, so the fused SE scale + add writes into the branch output and
   in-place ReLUs stay in place.

The SE scale + residual add stays the backend's fused `torch.addcmul`.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from ...ir.graph import Graph
from ...passes.fold_bn import conv_chains, fold, foldable_bn
from .codegen import CompiledNet, Unit
from .kernels import (
    FUSED_ACTS,
    MatmulConv,
    OneDNNConv,
    merged_groups,
    retain_freed_memory,
    tracing,
)

# CPU, eager convs (onednn=False): channels_last from this batch size on. Issue 16 measured the
# hand-written SE-ResNeXt-50 (2 threads): NHWC costs ~10% at batch 1, saves at batch 8; 4 is
# a guess between the two, not a measured crossover.
CHANNELS_LAST_MIN_BATCH = 4
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


class Folded(nn.Identity):
    """What is left of a BatchNorm folded into its conv, or of a ReLU fused into its conv."""

    def __init__(self, into: str, what: str):
        super().__init__()
        self.into = into
        self.what = what

    def extra_repr(self) -> str:
        return f"{self.what} folded into {self.into}"


def matmul_conv(g: Graph, path: str) -> bool:
    """Does the IR's conv at `path` read a 1x1 map with a 1x1 kernel and no padding?"""
    a = g.node(path)["attrs"]
    return g.shape(g.inputs(path)[0])[1:] == (1, 1) and a["kernel"] in (1, (1, 1)) and \
        a["groups"] == 1 and a["padding"] in (0, (0, 0))


class InferenceNet(nn.Module):
    """An inference-only network: the compiled units with BN folded, in one memory format.

    Children are the compiled module's (`stem`, `stages`, `head`), so `state_dict` keys are
    the training keys minus the folded BNs' keys, with a `.bias` on every conv a BN folded into.
    `report` says what was done (BNs folded, convs on oneDNN, ReLUs fused, format, parameters).
    """

    def __init__(self, net: CompiledNet, memory_format: torch.memory_format, report: dict):
        super().__init__()
        self.name = net.name
        self.stem, self.stages, self.head = net.stem, net.stages, net.head
        self.memory_format = memory_format
        self.report = report

    def forward(self, x):
        with self._mode(x):
            if x.dim() == 4:
                x = x.contiguous(memory_format=self.memory_format)
            return self.head(self.stages(self.stem(x)))

    def forward_features(self, x):
        with self._mode(x):
            if x.dim() == 4:
                x = x.contiguous(memory_format=self.memory_format)
            return self.stages(self.stem(x))

    @staticmethod
    def _mode(x):
        # inference tensors cannot enter a traced graph (jit.trace, export): no_grad there
        return torch.no_grad() if tracing(x) else torch.inference_mode()

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("an inference module cannot train: its BatchNorms are folded into "
                               "the convolutions; train the compiled module and optimise it again")
        return super().train(False)

    def extra_repr(self) -> str:
        r = self.report
        return (f"name={self.name!r}, memory_format={r.get('memory_format')}, "
                f"bn_folded={r['bn_folded']}, onednn_convs={r['onednn_convs']}, "
                f"relu_fused={r['relu_fused']}, act_fused={r['act_fused']}")


# -- folding -------------------------------------------------------------------------------
@torch.no_grad()
def _fold_bn(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    if bn.running_mean is None:       # track_running_stats=False: batch statistics even in eval
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    b = layer.bias.double() if layer.bias is not None else torch.zeros_like(mean)
    new_w, new_b = fold(layer.weight.double(), b, gamma, beta, mean, var, bn.eps)
    layer.weight = nn.Parameter(new_w.to(layer.weight.dtype).contiguous(), requires_grad=False)
    layer.bias = nn.Parameter(new_b.to(layer.weight.dtype), requires_grad=False)


def _plain_conv(m) -> bool:
    return type(m) is nn.Conv2d and m.padding_mode == "zeros" and not isinstance(m.padding, str)


class _Modules:
    """IR node path -> the child module the torch backend made for it: the unit's path, then
    the node's path inside the unit, segment by segment through `_modules` (a child may be
    named like an nn.Module attribute, see backends.torch.Scope)."""

    def __init__(self, net: CompiledNet, g: Graph):
        self.g = g
        self.units = {m.path: m for m in net.modules() if isinstance(m, Unit)}

    def _parent(self, path: str):
        unit = self.g.unit_of(path)
        m = self.units.get(unit)
        if m is None:
            return None, None
        *parents, last = path[len(unit) + 1:].split(".")
        for seg in parents:
            m = m._modules.get(seg)
            if m is None:
                return None, None
        return m, last

    def __getitem__(self, path: str) -> nn.Module | None:
        parent, name = self._parent(path)
        return parent._modules.get(name) if parent is not None else None

    def __setitem__(self, path: str, mod: nn.Module) -> None:
        parent, name = self._parent(path)
        parent._modules[name] = mod


_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _rewrite(net: CompiledNet, g: Graph, onednn: bool, report: dict) -> None:
    """Fold and fuse what the IR says may be (passes.fold_bn), where the module at each node's
    path is still what the backend made for it (a swapped-in child is left alone)."""
    mods = _Modules(net, g)
    folded = set()
    for bn_path, src_path in foldable_bn(g).items():
        bn, src = mods[bn_path], mods[src_path]
        if not (type(bn) in _BN and bn.running_mean is not None
                and type(src) in (nn.Conv2d, nn.Linear)
                and (type(bn) is nn.BatchNorm2d) == (type(src) is nn.Conv2d)):
            continue
        _fold_bn(src, bn)
        mods[bn_path] = Folded(src_path, "BatchNorm")
        folded.add(bn_path)
        report["bn_folded"] += 1
    if not onednn:
        return
    for p, d in g.nodes():
        m = mods[p] if d["op"] == "conv2d" else None
        if _plain_conv(m):     # the copy's own conv: same parameters, another forward
            m.__class__ = MatmulConv if matmul_conv(g, p) else OneDNNConv
            report["onednn_convs"] += 1
            if type(m) is OneDNNConv:
                m.merge = merged_groups(m.in_channels // m.groups, m.out_channels // m.groups,
                                        m.groups)
                report["groups_merged"] += m.merge > 1
    for chain in conv_chains(g, tuple(FUSED_ACTS)):
        conv, act = mods[chain.conv], mods[chain.act]
        module, post_op = FUSED_ACTS[g.node(chain.act)["attrs"]["kind"]]
        # MatmulConv (the SE FCs) applies a ReLU only: its other acts stay modules
        if (chain.bn is None or chain.bn in folded) and isinstance(conv, OneDNNConv) \
                and conv.act is None and type(act) is module and \
                (post_op == "relu" or type(conv) is OneDNNConv):
            conv.act = post_op
            mods[chain.act] = Folded(chain.conv, module.__name__)
            report["relu_fused" if post_op == "relu" else "act_fused"] += 1


def place(module: nn.Module, fmt: torch.memory_format, report: dict,
          retain_memory: bool = True) -> nn.Module:
    """The module's weights (and, in its forward, its input) in `fmt`; the report's format,
    parameter count and what was done to malloc (`retain_freed_memory`, CPU)."""
    module = module.to(memory_format=fmt)
    module.memory_format = fmt
    report["memory_format"] = "channels_last" if fmt == torch.channels_last else "contiguous"
    report["params"] = sum(p.numel() for p in module.parameters())
    on_cpu = next(module.parameters()).device.type == "cpu"
    report["malloc"] = retain_freed_memory() if retain_memory and on_cpu else "unchanged"
    return module


def new_report() -> dict:
    """What `_rewrite` counts, each at zero."""
    return {"bn_folded": 0, "onednn_convs": 0, "relu_fused": 0, "act_fused": 0,
            "groups_merged": 0}


def _onednn_available() -> bool:
    try:   # private ops (what inductor's freezing emits): present in builds with oneDNN
        return torch.backends.mkldnn.is_available() and \
            hasattr(torch.ops.mkldnn, "_convolution_pointwise") and \
            hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")
    except (AttributeError, RuntimeError):
        return False


# -- memory format ------------------------------------------------------------------------
def choose_memory_format(example_input: torch.Tensor | None,
                         onednn: bool = True) -> torch.memory_format:
    """The rule. CUDA: channels_last (tensor cores want NHWC). CPU with the oneDNN convs:
    channels_last, since they give NHWC outputs whatever they are given, so an NHWC input
    spares the first conv a reorder. CPU with eager convs: channels_last from
    CHANNELS_LAST_MIN_BATCH images (eager NHWC grouped convs lose at batch 1, win at 8)."""
    if example_input is not None and example_input.device.type == "cuda":
        return torch.channels_last
    if onednn:
        return torch.channels_last
    if example_input is None or example_input.dim() != 4:
        return torch.contiguous_format
    return (torch.channels_last if example_input.shape[0] >= CHANNELS_LAST_MIN_BATCH
            else torch.contiguous_format)


def _measure(model: nn.Module, x: torch.Tensor, rounds: int = 5) -> torch.memory_format:
    """Time both formats on x (interleaved rounds, alternating order; median per-round ratio)."""
    cands = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        cands[fmt] = copy.deepcopy(model).to(memory_format=fmt)
        cands[fmt].memory_format = fmt
    times = {fmt: [] for fmt in cands}
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    for m in cands.values():
        m(x), m(x)
    for r in range(rounds):
        for fmt in (list(cands) if r % 2 == 0 else list(cands)[::-1]):
            sync()
            t = time.perf_counter()
            cands[fmt](x)
            sync()
            times[fmt].append(time.perf_counter() - t)
    ratio = statistics.median(a / b for a, b in zip(times[torch.channels_last],
                                                    times[torch.contiguous_format]))
    return torch.channels_last if ratio < 1.0 else torch.contiguous_format


def optimize_for_inference(model: nn.Module, example_input: torch.Tensor | None = None, *,
                           memory_format: str = "auto", onednn: bool | None = None,
                           compile: bool = False, retain_memory: bool = True) -> nn.Module:
    """A compiled module -> an inference-only module computing the same outputs, faster.

    The model must be in eval mode: in train mode its BatchNorms normalise with the batch's
    statistics, which no folded convolution can reproduce, so a train-mode model is refused
    (ValueError) rather than silently switched to its running statistics: call `.eval()` first.
    The model is not changed (the result owns a copy of its weights, folded).

    memory_format: "auto" (channels_last on CUDA and on CPU from CHANNELS_LAST_MIN_BATCH
    images of `example_input`, else contiguous), "measure" (time both on `example_input`),
    "channels_last" or "contiguous". onednn (CPU, float32): convolutions through oneDNN with
    packed weights and their activation as a post-op (default: where PyTorch has oneDNN, and
    not with compile). compile: wrap the result in `torch.compile` (first call compiles).
    retain_memory (CPU): have glibc's malloc keep freed memory for reuse, process-wide
    (`kernels.retain_freed_memory`: no page faults for each call's activations), unless the
    environment tunes malloc itself; False leaves the allocator alone.
    """
    if isinstance(model, InferenceNet):
        raise ValueError("this module is already optimised for inference")
    if not isinstance(model, CompiledNet):
        raise TypeError("optimize_for_inference takes a module compiled by secompile "
                        f"(secompile.compile), not {type(model).__name__}")
    if model.graph is None:
        raise ValueError("this module carries no IR graph (it was not made by secompile's lower(), "
                         "or pickled by an older secompile): compile the spec again")
    if any(m.training for m in model.modules()):
        raise ValueError("the model is in training mode: its BatchNorms use batch statistics "
                         "there, which folding cannot keep; call model.eval() first (inference "
                         "then uses the running statistics), or compile(spec, inference=True)")
    if memory_format not in ("auto", "measure", *FORMATS):
        raise ValueError(f"memory_format is auto, measure, contiguous or channels_last, not "
                         f"{memory_format!r}")
    if memory_format == "measure" and example_input is None:
        raise ValueError("memory_format='measure' times the model on example_input: give one")
    if onednn is None:           # inductor packs the weights itself (freezing)
        onednn = not compile and _onednn_available()
    # normal tensors, made outside inference mode even when called inside it: a weight made
    # there would be an inference tensor, without the version counter that says when the
    # packed oneDNN copy is stale
    with torch.inference_mode(False):
        net = copy.deepcopy(model).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        report = new_report()
        _rewrite(net, model.graph, onednn, report)
        fmt = FORMATS.get(memory_format) or choose_memory_format(example_input, onednn)
        out = InferenceNet(net, fmt, report).eval()
        if memory_format == "measure":
            fmt = _measure(out, example_input)
        out = place(out, fmt, report, retain_memory)
        if example_input is not None and not compile:
            # packs the oneDNN weights for this input
            out(example_input.to(next(out.parameters()).device))
    if compile:
        # freezing: inductor treats the (frozen) weights as constants, so it packs them for
        # oneDNN and fuses conv + ReLU itself; the oneDNN convs above are then left out
        compiled = torch.compile(out, dynamic=False, options={"freezing": True})
        compiled.report = report
        return compiled
    return out
