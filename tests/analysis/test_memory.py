"""Memory counted from the IR (analysis/memory.py), checked against torch's CPU allocator.

The measurement: the bytes of every tensor alive before the step (weights, buffers, optimizer
state, the input), plus the highest running sum of the allocation events the torch profiler
records during one training step (zero_grad(set_to_none) -> forward -> loss -> backward ->
step) or one no_grad forward. Tolerance 10% for training (issue 23). What the estimate leaves
out, and why it may undershoot: the CPU convolution's own workspaces (for convolutions on small
maps, oneDNN's weight-gradient kernel allocates batch x the weight's size during backward:
72 MiB for ResNet-18's last 3x3 convs at batch 8 and 64x64 inputs), allocator rounding and the
loss' few bytes. See docs/counting.md.
"""
import json
from math import prod

import pytest
import torch

import secompile
from secompile.analysis.memory import format_bytes, memory, parse_bytes, sweep_metrics
from secompile.api import prepare
from secompile.cli import main

TINY = """
name: tiny
input: {channels: 3, size: [16, 16]}
stem:
  - {name: conv1, conv: {out: 8, kernel: 3}}
stages:
  - name: s0
    layers:
      - {name: pool, maxpool: {kernel: 2, stride: 2}}
head:
  - {name: pool, global_avgpool: {}}
  - {name: fc, linear: {out: 10}}
"""


def _graph(spec, **kw):
    return prepare(spec, **kw)[1]


def test_activations_per_node_and_weights_are_exact(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    g = _graph(path)
    m = memory(g, batch=4)
    assert m.activations == {p: 4 * 4 * prod(g.shape(p)) for p in g.order}
    assert m.activations["stem.conv1.conv"] == 4 * 4 * 8 * 16 * 16
    assert m.params == 4 * (8 * 3 * 9 + 8 + 8 + 10 * 8 + 10)      # conv, BN affine, fc
    assert m.buffers == 4 * (8 + 8 + 1)                            # running stats, counter
    assert memory(g, 4, optimizer="adamw").optimizer_state == 2 * m.params
    assert memory(g, 4, optimizer="none").optimizer_state == 0
    half = memory(g, 4, dtype="bf16")
    assert half.activations["stem.conv1.conv"] == m.activations["stem.conv1.conv"] // 2
    assert half.train_peak < m.train_peak
    # kept for backward: the input (by the conv), the conv output (BN), the ReLU output (max
    # pool), the pooled vector (fc; the mean itself keeps nothing), the int64 pool indices
    kept = (4 * 4 * (3 * 256 + 8 * 256 + 8 * 256 + 8)
            + 4 * 8 * 8 * 64)
    assert m.saved == kept
    with pytest.raises(ValueError, match="dtype is one of fp32, bf16, fp16, not 'fp64'"):
        memory(g, 1, dtype="fp64")


def test_batch_scales_activations_not_weights():
    g = _graph("se_resnet20_cifar")
    one, eight = memory(g, 1), memory(g, 8)
    assert eight.activations_total == 8 * one.activations_total
    assert eight.params == one.params and eight.saved == 8 * one.saved


def test_sweep_metrics_and_sizes():
    g = _graph("se_resnet20_cifar")
    got = sweep_metrics(g, batch=8)
    m = memory(g, 8)
    assert got == {"train_mem": m.train_peak, "infer_mem": m.inference_peak,
                   "act_mem": m.activations_total}
    assert parse_bytes("24GiB") == 24 * 2**30 and parse_bytes("1.5 GB") == 1_500_000_000
    assert parse_bytes("4096") == 4096 and format_bytes(3 * 2**20) == "3.00 MiB"
    with pytest.raises(ValueError, match="not '24 parsecs'"):
        parse_bytes("24 parsecs")


def test_count_batch_in_api_cli_and_report(tmp_path, capsys):
    rep = secompile.count("se_resnet20_cifar", batch=8, optimizer="adamw")
    m = memory(_graph("se_resnet20_cifar"), 8, optimizer="adamw")
    assert rep["memory"]["train_peak"] == m.train_peak
    assert rep["memory"]["per_node"] == m.activations
    assert "memory" not in secompile.count("se_resnet20_cifar")
    assert main(["count", "se_resnet20_cifar", "--batch", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["memory"]["batch"] == 8 and out["memory"]["optimizer"] == "sgd"
    assert main(["count", "se_resnet20_cifar", "--batch", "8"]) == 0
    assert "memory at batch 8 (fp32): activations" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["count", "se_resnet20_cifar", "--batch", "0"])
    assert e.value.code == 2


# -- against the allocator ------------------------------------------------------------------------
def _peak_during(fn) -> int:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    now = peak = 0
    for e in events:
        now += e.nbytes()
        peak = max(peak, now)
    return peak


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measured_train_peak(model, x, optimizer="sgd") -> int:
    model.train()
    opt = (torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if optimizer == "sgd"
           else torch.optim.AdamW(model.parameters(), lr=1e-3))
    y = torch.randint(0, model(x[:1]).shape[1], (x.shape[0],))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    step()                                   # the optimizer's state exists from here on
    opt.zero_grad(set_to_none=True)
    state = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t)]
    return _bytes(model.state_dict().values()) + _bytes(state) + _bytes([x]) + _peak_during(step)


def measured_inference_peak(model, x) -> int:
    model.eval()

    def forward():
        with torch.no_grad():
            model(x)
    return _bytes(model.state_dict().values()) + _bytes([x]) + _peak_during(forward)


@pytest.fixture(autouse=True)
def one_thread():
    """Measured at one thread: the peaks hardly depend on it, the time does (on a shared
    2-core machine, two threads of a small network wait on each other: 0.4 s -> 27 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _within_10_percent(name: str, batch: int, training: bool) -> None:
    g = _graph(name)
    model = secompile.compile(name)
    x = torch.randn(batch, *g.input_shape)
    m = memory(g, batch)
    est, got = ((m.train_peak, measured_train_peak(model, x)) if training else
                (m.inference_peak, measured_inference_peak(model, x)))
    assert abs(est - got) <= 0.10 * got, (est, got)


def test_training_peak_within_10_percent_small():
    """The small twin of the SE-ResNet-50 check below: SE-ResNet-20 (CIFAR), batch 8."""
    _within_10_percent("se_resnet20_cifar", 8, training=True)


@pytest.mark.slow
def test_se_resnet50_training_peak_batch_8_within_10_percent():
    _within_10_percent("se_resnet50_tv", 8, training=True)


@pytest.mark.slow
def test_efficientnet_b0_inference_peak_batch_32_within_10_percent():
    _within_10_percent("efficientnet_b0", 32, training=False)
