"""Backbones: timm's features of a compiled network, as a module torchvision can wrap.

    net = secompile.compile("se_resnet50", features_only=True)        # FeatureNet
    feats = net(x)                                  # [N,64,H/2,W/2], [N,256,H/4,W/4], ... (a list)
    net.feature_info.channels()    -> [64, 256, 512, 1024, 2048]
    net.feature_info.reduction()   -> [2, 4, 8, 16, 32]
    net.feature_info.module_name() -> ['stem_conv1', 'stages_0', 'stages_1', 'stages_2', 'stages_3']

The features are passes/truncate.py's `feature_levels` (timm's rule), and the graph is
truncated after the last one selected. The module is a chain of top-level children, each named
after the module it ends with, so that every feature is a child's output: torchvision's
`IntermediateLayerGetter` / `BackboneWithFPN` take `module_name()` as `return_layers`. A unit a
feature cuts (ResNet's stem, whose activation at /2 precedes its max-pool) is lowered as two
units. Below a child, names are the whole network's: child `stages_1` holds `blocks.0`, ...,
`stem_conv1` holds `conv1.conv`; `source_keys()` maps each state_dict key to the whole
network's, and `load_state_dict` accepts either (a whole network's state_dict loads with
strict=False: its head is not here).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from ...ir.graph import Graph
from ...passes.fuse import fuse_scale_add
from .codegen import _IR, Unit, _build_unit, _unit_nodes, init_weights
from .inference import InferenceNet


class FeatureInfo:
    """timm's convention: one dict per feature (num_chs, reduction, module, index, stage)."""

    def __init__(self, info: list[dict]):
        self.info = info

    def _get(self, key, idx=None):
        if idx is None:
            return [f[key] for f in self.info]
        if isinstance(idx, (tuple, list)):
            return [self.info[i][key] for i in idx]
        return self.info[idx][key]

    def channels(self, idx=None):
        return self._get("num_chs", idx)

    def reduction(self, idx=None):
        return self._get("reduction", idx)

    def module_name(self, idx=None):
        return self._get("module", idx)

    def get_dicts(self) -> list[dict]:
        return [dict(f) for f in self.info]

    def __getitem__(self, i):
        return self.info[i]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info!r})"


class _Blocks(nn.Module):
    """Some blocks of a stage, keyed by their index in the stage (`blocks.3`), run in order."""

    def __init__(self, blocks: OrderedDict):
        super().__init__()
        self.blocks = nn.Sequential(blocks)

    def forward(self, x):
        return self.blocks(x)


class FeatureNet(nn.Module):
    """The chain of children up to the last selected feature; forward -> the features, a list.

    With `optimized()`, an inference-only copy (BN folded, one memory format, no training).
    """

    def __init__(self, name: str, children: OrderedDict, sources: dict, info: list[dict]):
        super().__init__()
        for child_name, child in children.items():
            self.add_module(child_name, child)
        self.name = name
        self.feature_info = FeatureInfo(info)
        self.out_indices = tuple(f["index"] for f in info)
        self.return_layers = tuple(f["module"] for f in info)
        self._sources = dict(sources)       # child name -> the whole network's path of it
        self.memory_format = None           # set by optimized()
        self.report = None
        self.register_load_state_dict_pre_hook(_accept_source_keys)

    def forward(self, x) -> list:
        if self.memory_format is None:
            return self._features(x)
        with InferenceNet._mode(x):     # inference_mode, or no_grad where traced (export)
            if x.dim() == 4:
                x = x.contiguous(memory_format=self.memory_format)
            return self._features(x)

    def _features(self, x) -> list:
        feats = []
        for child_name, child in self._modules.items():
            x = child(x)
            if child_name in self.return_layers:
                feats.append(x)
        return feats

    def source_keys(self) -> dict[str, str]:
        """state_dict key -> the whole network's key of the same tensor."""
        out = {}
        for key in self.state_dict():
            child, _, rest = key.partition(".")
            out[key] = f"{self._sources[child]}.{rest}"
        return out

    def optimized(self, example_input=None) -> "FeatureNet":
        """An inference-only copy: BNs folded into their convolutions (and oneDNN convolutions
        where available), as backends.torch.inference.optimize_for_inference does for a whole
        network; forward runs under inference_mode in the chosen memory format."""
        from . import inference
        with torch.inference_mode(False):   # normal tensors, as optimize_for_inference makes
            net = copy.deepcopy(self).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            onednn = inference._onednn_available()
            report = inference.new_report()
            for child in net.children():     # one at a time: a cut unit's two halves share a path
                holder = nn.Module()
                holder.add_module("child", child)
                inference._rewrite(holder, self._ir.graph, onednn, report)
            fmt = inference.choose_memory_format(example_input, onednn)
            net = inference.place(net, fmt, report)
            net.report = report
            if example_input is not None:
                net(example_input.to(next(net.parameters()).device))
        return net

    def train(self, mode: bool = True):
        if mode and self.memory_format is not None:
            raise RuntimeError("an inference backbone cannot train: its BatchNorms are folded "
                               "into the convolutions; train the compiled one and optimise again")
        return super().train(mode)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_indices={self.out_indices}"


def _accept_source_keys(module, state_dict, prefix, *args):
    """load_state_dict pre-hook: the whole network's keys are renamed to this module's."""
    own = {f"{prefix}{src}": f"{prefix}{key}" for key, src in module.source_keys().items()}
    for key in [k for k in state_dict if k in own and own[k] not in state_dict]:
        state_dict[own[key]] = state_dict.pop(key)


def _pieces(g: Graph, cut_after: set) -> list[tuple[str, list[str]]]:
    """(unit, nodes) in order, a unit split after each node of `cut_after` inside it."""
    out = []
    for unit, nodes in _unit_nodes(g).items():
        start = 0
        for i, p in enumerate(nodes):
            if p in cut_after or i == len(nodes) - 1:
                out.append((unit, nodes[start:i + 1]))
                start = i + 1
    return [(u, n) for u, n in out if n]


def feature_net(g: Graph, levels: list[dict], out_indices, *, seed: int | None = 0,
                zero_init_last_bn: bool = False) -> FeatureNet:
    """The truncated graph `g` (passes/truncate.py) -> FeatureNet returning the `out_indices`
    features of `levels` (every level up to the last selected one), initialised as the whole
    network would be for `seed` (the same tensors under the same names)."""
    fused = fuse_scale_add(g)
    ends = {lv["node"]: lv["module"] for lv in levels}
    stage_of = {b: st for st in g.stages for b in st.blocks}
    children: OrderedDict = OrderedDict()
    sources: dict = {}
    group: OrderedDict = OrderedDict()     # blocks of the stage being filled
    fused_nodes = _unit_nodes(fused)
    for unit, nodes in _pieces(g, set(ends)):
        inside = set(nodes)
        piece = _build_unit(g, fused, unit, nodes, [p for p in fused_nodes[unit] if p in inside])
        st = stage_of.get(unit)
        if st is not None and st.path != unit:             # a block: collected into its stage
            group[unit.rsplit(".", 1)[1]] = piece
            if nodes[-1] in ends or unit == st.blocks[-1]:
                name = ends.get(nodes[-1]) or st.path
                children[name.replace(".", "_")] = _Blocks(group)
                sources[name.replace(".", "_")] = st.path
                group = OrderedDict()
            continue
        name = ends.get(nodes[-1]) or unit    # a piece ends at a feature or at its unit's end
        children[name.replace(".", "_")] = piece
        sources[name.replace(".", "_")] = unit
    info = [{k: v for k, v in levels[i].items() if k != "node"} for i in out_indices]
    net = FeatureNet(g.name, children, sources, info)
    net._ir = _IR(g)
    return init_weights(net, seed, zero_init_last_bn)


__all__ = ["FeatureInfo", "FeatureNet", "feature_net", "Unit"]
