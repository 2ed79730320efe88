"""GPU readiness of compiled modules, checked on CPU where it can be; CUDA tests marked `gpu`.

- torch.compile(fullgraph=True) must see one graph: `torch._dynamo.explain` reports zero graph
  breaks for every spec in specs/ (at a small input size: breaks do not depend on it);
- nothing in a forward is tied to the CPU: the module runs on the `meta` device (any tensor
  made on the CPU inside a forward would clash) and the generated code never leaves the
  device (.numpy(), .item(), .tolist(), .cpu());
- mixed precision (bf16 autocast on CPU), channels_last memory format (kept through every
  block), torch.export with a dynamic batch for deployment.
"""
import copy
import re

import pytest
import torch

import secompile
from secompile.backends.torch import Unit
from secompile.lang import SpecError, load_spec
from support import SPECS, slow_unless_cheap, zoo_cases

SMALL_SIZES = (64, 96, 128, 160)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def small(path):
    """The spec at the smallest of SMALL_SIZES its layers accept (its own size as a last resort)."""
    spec = load_spec(path)
    declared = min(spec.input_shape[1:])
    for s in sorted({min(s, declared) for s in SMALL_SIZES}):
        data = {**spec.data, "input": {**spec.data.get("input", {"channels": 3}), "size": [s, s]}}
        try:
            secompile.build_ir(data, base_dir=spec.base_dir)
        except SpecError:
            continue
        return data, spec.base_dir, (spec.input_shape[0], s, s)
    return spec, spec.base_dir, spec.input_shape


def build(path, seed=0):
    data, base, shape = small(path)
    return secompile.compile(data, seed=seed, base_dir=base), shape


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("path", zoo_cases())
def test_zero_graph_breaks(path):
    """The whole network is one graph (eval mode, as deployed). Deep networks are `slow`:
    every block of theirs is covered by the per-unit test below in CI."""
    model, shape = build(path)
    ex = torch._dynamo.explain(model.eval())(torch.randn(2, *shape))
    assert ex.graph_break_count == 0, "; ".join(str(b.reason) for b in ex.break_reasons)
    assert ex.graph_count == 1


@pytest.mark.parametrize("path", zoo_cases())
def test_zero_graph_breaks_per_unit(path):
    """Every distinct generated forward (identical blocks share one), in train and eval mode."""
    model, shape = build(path)
    inputs = {}
    units = [m for m in model.modules() if isinstance(m, Unit)]
    first = {}
    for u in units:
        first.setdefault(u.code, u)
    hooks = [u.register_forward_pre_hook(lambda mod, args: inputs.setdefault(id(mod), args[0]))
             for u in first.values()]
    with torch.no_grad():
        model.eval()(torch.randn(2, *shape))
    for h in hooks:
        h.remove()
    for u in first.values():
        for mode in ("train", "eval"):
            torch._dynamo.reset()
            ex = torch._dynamo.explain(getattr(u, mode)())(inputs[id(u)])
            assert ex.graph_break_count == 0 and ex.graph_count == 1, \
                f"{u.path} ({mode}): " + "; ".join(str(b.reason) for b in ex.break_reasons)


@pytest.mark.parametrize("path", zoo_cases())
def test_generated_code_stays_on_the_device(path):
    model, shape = build(path)
    for unit in (m for m in model.modules() if isinstance(m, Unit)):
        forward = unit.code.split("def probe")[0]
        assert not re.search(r"\.(numpy|item|tolist|cpu|cuda)\(|torch\.tensor\(|np\.", forward), unit.code
    meta = model.to("meta")
    out = meta(torch.randn(2, *shape, device="meta"))
    assert out.device.type == "meta" and out.shape[0] == 2


def test_compile_fullgraph_training_step():
    """torch.compile(fullgraph=True) traces forward and backward of an SE network (aot_eager:
    the same graph capture as inductor, without a C++ toolchain in CI): SE-ResNet-8, one block
    a stage (an SE block, a projection shortcut, the head), as the trace costs per op."""
    small = [f"stages.{i}.repeat=1" for i in range(3)]
    model, ref = (secompile.compile(SPECS / "se_resnet20_cifar.yaml", seed=0, input_size=16,
                                    overrides=small) for _ in range(2))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    for m in (compiled, ref):
        torch.nn.functional.cross_entropy(m(x), y).backward()
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.parametrize("name", slow_unless_cheap(["se_resnet20_cifar", "se_resnext50_tv"]))
def test_amp_bf16_forward_on_cpu(name):
    model, shape = build(SPECS / f"{name}.yaml")
    model.eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        want = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(x)
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    err = ((got.float() - want).norm() / want.norm()).item()
    assert err < 0.05, err
    # and a training step under autocast produces fp32 gradients
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("name", slow_unless_cheap(["se_resnet20_cifar", "se_resnext50_tv", "senet154"]))
def test_channels_last_is_kept_and_agrees(name):
    if not (SPECS / f"{name}.yaml").exists():
        pytest.skip(f"{name}.yaml not written yet")
    model, shape = build(SPECS / f"{name}.yaml")
    model.eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
        exact = copy.deepcopy(model).double()(x.double())
        model = model.to(memory_format=torch.channels_last)
        xl = x.contiguous(memory_format=torch.channels_last)
        feats = model.forward_features(xl)
        got = model(xl)
    # every block (SE scale fused into addcmul included) hands on NHWC: no hidden conversions
    assert feats.is_contiguous(memory_format=torch.channels_last) and not feats.is_contiguous()
    # as accurate as the default layout, both against float64: at init, eval-mode BN is the
    # identity and 50 residual blocks (SENet-154, SE-ResNet-152) grow the features to ~1e3, where
    # float32 itself is off by up to ~1e-2 (norm-relative) whatever the memory format
    def err(y):
        return ((y.double() - exact).norm() / exact.norm()).item()
    assert err(got) <= max(4 * err(want), 1e-5), (err(got), err(want))


@pytest.mark.parametrize("name", slow_unless_cheap(["se_resnet20_cifar", "se_resnext50_tv"]))
def test_torch_export_for_deployment(name):
    model, shape = build(SPECS / f"{name}.yaml")
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (torch.randn(2, *shape),), dynamic_shapes={"x": {0: batch}})
    x = torch.randn(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x), rtol=1e-5, atol=1e-5)
    # the exported program holds the parameters under the IR's names
    assert "stages.0.blocks.0.se.fc1.weight" in ep.state_dict


def test_torchscript_trace():
    """Traced for inference, as deployed: under no_grad (the trace then records the inference path)."""
    model = secompile.compile(SPECS / "se_resnet20_cifar.yaml", seed=0).eval()
    x, x5 = torch.randn(2, 3, 32, 32), torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x5), model(x5))


# -- CUDA ----------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("name", ["se_resnet20_cifar", "se_resnext50_tv"])
def test_cuda_forward_matches_cpu(name):
    model, shape = build(SPECS / f"{name}.yaml")
    model.eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        want = model(x)
        got = model.to("cuda")(x.to("cuda")).cpu()
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@cuda
def test_cuda_amp_fp16_channels_last_training_step():
    model = secompile.compile(SPECS / "se_resnext50_tv.yaml", seed=0).to("cuda").to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(8, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (8,), device="cuda")
    losses = []
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


@pytest.mark.gpu
@cuda
def test_cuda_torch_compile_fullgraph():
    model = secompile.compile(SPECS / "se_resnet20_cifar.yaml", seed=0).to("cuda").eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(4, 3, 32, 32, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-3, atol=1e-3)
