"""The PyTorch backend against the IR: parameters, every node's shape, forward/backward."""
import pytest
import torch

import secompile
from secompile.backends.torch import Unit, trace_shapes
from support import SPECS, zoo_cases


@pytest.mark.parametrize("path", zoo_cases())
def test_params_equal_analysis(path):
    rep = secompile.count(path)
    model = secompile.compile(path)
    assert sum(p.numel() for p in model.parameters()) == rep["total"]["params"]


@pytest.mark.parametrize("path", zoo_cases())
def test_every_node_shape_matches_module(path):
    g = secompile.build_ir(path)
    model = secompile.compile(path, seed=0).eval()
    x = torch.randn(2, *g.input_shape)
    assert trace_shapes(model, x) == {p: g.shape(p) for p in g.order if p != "input"}
    hooked = {}   # forward hooks on every leaf module see the shapes the IR inferred
    for name, m in model.named_modules():
        if name and not list(m.children()):
            m.register_forward_hook(lambda mod, i, o, p=name: hooked.__setitem__(p, tuple(o.shape[1:])))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, *g.shape(g.output))
    if g.input_shape == (3, 224, 224):
        assert out.shape == (2, 1000)
    # channel_conv's Conv1d (ECA) runs on the pooled channels viewed (N, 1, C): compared viewed so
    conv1d = {k: (1, g.shape(k)[0]) for k in hooked if g.node(k)["op"] == "channel_conv"}
    assert hooked and all(hooked[k] == conv1d.get(k, g.shape(k)) for k in hooked)


@pytest.mark.parametrize("path", zoo_cases())
def test_training_mode_backward(path):
    g = secompile.build_ir(path)
    model = secompile.compile(path, seed=0).train()
    out = model(torch.randn(2, *g.input_shape))
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_state_dict_keys_follow_ir_paths():
    model = secompile.compile(SPECS / "se_resnext50.yaml")
    keys = set(model.state_dict())
    for k in ("stem.conv1.conv.weight", "stages.0.blocks.0.branch.conv2.conv.weight",
              "stages.0.blocks.0.se.fc1.weight", "stages.0.blocks.0.se.fc1.bias",
              "stages.1.blocks.0.shortcut.0.bn.running_var", "head.fc.weight"):
        assert k in keys
    assert model.state_dict()["stages.0.blocks.0.branch.conv2.conv.weight"].shape == (128, 4, 3, 3)


def test_generated_forward_is_straight_line_and_shared():
    model = secompile.compile(SPECS / "se_resnet50.yaml")
    blocks = model.stages[1].blocks
    code = blocks[1].code
    assert "for " not in code and "torch.addcmul" in code      # SE scale fused with the add
    assert blocks[1]._fwd is blocks[2]._fwd                      # identical blocks share one function
    assert isinstance(blocks[0], Unit) and blocks[0].code != code  # the projection block differs


def test_seed_is_deterministic_and_he_init():
    a = secompile.compile(SPECS / "resnet50.yaml", seed=3).state_dict()
    b = secompile.compile(SPECS / "resnet50.yaml", seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    w = a["stages.2.blocks.0.branch.conv2.conv.weight"]        # 3x3, 256 out: He fan-out std sqrt(2/(256*9))
    assert abs(w.std().item() - (2 / (256 * 9)) ** 0.5) < 0.002


def test_fused_matches_unfused_numerically():
    """The addcmul fusion and in-place ReLU compute the same as the plain probe path."""
    model = secompile.compile(SPECS / "se_resnet50.yaml", seed=1).eval()
    _randomise_bn(model)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        y = model(x)
        for u in (m for m in model.modules() if isinstance(m, Unit)):
            rec = {}
            x = u._probe(u, x, rec)
            assert "add" not in rec or "se.scale" in rec   # the probe path does not fuse
    torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-4)  # fma rounding only


def _randomise_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.2
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.2
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


def test_pickle_and_deepcopy_roundtrip(tmp_path):
    import copy
    model = secompile.compile(SPECS / "se_resnet20_cifar.yaml", seed=0).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.save(model, tmp_path / "m.pt")
    again = torch.load(tmp_path / "m.pt", weights_only=False)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
        torch.testing.assert_close(clone(x), model(x))
