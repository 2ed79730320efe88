"""The inference kernels (secompile/backends/torch/kernels.py): grouped convs run as fewer,
wider groups, and malloc keeping freed memory."""
from __future__ import annotations

import copy
import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import secompile
from secompile.backends.torch import kernels
from secompile.backends.torch.inference import OneDNNConv, optimize_for_inference
from secompile.backends.torch.kernels import block_diagonal, merged_groups
from support import randomise_bn

onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")


def test_merged_groups_rule():
    assert merged_groups(4, 4, 32) == 2       # SE-ResNeXt-50's first stage: 32 groups of 4 -> 16 of 8
    assert merged_groups(2, 2, 16) == 4
    assert merged_groups(8, 8, 32) == 1       # already a vector wide
    assert merged_groups(1, 1, 128) == 1      # depthwise keeps oneDNN's own kernels
    assert merged_groups(4, 4, 1) == 1
    assert merged_groups(3, 3, 3) == 3        # 3 groups of 3: no divisor reaches 8, so one group
    assert merged_groups(4, 2, 6) == 6        # the narrower side decides: 2 x 6 = 12 >= 8
    assert merged_groups(2, 2, 6) == 6


@pytest.mark.parametrize("in_g,out_g,groups", [(4, 4, 32), (2, 2, 16), (4, 2, 6), (3, 3, 3)])
def test_block_diagonal_weight_gives_the_grouped_conv(in_g, out_g, groups):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(out_g * groups, in_g, 3, 3, generator=gen, dtype=torch.float64)
    x = torch.randn(2, in_g * groups, 9, 9, generator=gen, dtype=torch.float64)
    k = merged_groups(in_g, out_g, groups)
    wide = block_diagonal(w, groups, k)
    assert wide.shape == (out_g * groups, in_g * k, 3, 3)
    assert (wide != 0).sum() == (w != 0).sum()
    torch.testing.assert_close(F.conv2d(x, wide, padding=1, groups=groups // k),
                               F.conv2d(x, w, padding=1, groups=groups), rtol=0, atol=1e-12)


@onednn
def test_narrow_groups_run_merged_with_the_same_outputs():
    """ResNeXt blocks with 4 channels a group (the first stage of a 32x4d net): the packed copy
    runs 16 groups of 8; the module's own weight and state_dict keep the 32 groups."""
    spec = """
name: narrow_groups
input: {channels: 3, size: [16, 16]}
stages:
  - name: s
    layers:
      - {name: c1, conv: {out: 64, kernel: 3, padding: same}}
      - {name: g4, conv: {out: 64, kernel: 3, padding: same, groups: 16}}
      - {name: g2, conv: {out: 64, kernel: 3, stride: 2, padding: 1, groups: 32}}
      - {name: dw, conv: {out: 64, kernel: 3, padding: same, groups: 64}}
head:
  - {name: pool, global_avgpool: {}}
  - {name: fc, linear: {out: 5}}
"""
    model = randomise_bn(secompile.compile(spec, seed=0).eval(), torch.Generator().manual_seed(0))
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
    opt = optimize_for_inference(model, x)
    convs = {n: m for n, m in opt.named_modules() if type(m) is OneDNNConv}
    merge = {n.split(".")[2]: m.merge for n, m in convs.items()}
    assert merge == {"c1": 1, "g4": 2, "g2": 4, "dw": 1}
    assert opt.report["groups_merged"] == 2
    assert convs["stages.0.g4.conv"].weight.shape == (64, 4, 3, 3)
    assert "groups=16, act=relu, groups_run=8" in repr(convs["stages.0.g4.conv"])
    torch.testing.assert_close(opt(x), ref, rtol=1e-4, atol=1e-4)


@onednn
@pytest.mark.parametrize("act", [None, "relu"])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_non_finite_input_stays_in_its_group(bad, act):
    """Merged groups would spread an Inf or NaN of one group's input to the groups merged with
    it (0 x Inf = NaN, which the fused ReLU turns into 0: a finite, wrong output); the conv then
    runs unmerged, so its output is the grouped conv's: the other groups' channels finite and
    equal, as in eager."""
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32, 3, padding=1, groups=8).eval()       # 8 groups of 4 -> 4 of 8
    with torch.no_grad():
        conv.bias.uniform_(-1, 1)
    fast = copy.deepcopy(conv).requires_grad_(False)
    fast.__class__, fast.merge, fast.act = OneDNNConv, merged_groups(4, 4, 8), act
    assert fast.merge == 2

    def eager(x):
        return torch.relu(conv(x)) if act else conv(x)
    x = torch.randn(2, 32, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), eager(x), rtol=1e-5, atol=1e-5)   # merged, finite
        assert set(fast._packed) == {2}
        x[1, 5, 3, 3] = bad                           # group 1 (channels 4-7) of image 1
        want, got = eager(x), fast(x)
    others = torch.ones_like(want, dtype=torch.bool)
    others[1, 4:8] = False                            # every channel but the bad one's group
    assert got[others].isfinite().all()
    torch.testing.assert_close(got[others], want[others], rtol=1e-5, atol=1e-5)
    if act is None:     # (oneDNN's fused ReLU gives 0 for NaN where torch.relu keeps NaN)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert set(fast._packed) == {2, 1}                # the unmerged copy, made when needed


def test_malloc_left_alone_where_the_environment_tunes_it(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert kernels.retain_freed_memory.__wrapped__() == "unchanged: tuned by the environment"
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000")
    assert kernels.retain_freed_memory.__wrapped__() == "unchanged: tuned by the environment"


FAULTS = """
import resource, torch, secompile
from secompile.backends.torch.inference import optimize_for_inference

def faults_of_one_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 << 20)          # 64 MB, touched
    del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

model = secompile.compile("se_resnet20_cifar", seed=0).eval()
for retain in (False, True):
    report = optimize_for_inference(model, retain_memory=retain).report
    for _ in range(3):     # the steady state: a block freed beside a small allocation can take
        faults_of_one_block()   # a second block before the two merge (a network's first calls)
    print(report["malloc"], faults_of_one_block())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_activations_are_not_paged_in_again():
    """After optimize_for_inference a 64 MB block freed and allocated again comes back without
    page faults; glibc unmaps it otherwise (16,384 faults of 4 kB each time), and so it does
    with retain_memory=False. In a fresh interpreter's main thread: malloc settings are
    process-wide, and other threads (pytest-xdist runs tests in one) allocate from their own
    arenas, which this does not change."""
    env = {k: v for k, v in os.environ.items()
           if k not in kernels._MALLOC_ENV + ("GLIBC_TUNABLES",)}
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    (left, without), (retained, after) = (line.rsplit(" ", 1) for line in out)
    assert left == "unchanged" and int(without) >= 16000
    assert retained == "retains freed memory" and int(after) < 100


def test_optimised_inside_inference_mode():
    """compile(..., inference=True) called inside torch.inference_mode(): its weights were
    inference tensors, which have no version counter, and the first forward raised
    RuntimeError ("Inference tensors do not track version counter"). They are normal tensors
    now, so a state_dict loaded later, inside inference mode too, is packed again."""
    x = torch.randn(2, 3, 32, 32)
    ref = secompile.compile("se_resnet20_cifar", inference=True, seed=0)
    with torch.inference_mode():
        net = secompile.compile("se_resnet20_cifar", inference=True, seed=0)
        backbone = secompile.compile("se_resnet20_cifar", inference=True, seed=0,
                                     features_only=True)
        assert not any(p.is_inference() for p in [*net.parameters(), *backbone.parameters()])
        torch.testing.assert_close(net(x), ref(x))
        assert [f.shape[1] for f in backbone(x)] == [16, 32, 64]
        key = "stages.1.blocks.0.branch.conv1.conv.weight"      # a oneDNN conv's (packed) weight
        assert isinstance(net.get_submodule(key[:-len(".weight")]), OneDNNConv) or \
            not torch.backends.mkldnn.is_available()
        state = {k: v * 1.5 if k == key else v for k, v in net.state_dict().items()}
        net.load_state_dict(state)
    ref.load_state_dict(state)
    with torch.inference_mode():
        y = net(x)
    assert not torch.allclose(y, secompile.compile("se_resnet20_cifar", inference=True,
                                                   seed=0)(x))
    torch.testing.assert_close(y, ref(x))
