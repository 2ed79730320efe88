"""The kernels an inference module runs: oneDNN convolutions with their weights packed once.

`OneDNNConv` and `MatmulConv` are `nn.Conv2d` subclasses (same parameters, same state_dict)
that `inference._rewrite` puts in place of the torch backend's convs; narrow groups run as
wider block-diagonal ones (`merged_groups`); `retain_freed_memory` keeps malloc from handing
activations back to the OS between calls. docs/performance.md has what each choice measured.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys

import torch
import torch.nn.functional as F
from torch import nn

# Grouped convs with fewer channels a group than this run as fewer, wider groups whose weights
# are block-diagonal (zeros outside each original group): oneDNN's AVX2 kernels work on 8 fp32
# channels at a time, and with 4 channels a group half of every vector is wasted. Measured at 1
# thread (3x3, batch 1, NHWC): 4 -> 8 channels a group 0.62-0.71x the time at 14x14 to 56x56
# (SE-ResNeXt-50's first stage, 32 groups of 4), 2 -> 8 0.42-0.44x; 16 a group was slower than 8.
# Depthwise convs (one input channel a group) keep oneDNN's own depthwise kernels.
MIN_GROUP_WIDTH = 8


def merged_groups(in_per_group: int, out_per_group: int, groups: int) -> int:
    """How many of the conv's groups to run as one (1: as they are)."""
    narrow = min(in_per_group, out_per_group)
    if groups == 1 or in_per_group == 1 or narrow >= MIN_GROUP_WIDTH:
        return 1
    return next(k for k in range(2, groups + 1)
                if (groups % k == 0 and narrow * k >= MIN_GROUP_WIDTH) or k == groups)


def block_diagonal(w: torch.Tensor, groups: int, k: int) -> torch.Tensor:
    """The weight of `groups` groups as `groups // k` groups of k times the input channels,
    each original group's kernel on its own diagonal block: the same sums plus products with
    zeros. An Inf or NaN in one group's input would reach the groups merged with it (0 x Inf is
    NaN), so `OneDNNConv` runs a merged conv unmerged where its input is not all finite."""
    out_g, in_g, *kernel = w.shape[0] // groups, w.shape[1], *w.shape[2:]
    blocks = w.reshape(groups // k, k, out_g, in_g, *kernel)
    wide = w.new_zeros(groups // k, k, out_g, k, in_g, *kernel)
    for j in range(k):
        wide[:, j, :, j] = blocks[:, j]
    return wide.reshape(w.shape[0], k * in_g, *kernel)


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:          # PyTorch before 2.4
        return torch.is_autocast_cpu_enabled()


def tracing(x: torch.Tensor) -> bool:
    """Is this forward being traced or compiled (torch.jit.trace, torch.export, torch.compile,
    both ONNX exporters) rather than run? Those see standard ops only: the packed oneDNN weight is
    an opaque tensor that fake tensors and TorchScript cannot carry (issue 23), so the traced graph
    is conv2d + relu, which inductor and ONNX Runtime fuse and pack themselves."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or \
        torch.compiler.is_exporting() or type(x) is not torch.Tensor


# IR activation kind -> (its torch module, oneDNN's post-op name); the post-op computed the plain
# way (traced, autograd, other dtypes): fn(y, inplace)
FUSED_ACTS = {"relu": (nn.ReLU, "relu"), "silu": (nn.SiLU, "swish"),
              "hard_swish": (nn.Hardswish, "hardswish")}
POST_OPS = {"relu": lambda y, inplace: torch.relu_(y) if inplace else torch.relu(y),
            "swish": lambda y, inplace: F.silu(y, inplace=inplace),
            "hardswish": lambda y, inplace: F.hardswish(y, inplace=inplace)}


class OneDNNConv(nn.Conv2d):
    """conv2d + bias (+ ReLU as a post-op) in one oneDNN call, with the weight reordered once.

    Eager `F.conv2d` on CPU reorders the plain weight into oneDNN's blocked layout on every call
    (all 25M weights of a ResNet-50 at each forward); this keeps the reordered copy (`_packed`,
    not in the state_dict) and reorders again only when `weight` changes (load_state_dict, `.to`).
    The output comes back channels_last (a 1x1 conv on a 1x1 input is a `MatmulConv`). Anything
    but a float32 CPU forward without autograd or autocast takes the plain path: conv2d, relu_.
    """

    act = None     # the oneDNN post-op: "relu", "swish" (SiLU) or "hardswish"
    merge = 1      # groups run as one (merged_groups), in the packed copy only

    @property
    def relu(self) -> bool:
        return self.act == "relu"

    @relu.setter
    def relu(self, on: bool) -> None:
        self.act = "relu" if on else None

    def forward(self, x):
        w = self.weight
        if tracing(x):
            y = super().forward(x)
            return POST_OPS[self.act](y, False) if self.act else y
        if torch.is_grad_enabled() or x.device.type != "cpu" or w.device.type != "cpu" or \
                _cpu_autocast() or x.dtype != torch.float32 or w.dtype != torch.float32:
            y = super().forward(x)
            return POST_OPS[self.act](y, True) if self.act else y
        # oneDNN picks the blocked weight layout for the thread count; a copy packed at another
        # count is reordered again inside every call (2x the time, issue 23): re-pack on a change
        key = (w.data_ptr(), w._version, torch.get_num_threads())
        if self.__dict__.get("_packed_key") != key:
            self._packed = self._pack(w, x, self.merge)
            self._packed_key = key
        # merged groups mix a group's Inf/NaN input into its neighbours (0 x Inf = NaN, which
        # a fused ReLU may turn into 0): an input that is not all finite (its sum is finite
        # only if every element is; ~3% of the conv) runs unmerged
        merge = self.merge
        if merge > 1 and not torch.isfinite(x.sum()):
            merge = 1
            if 1 not in self._packed:
                self._packed.update(self._pack(w, x, 1))
        return self._run(x, merge)

    def _pack(self, w: torch.Tensor, x: torch.Tensor, merge: int) -> dict:
        """{merge: the weight reordered for oneDNN, with `merge` groups run as one}"""
        w = block_diagonal(w.detach(), self.groups, merge) if merge > 1 else w.detach()
        return {merge: torch.ops.mkldnn._reorder_convolution_weight(
            w, self.padding, self.stride, self.dilation, self.groups // merge, list(x.shape))}

    def _run(self, x: torch.Tensor, merge: int) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self._packed[merge], self.bias, self.padding, self.stride, self.dilation,
            self.groups // merge, self.act or "none", [None], "")

    def __getstate__(self):          # deepcopy / pickle: the packed copy is rebuilt on first use
        state = self.__dict__.copy()
        state.pop("_packed", None)
        state.pop("_packed_key", None)
        return state

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", act={self.act}" if self.act else "") + \
            (f", groups_run={self.groups // self.merge}" if self.merge > 1 else "")


class MatmulConv(OneDNNConv):
    """A 1x1 conv that the IR shows reading a 1x1 map (the SE excitation's FC layers): a matrix
    product, any device, dtype or autocast. oneDNN's fixed cost per call (~20 us) and eager's
    slow_conv2d are several times that; at batch 1 a matrix-vector product (addmv), and the
    per-call guards of OneDNNConv are left out (Python time is a third of an SE block's at
    batch 1)."""

    def forward(self, x):
        if tracing(x) or x.shape[-1] != 1 or x.shape[-2] != 1:   # no batch-1 branch baked in;
            # or a larger input than the spec's
            y = nn.Conv2d.forward(self, x)
            return torch.relu_(y) if self.relu else y
        w = self.weight.flatten(1)
        if x.shape[0] == 1 and self.bias is not None and x.dtype == w.dtype:   # (not autocast)
            y = torch.addmv(self.bias, w, x.reshape(-1))
        elif self.bias is not None:
            y = torch.addmm(self.bias, x.flatten(1), w.t())
        else:
            y = x.flatten(1) @ w.t()
        if self.relu:
            y = y.relu_()
        return y.view(x.shape[0], -1, 1, 1)


# glibc's mallopt parameters (malloc.h) and what they are set to: allocations below RETAIN_BELOW
# come from the heap (not a fresh mmap each), and freed heap memory is kept, not trimmed
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
RETAIN_BELOW = 1 << 30
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


@functools.cache
def retain_freed_memory() -> str:
    """Have glibc's malloc keep freed memory for the next call, process-wide, as ONNX Runtime's
    arena and the jemalloc/tcmalloc that Intel's PyTorch launcher preloads do. PyTorch's CPU
    tensors come from malloc; by default glibc returns large freed blocks to the OS (mmap'd
    blocks above a 32 MB dynamic threshold, heap tops above twice that), so each forward pages
    its activations in again: SE-ResNeXt-50 at batch 8 took 25,000-34,000 page faults per
    forward (about 10% of its time, 1043 -> 912 ms at 1 thread). The cost: the process keeps
    its peak heap. It acts on the main thread's arena: a forward run from another thread
    allocates from that thread's own arena, whose heaps glibc caps at 64 MB, and is paged in
    as before. Left alone where the user has tuned malloc (MALLOC_*_ environment, glibc
    tunables) or it is not glibc. Returns what was done, for the module's report."""
    if any(v in os.environ for v in _MALLOC_ENV) or "glibc.malloc" in \
            os.environ.get("GLIBC_TUNABLES", ""):
        return "unchanged: tuned by the environment"
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "unchanged: not glibc"
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return "unchanged: no mallopt"
    if mallopt(_M_MMAP_THRESHOLD, RETAIN_BELOW) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1):
        return "retains freed memory"
    return "unchanged: mallopt refused"
