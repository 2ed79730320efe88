"""What a checkpoint is laid out like: a `Layout`, decided from its keys and shapes.

    layout = detect_layout(state_dict, model)   # Layout(name='seresnext26d_32x4d', ...)

Three ways of pairing follow from it (`Layout.pairing`):

- "names": the checkpoint of a compiled model (its keys are the model's own state_dict keys);
- "slots": timm ResNets and the ports of the Caffe SENets (`layer{s}.{b}.*` units), cut into
  (unit, role, kind, index) slots (weights_resnet.py), so that a checkpoint of another depth
  still loads what fits and the block counts are named;
- "structure": everything else, timm's EfficientNet, MobileNetV3, RegNet, ECA/SK-ResNets, and
  layouts never seen (ReXNet, ResNeSt, ByobNet...): modules paired by kind and shape in the
  checkpoint's order or by its module tree (weights_in_order.py).

The ResNet facts a checkpoint implies beyond its shapes (where the stride sits, how the stem
pools) are fields (`Facts`) derived from the detected fields, never from the layout's name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# The published layouts: which spec of ours reproduces each one.
LAYOUTS = {
    "seresnet50": "specs/se_resnet50_tv.yaml",
    "seresnext50_32x4d": "specs/se_resnext50_tv.yaml",
    "legacy_seresnet50": "specs/se_resnet50.yaml",
    "legacy_seresnext50_32x4d": "specs/se_resnext50.yaml",
    "legacy_senet154": "specs/senet154.yaml",
    "seresnet18": "specs/seresnet18.yaml",
    "seresnet34": "specs/seresnet34.yaml",
    "seresnext26d_32x4d": "specs/seresnext26d_32x4d.yaml",
    "ecaresnet50d": "specs/ecaresnet50d.yaml",
    "skresnet18": "specs/skresnet18.yaml",
}
BLOCK_KEY = re.compile(r"^layer([1-9]\d*)\.(\d+)\.(.+)$")
# our own keys: stem.*, stages.<i>.blocks.<j>.<branch|shortcut|...>.* or stages.<i>.<layer>.*
_OWN_BLOCK = re.compile(r"^stages\.\d+\.blocks\.\d+\.(branch|shortcut|post|se|[a-z_]+_se)\.")


@dataclass(frozen=True)
class Facts:
    """What a ResNet layout's network computes beyond its weight shapes."""
    stride_conv: int | None       # index of the branch conv carrying a block's stride
    pool_padding: int             # stem max pool
    pool_ceil: bool
    shortcut_kernel: int          # kernel of a strided projection shortcut
    avg_down: bool = False        # strided shortcuts average-pool before a 1x1/1 conv (ResNet-D)


@dataclass(frozen=True)
class Layout:
    name: str                     # "seresnet50", "legacy_senet154", "efficientnet", ...
    pairing: str                  # "names" | "slots" | "structure"
    family: str = ""              # "timm_resnet", "legacy_senet", "efficientnet", ... or ""
    blocks: tuple = ()            # blocks per stage (ResNet layouts)
    basic: bool = False           # two 3x3 convs a block (BasicBlock), no conv3
    groups: int = 1               # groups of the 3x3 conv (ResNeXt, SENet)
    attention: str = ""           # "se" | "eca" | "sk" | ""
    deep_stem: bool = False       # timm's "D" stem (conv1.0, conv1.3, conv1.6) + avg_down
    stem_convs: int = 1           # the legacy SENet-154 stem has three
    facts: Facts | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.name

    @property
    def spec(self) -> str | None:
        """The shipped spec that reproduces this layout's network, if there is one."""
        return LAYOUTS.get(self.name)


OWN = Layout("secompile", "names")


def _unknown(name: str = "structural", family: str = "") -> Layout:
    return Layout(name, "structure", family)


def _own_keys(keys: set, model_keys: set | None) -> bool:
    """Whether the checkpoint is a compiled model's own: judged by the model's keys when the
    model is known (most checkpoint keys are its keys), else by the grammar of our paths —
    never by a `stages.` prefix alone, which timm's ByobNet, ConvNeXt and CSPNet share."""
    if model_keys is not None:
        return len(keys & model_keys) * 2 > len(keys)
    heads = {k.split(".", 1)[0] for k in keys}
    return heads <= {"stem", "stages", "head"} and any(_OWN_BLOCK.match(k) for k in keys)


def detect_layout(sd: dict, model_keys: set | None = None) -> Layout:
    """The layout of a state_dict ({str key: tensor}); `model_keys` (the target model's
    state_dict keys) tells a compiled model's own checkpoint apart from look-alikes."""
    keys = set(sd)
    if _own_keys(keys, model_keys):
        return OWN
    if "conv_stem.weight" in keys and any(k.startswith("blocks.") for k in keys):
        # MobileNetV3's "efficient head" is a biased 1x1 conv on the pooled map, without BN
        family = "mobilenetv3" if "conv_head.bias" in keys else "efficientnet"
        return _unknown(family, family)
    if "stem.conv.weight" in keys and any(k.startswith("s1.b1.") for k in keys):
        return _unknown("regnet", "regnet")
    if "layer0.conv1.weight" in keys:
        legacy = True
    elif "conv1.weight" in keys or "conv1.0.weight" in keys:
        legacy = False
    else:
        return _unknown()
    return _resnet(sd, keys, legacy)


def _resnet(sd: dict, keys: set, legacy: bool) -> Layout:
    stages: dict[int, set] = {}
    for k in keys:
        m = BLOCK_KEY.match(k)
        if m:
            stages.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    blocks = tuple(len(stages[s]) for s in sorted(stages))
    family = "legacy_senet" if legacy else "timm_resnet"
    if any(k.startswith("layer1.0.conv1.paths.") for k in keys):
        # SelectiveKernelBasic: two weighted layers a block
        return Layout(f"skresnet{2 * sum(blocks) + 2}", "structure", family, blocks, basic=True,
                      attention="sk")
    w1, w2 = sd.get("layer1.0.conv1.weight"), sd.get("layer1.0.conv2.weight")
    if w1 is None or w2 is None or w1.dim() != 4 or w2.dim() != 4:
        # a ResNet-like net with other blocks (ResNeSt's split attention, ...): by structure
        return _unknown("resnet_like", family)
    basic = "layer1.0.conv3.weight" not in keys
    grouped = w1 if basic else w2
    groups = grouped.shape[0] // grouped.shape[1] if grouped.shape[1] else 1
    if any(k.endswith(".se.conv.weight") and sd[k].dim() == 3 for k in keys):
        attention = "eca"
    else:
        attention = "se" if any(".se." in k or ".se_module." in k for k in keys) else ""
    depth = (2 if basic else 3) * sum(blocks) + 2
    deep = "conv1.0.weight" in keys
    stem_convs = 3 if legacy and "layer0.conv3.weight" in keys else 1
    if stem_convs == 3:
        name = f"legacy_senet{depth + 2}"   # the three-conv stem counts two more layers
    else:
        d = "d" if deep else ""
        arch = (f"{attention}resnext{depth}{d}_{groups}x{w2.shape[0] // groups}d" if groups > 1
                else f"{attention}resnet{depth}{d}")
        name = f"legacy_{arch}" if legacy else arch
    if legacy:
        facts = Facts(stride_conv=1 if groups > 1 else 0, pool_padding=0, pool_ceil=True,
                      shortcut_kernel=3 if stem_convs == 3 else 1)
    else:   # timm: always the first 3x3 (BasicBlock conv1, Bottleneck conv2)
        facts = Facts(stride_conv=0 if basic else 1, pool_padding=1, pool_ceil=False,
                      shortcut_kernel=1, avg_down=deep)
    pairing = "structure" if attention == "eca" else "slots"
    return Layout(name, pairing, family, blocks, basic, groups, attention, deep, stem_convs, facts)
