"""The PyTorch backend: IR -> nn.Module (`codegen`), inference compilation (`inference`),
pretrained weights (`weights`, `weights_in_order`) and backbones with timm's `feature_info`
(`features`)."""
from .codegen import CompiledNet, DropPath, Unit, lower, trace_shapes

__all__ = ["CompiledNet", "DropPath", "Unit", "lower", "trace_shapes"]
