"""Backbones: the selected stages' outputs of a compiled network, with timm's `feature_info`.

    net = secompile.compile("se_resnet50", features_only=True)        # FeatureNet
    feats = net(x)                                          # [N,256,H/4,W/4], ... (a list)
    net.feature_info.channels()    -> [256, 512, 1024, 2048]
    net.feature_info.reduction()   -> [4, 8, 16, 32]
    net.feature_info.module_name() -> ['stages.0', 'stages.1', 'stages.2', 'stages.3']

The graph is truncated first (passes/truncate.py: no head, no stage after the last one
selected), so the module owns exactly the backbone's weights, under the same state_dict keys
as the whole network (`stem.*`, `stages.*`).
"""

from __future__ import annotations

from torch import nn

from ...ir.graph import Graph
from ...passes.truncate import feature_info


class FeatureInfo:
    """timm's convention: one dict per feature (num_chs, reduction, module, index)."""

    def __init__(self, info: list[dict]):
        self.info = info

    @classmethod
    def from_graph(cls, g: Graph, out_indices) -> "FeatureInfo":
        return cls(feature_info(g, out_indices))

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


class FeatureNet(nn.Module):
    """stem -> stages, returning the selected stages' outputs as a list."""

    def __init__(
        self, name: str, stem: nn.Module, stages: nn.Module, out_indices, feature_info: FeatureInfo
    ):
        super().__init__()
        self.name = name
        self.stem = stem
        self.stages = stages
        self.out_indices = tuple(out_indices)
        self.feature_info = feature_info

    def forward(self, x) -> list:
        x = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                feats.append(x)
        return feats

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_indices={self.out_indices}"


def feature_net(model, g: Graph, out_indices) -> FeatureNet:
    """CompiledNet of the truncated graph `g` -> FeatureNet returning the `out_indices` stages."""
    return FeatureNet(
        model.name, model.stem, model.stages, out_indices, FeatureInfo.from_graph(g, out_indices)
    )


__all__ = ["FeatureInfo", "FeatureNet", "feature_net"]
