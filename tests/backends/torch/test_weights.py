"""Pretrained-weight mapping: the five published layouts load into their specs and give the same outputs.

The references below are written by hand after timm's `resnet.py` (seresnet50,
seresnext50_32x4d) and `senet.py` (the legacy ports of the Caffe weights), with the same module
names, so their state_dicts have exactly the keys of shared/reference/state_dicts/*.tsv
(checked first). A random checkpoint of a reference — BN weights *and* running statistics
randomised, since with identity BN a misplaced stride or pool can still agree — is loaded into
the compiled spec and both are run in eval mode on the same input.
"""
from collections import OrderedDict

import pytest
import torch
from torch import nn

import secompile
from secompile.backends.torch.weights import (
    WeightsError,
    detect_layout,
    load_weights,
    map_state_dict,
)
from support import SHARED, SPECS

TSV = SHARED / "reference" / "state_dicts"
LAYOUT_SPECS = {
    "seresnet50": "se_resnet50_tv",
    "seresnext50_32x4d": "se_resnext50_tv",
    "legacy_seresnet50": "se_resnet50",
    "legacy_seresnext50_32x4d": "se_resnext50",
    "legacy_senet154": "senet154",
}
needs_shared = pytest.mark.skipif(not TSV.is_dir(), reason="../shared/reference/state_dicts not present")


def _spec(layout):
    path = SPECS / f"{LAYOUT_SPECS[layout]}.yaml"
    if not path.exists():
        pytest.skip(f"{path.name} not written yet")
    return path


def read_tsv(layout) -> dict:
    """key -> shape, as listed for the published model."""
    out = {}
    for line in (TSV / f"{layout}.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        out[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return out


def random_state_dict(shapes: dict, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randint(0, 100, s, generator=g) if k.endswith("num_batches_tracked")
            else torch.randn(s, generator=g) for k, s in shapes.items()}


# -- hand-written references (timm module names) -------------------------------------------
class SE(nn.Module):
    """timm SEModule / legacy SEModule: mean -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid -> scale."""

    def __init__(self, c, rd):
        super().__init__()
        self.fc1 = nn.Conv2d(c, rd, 1)
        self.fc2 = nn.Conv2d(rd, c, 1)

    def forward(self, x):
        s = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


class Bottleneck(nn.Module):
    """`stride_at` 0: stride on the 1x1 (legacy SEResNetBottleneck), 1: on the 3x3 (timm, ResNeXt, SENet)."""

    def __init__(self, cin, mid, width, out, stride, groups, stride_at, se_name, down_kernel):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 1, stride if stride_at == 0 else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, width, 3, stride if stride_at == 1 else 1, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se_name = se_name
        setattr(self, se_name, SE(out, out // 16))
        self.downsample = None
        if stride != 1 or cin != out:
            k = down_kernel if stride != 1 else 1
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, k, stride, k // 2, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = getattr(self, self.se_name)(self.bn3(self.conv3(y)))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class Reference(nn.Module):
    def __init__(self, layout):
        super().__init__()
        self.legacy = layout.startswith("legacy_")
        senet = "senet" in layout
        groups = 64 if senet else 32 if "resnext" in layout else 1
        depths = [3, 8, 36, 3] if senet else [3, 4, 6, 3]
        stride_at = 0 if layout == "legacy_seresnet50" else 1
        stem = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
        if senet:   # three 3x3 convs
            stem = [nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                    nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                    nn.Conv2d(64, 128, 3, 1, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU()]
        # timm: max pool padded by 1, rounded down; the Caffe ports: no padding, rounded up
        pool = nn.MaxPool2d(3, 2, ceil_mode=True) if self.legacy else nn.MaxPool2d(3, 2, 1)
        if self.legacy:
            names = [f"{k}{i // 3 + 1}" for i, k in enumerate(["conv", "bn", "relu"] * (len(stem) // 3))]
            self.layer0 = nn.Sequential(OrderedDict(zip(names + ["pool"], stem + [pool])))
        else:
            self.conv1, self.bn1, self.act1 = stem
            self.maxpool = pool
        cin = 128 if senet else 64
        for s, n in enumerate(depths):
            planes = 64 * 2 ** s
            out = planes * 4
            if senet:                 # SEBottleneck: 1x1 2p, 3x3 4p (64 groups)
                mid, width = planes * 2, planes * 4
            else:                     # ResNeXt: base width 4 per group; ResNet: planes
                mid = width = planes * groups // 16 if groups > 1 else planes
            blocks = []
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                down_kernel = 3 if senet and s > 0 else 1
                blocks.append(Bottleneck(cin, mid, width, out, stride, groups, stride_at,
                                         "se_module" if self.legacy else "se", down_kernel))
                cin = out
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        if self.legacy:
            self.last_linear = nn.Linear(2048, 1000)
        else:
            self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        x = self.layer0(x) if self.legacy else self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x)))).mean((2, 3))
        return self.last_linear(x) if self.legacy else self.fc(x)


def randomise(model: nn.Module, seed=0) -> nn.Module:
    """Random weights everywhere, BN affine and running statistics included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# -- tests -----------------------------------------------------------------------------------
@needs_shared
@pytest.mark.parametrize("layout", list(LAYOUT_SPECS))
def test_reference_state_dict_loads_without_missing_or_unexpected(layout):
    shapes = read_tsv(layout)
    sd = random_state_dict(shapes)
    assert detect_layout(sd).name == layout
    model = secompile.compile(_spec(layout))
    report = load_weights(model, sd)
    assert report.ok, str(report)
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    assert len(report.loaded) == len(shapes)
    # every tensor arrived where the report says
    msd = model.state_dict()
    for src, dst in report.loaded:
        assert torch.equal(msd[dst], sd[src]), (src, dst)


@needs_shared
@pytest.mark.parametrize("layout", list(LAYOUT_SPECS))
def test_hand_written_reference_has_the_published_keys(layout):
    ref = Reference(layout)
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == read_tsv(layout)


@pytest.mark.parametrize("layout", list(LAYOUT_SPECS))
def test_outputs_agree_with_hand_written_reference(layout):
    spec = _spec(layout)
    torch.manual_seed(0)
    ref = randomise(Reference(layout), seed=1)
    model = secompile.compile(spec).eval()
    report = load_weights(model, ref.state_dict())
    assert report.ok, str(report)
    # float64: with random BN statistics the activations grow through the 16-50 blocks (to 1e7
    # in SENet-154) and float32 rounding differences (addcmul vs mul + add) reach 1e-4 relative,
    # too close to what a real difference might give; in float64 a correct mapping agrees to
    # < 1e-7 (a misplaced stride, pool or SE gives > 1e-2: see the test below).
    ref, model = ref.double(), model.double()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        want, got = ref(x), model(x)
    assert want.abs().max() > 0 and want.std() > 1e-3   # a live signal, not zeros
    assert rel_err(got, want) < 1e-6


def test_wrong_stride_placement_is_refused_and_would_differ():
    """A legacy (stride on the 1x1) checkpoint into the timm-layout spec: every shape fits, the
    function differs — strict mode refuses it, and the non-strict result really is different."""
    ref = randomise(Reference("legacy_seresnet50"), seed=3)
    model = secompile.compile(SPECS / "se_resnet50_tv.yaml").eval()
    with pytest.raises(WeightsError) as e:
        load_weights(model, ref.state_dict())
    msg = str(e.value)
    assert "the stride sits on branch conv 2 (3x3); legacy_seresnet50 puts it on conv 1 (1x1)" in msg
    assert "stem max pool" in msg and "specs/se_resnet50.yaml" in msg
    assert e.value.report.missing == [] and e.value.report.mismatched == []
    report = load_weights(model, ref.state_dict(), strict=False)
    assert len(report.structure) == 4
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(model(x), ref(x)) > 1e-2


def test_missing_unexpected_and_mismatched_keys_are_reported():
    ref = Reference("seresnet50")
    sd = dict(ref.state_dict())
    del sd["layer2.1.se.fc2.bias"]                        # missing
    sd["layer9.extra.weight"] = torch.zeros(3)           # unexpected
    sd["fc.weight"] = torch.zeros(10, 2048)              # a 10-class head
    sd["fc.bias"] = torch.zeros(10)
    model = secompile.compile(SPECS / "se_resnet50_tv.yaml")
    before = model.state_dict()["head.fc.weight"].clone()
    with pytest.raises(WeightsError) as e:
        load_weights(model, sd)
    r = e.value.report
    assert r.missing == ["stages.1.blocks.1.se.fc2.bias"]
    assert r.unexpected == ["layer9.extra.weight"]
    assert ("fc.weight", "head.fc.weight", (10, 2048), (1000, 2048)) in r.mismatched
    assert "fc.weight 10x2048 -> head.fc.weight 1000x2048" in str(e.value)
    assert torch.equal(model.state_dict()["head.fc.weight"], before)   # strict: nothing loaded
    # non-strict: the rest loads (fine-tuning with a new head)
    r = load_weights(model, sd, strict=False)
    assert len(r.loaded) == len(ref.state_dict()) - 3
    assert torch.equal(model.state_dict()["stem.conv1.conv.weight"], sd["conv1.weight"])


def test_checkpoint_files_wrappers_and_source_names(tmp_path):
    ref = randomise(Reference("legacy_seresnext50_32x4d"), seed=4)
    path = tmp_path / "ckpt.pth"
    # a DDP-trained checkpoint wrapped like timm's train script writes it
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    model = secompile.compile(SPECS / "se_resnext50.yaml").eval()
    report = load_weights(model, path, source="legacy_seresnext50_32x4d")
    assert report.ok and report.layout.name == "legacy_seresnext50_32x4d"
    with pytest.raises(ValueError, match="laid out like 'legacy_seresnext50_32x4d', not 'seresnet50'"):
        load_weights(model, path, source="seresnet50")
    # a compiled model's own checkpoint round-trips under the "secompile" layout
    other = secompile.compile(SPECS / "se_resnext50.yaml", seed=9).eval()
    assert load_weights(other, model.state_dict(), source="secompile").ok
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(other(x), model(x))
    # a layout never seen is paired by structure, and the first module that differs is named
    with pytest.raises(WeightsError, match="module #0 differs .a different kind of module.: "
                       r"checkpoint features.0 \(unknown 1, no bias\) vs model stem.conv1.conv"):
        load_weights(model, {"features.0.weight": torch.zeros(1)})


def test_lazy_reexport():
    assert secompile.load_weights is load_weights
    model = secompile.compile(SPECS / "se_resnet20_cifar.yaml")
    mapped, report = map_state_dict(model, model.state_dict(), source="secompile")
    assert report.ok and set(mapped) == set(model.state_dict())


def test_one_checkpoint_reader_for_load_weights_and_onnx_export(tmp_path):
    """load_weights and ONNX export read the same files the same way (backends/checkpoint.py)."""
    pytest.importorskip("onnx")
    spec = SPECS / "se_resnet20_cifar.yaml"
    model = secompile.compile(spec, seed=5).eval()
    path = tmp_path / "ema.pt"   # timm's EMA weights, saved from a DataParallel model
    torch.save({"epoch": 1, "state_dict_ema": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    other = secompile.compile(spec, seed=6).eval()
    assert load_weights(other, path, source="secompile").ok
    assert secompile.to_onnx(spec, path).SerializeToString() == secompile.to_onnx(spec, model).SerializeToString()
    for reader in (lambda p: load_weights(other, p, source="secompile"), lambda p: secompile.to_onnx(spec, p)):
        with pytest.raises(secompile.SpecError, match="no such checkpoint file"):
            reader(tmp_path / "missing.pt")


# -- the modern SE family (issue 13) ---------------------------------------------------------
NEW_LAYOUTS = {   # timm model -> detected layout name
    "seresnet18": "seresnet18", "seresnet34": "seresnet34",
    "seresnext26d_32x4d": "seresnext26d_32x4d", "ecaresnet50d": "ecaresnet50d",
    "skresnet18": "skresnet18", "efficientnet_b0": "efficientnet",
    "mobilenetv3_large_100": "mobilenetv3", "mobilenetv3_small_100": "mobilenetv3",
    "regnety_008": "regnet", "regnety_032": "regnet",
}
RESNET_FAMILY_SPECS = ("seresnet18", "seresnet34", "seresnext26d_32x4d")


@needs_shared
@pytest.mark.parametrize("name", list(NEW_LAYOUTS))
def test_new_timm_layouts_are_recognised(name):
    """Regression: BasicBlock layouts were named by counting 3 convs a block (seresnet18 ->
    'seresnet26', seresnet34 -> 'seresnet50') and then refused with false stride differences."""
    assert detect_layout(random_state_dict(read_tsv(name))).name == NEW_LAYOUTS[name]


@needs_shared
@pytest.mark.parametrize("name", RESNET_FAMILY_SPECS)
def test_timm_resnet_family_loads_into_its_spec(name):
    shapes = read_tsv(name)
    sd = random_state_dict(shapes)
    with torch.device("meta"):
        model = secompile.compile(SPECS / f"{name}.yaml")
    for source in ("timm", name):
        _, report = map_state_dict(model, sd, source=source)
        assert report.ok, str(report)
        assert (report.missing, report.unexpected, report.structure) == ([], [], [])
        assert len(report.loaded) == len(shapes)
    assert str(report).splitlines()[0] == (
        f"weights ({name} layout): {len(shapes)} tensors loaded, 0 missing, 0 unexpected, "
        "0 shape mismatches")


@needs_shared
def test_basic_block_checkpoint_is_not_mistaken_for_a_bottleneck_one():
    sd = random_state_dict(read_tsv("seresnet18"))
    with torch.device("meta"):
        model = secompile.compile(SPECS / "seresnet18.yaml")
    with pytest.raises(ValueError, match="laid out like 'seresnet18', not 'seresnet26'"):
        map_state_dict(model, sd, source="seresnet26")
    # seresnet18's weights into seresnet34: the 8 blocks it lacks are missing (14 tensors each),
    # the depths are named, and no stride differences are invented
    with torch.device("meta"):
        deeper = secompile.compile(SPECS / "seresnet34.yaml")
    _, report = map_state_dict(deeper, sd)
    assert report.structure == ["blocks per stage: the model has 3-4-6-3, the seresnet18 "
                                "checkpoint 2-2-2-2 (layer1.*, layer2.*, ...)"]
    assert len(report.missing) == 8 * 14 and report.unexpected == []


def test_resnet_d_shortcut_is_checked(tmp_path):
    """A strided 1x1 shortcut conv where seresnext26d average-pools: shapes fit, structure not."""
    text = (SPECS / "seresnext26d_32x4d.yaml").read_text()
    text = text.replace('kernel: 2, stride: $stride', "kernel: 1, stride: 1")
    text = text.replace("{name: down, conv: {out: $out, kernel: 1, act: none}}",
                        "{name: down, conv: {out: $out, kernel: 1, stride: $stride, act: none}}")
    path = tmp_path / "seresnext26_plain_shortcut.yaml"
    path.write_text(text)
    with torch.device("meta"):
        model = secompile.compile(path)
    sd = random_state_dict(read_tsv("seresnext26d_32x4d")) if TSV.is_dir() else None
    if sd is None:
        pytest.skip("../shared/reference/state_dicts not present")
    _, report = map_state_dict(model, sd)
    assert report.structure == [
        f"stages.{s}.blocks.0: the strided shortcut strides its conv; seresnext26d_32x4d "
        "average-pools (2x2, ceil) before a 1x1/1 conv" for s in (1, 2, 3)]
    assert report.missing == [] and report.unexpected == []


# -- pairing in graph order (layouts without ResNet units) ------------------------------------
EFFNET_LIKE = """
name: effnet_like
input: {channels: 3, size: [32, 32]}
stem:
  - {name: conv_stem, conv: {out: 32, kernel: 3, stride: 2, act: silu}}
stages:
  - name: b0
    layers:
      - {name: dw, conv: {out: 32, kernel: 3, groups: 32, act: silu}}
      - {name: pw, conv: {out: 16, kernel: 1, act: none}}
head:
  - {name: conv_head, conv: {out: 64, kernel: 1, act: silu}}
  - {name: pool, global_avgpool: {}}
  - {name: classifier, linear: {out: 10}}
se:
  - {where: {path: "stages.0.dw"}, position: after, channels: 8}
"""


class TinyEfficientNet(nn.Module):
    """timm EfficientNet module names: conv_stem, bn1, blocks.0.0.{conv_dw, bn1, se, conv_pw, bn2},
    conv_head, bn2, classifier (a depthwise-separable block with an SE on the depthwise output)."""

    def __init__(self, pw_out=16):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        block = nn.Module()
        block.conv_dw = nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False)
        block.bn1 = nn.BatchNorm2d(32)
        block.se = nn.Module()
        block.se.conv_reduce = nn.Conv2d(32, 8, 1)
        block.se.conv_expand = nn.Conv2d(8, 32, 1)
        block.conv_pw = nn.Conv2d(32, pw_out, 1, bias=False)
        block.bn2 = nn.BatchNorm2d(pw_out)
        self.blocks = nn.Sequential(nn.Sequential(block))
        self.conv_head = nn.Conv2d(pw_out, 64, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        silu = nn.functional.silu
        b = self.blocks[0][0]
        x = silu(self.bn1(self.conv_stem(x)))
        x = silu(b.bn1(b.conv_dw(x)))
        s = b.se.conv_expand(torch.relu(b.se.conv_reduce(x.mean((2, 3), keepdim=True))))
        x = b.bn2(b.conv_pw(x * s.sigmoid()))
        x = silu(self.bn2(self.conv_head(x)))
        return self.classifier(x.mean((2, 3)))


def test_unknown_units_are_paired_in_graph_order(tmp_path):
    path = tmp_path / "effnet_like.yaml"
    path.write_text(EFFNET_LIKE)
    ref = randomise(TinyEfficientNet(), seed=7)
    model = secompile.compile(path).eval()
    report = load_weights(model, ref.state_dict())
    assert report.layout.name == "efficientnet" and report.ok, str(report)
    assert len(report.loaded) == len(ref.state_dict()) == 30
    assert ("blocks.0.0.se.conv_reduce.bias", "stages.0.dw_se.fc1.bias") in report.loaded
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        want, got = ref(x), model(x)
    assert want.std() > 1e-3 and rel_err(got, want) < 1e-5


def test_graph_order_pairing_names_the_first_difference(tmp_path):
    path = tmp_path / "effnet_like.yaml"
    path.write_text(EFFNET_LIKE)
    model = secompile.compile(path)
    with pytest.raises(WeightsError) as e:
        load_weights(model, TinyEfficientNet(pw_out=24).state_dict())
    r = e.value.report
    assert r.structure == [
        "module #6 differs (different weight shapes): checkpoint blocks.0.0.conv_pw "
        "(conv 24x32x1x1, no bias) vs model stages.0.pw.conv (conv 16x32x1x1, no bias)"]
    assert len(r.loaded) == 16 and r.unexpected[0] == "blocks.0.0.bn2.bias"
    assert r.missing[0] == "stages.0.pw.conv.weight"


def test_alphabetical_checkpoints_are_paired_by_their_module_tree(tmp_path):
    """A .safetensors file lists its keys by name: the run order is lost, and the checkpoint's
    module tree (numbered children in order, named ones in any) recovers it."""
    path = tmp_path / "effnet_like.yaml"
    path.write_text(EFFNET_LIKE)
    ref = randomise(TinyEfficientNet(), seed=7)
    model = secompile.compile(path).eval()
    sd = dict(sorted(ref.state_dict().items()))
    assert next(iter(sd)) == "blocks.0.0.bn1.bias"
    report = load_weights(model, sd)
    assert report.ok and len(report.loaded) == 30
    assert ("bn1.weight", "stem.conv_stem.bn.weight") in report.loaded
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert rel_err(model(x), ref(x)) < 1e-5


def test_alphabetical_checkpoint_that_does_not_fit_names_the_model_module(tmp_path):
    path = tmp_path / "effnet_like.yaml"
    path.write_text(EFFNET_LIKE)
    model = secompile.compile(path)
    sd = dict(sorted(TinyEfficientNet(pw_out=24).state_dict().items()))
    with pytest.raises(WeightsError) as e:
        load_weights(model, sd)
    assert e.value.report.structure == [
        "model module #6 stages.0.pw.conv (conv 16x32x1x1, no bias) has no checkpoint module "
        "of its kind and shapes (its keys are in alphabetical order, so modules are paired by "
        "the checkpoint's module tree); left over in the checkpoint: blocks.0.0.conv_pw "
        "(conv 24x32x1x1, no bias)"]


def test_pair_in_order_on_synthetic_module_lists():
    from secompile.backends.torch.weights_in_order import Module, pair_in_order
    conv = lambda n, *s: Module(n, "conv", {"weight": s})                      # noqa: E731
    stats = ("weight", "bias", "running_mean", "running_var")
    bn = lambda n, c: Module(n, "bn", {e: (c,) for e in stats})                  # noqa: E731
    src = [conv("s1.b1.conv1.conv", 8, 4, 1, 1), bn("s1.b1.conv1.bn", 8),
           Module("s1.b1.se.fc1", "conv", {"weight": (2, 8, 1, 1), "bias": (2,)})]
    dst = [conv("a.conv", 8, 4, 1, 1), bn("a.bn", 8),
           Module("a_se.fc1", "conv", {"weight": (2, 8, 1, 1), "bias": (2,)})]
    assert pair_in_order(src, dst) == (list(zip(src, dst)), None, 3)
    pairs, why, n = pair_in_order(src, dst[:2] + [conv("a_se.fc1", 2, 8, 1, 1)])
    assert n == 2 and why == ("module #2 differs (bias on one side only): checkpoint s1.b1.se.fc1 "
                              "(conv 2x8x1x1 + bias) vs model a_se.fc1 (conv 2x8x1x1, no bias)")
    _, why, n = pair_in_order(src, [dst[1]] + dst)
    assert n == 0 and why == ("module #0 differs (a different kind of module): checkpoint "
                              "s1.b1.conv1.conv (conv 8x4x1x1, no bias) vs model a.bn (bn 8)")
    _, why, n = pair_in_order(src + [bn("s1.b1.conv2.bn", 8)], dst)
    assert n == 3 and why == ("the checkpoint has 1 more modules than the model (4 vs 3), from "
                              "s1.b1.conv2.bn (bn 8)")
    fc = Module("head.fc", "linear", {"weight": (10, 8), "bias": (10,)})
    _, why, _ = pair_in_order(src, dst + [fc])
    assert why == ("the model has 1 more modules than the checkpoint (4 vs 3), "
                   "from head.fc (linear 10x8 + bias)")


@needs_shared
@pytest.mark.parametrize("name", RESNET_FAMILY_SPECS)
def test_graph_order_pairing_agrees_with_slots_on_timm_resnets(name):
    """The graph-order rule behind the EfficientNet/MobileNet/RegNet/ECA/SK layouts holds where
    both rules apply: on timm's ResNets it pairs every tensor exactly as the slots do."""
    from secompile.backends.torch.weights_in_order import (
        checkpoint_modules,
        model_modules,
        pair_in_order,
    )
    sd = random_state_dict(read_tsv(name))
    with torch.device("meta"):
        model = secompile.compile(SPECS / f"{name}.yaml")
    pairs, difference, _ = pair_in_order(checkpoint_modules(sd), model_modules(model))
    assert difference is None
    in_order = {f"{s.name}.{e}": f"{d.name}.{e}" for s, d in pairs for e in s.shapes}
    _, report = map_state_dict(model, sd)
    assert in_order == dict(report.loaded)
