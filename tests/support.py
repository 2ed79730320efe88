"""Paths shared by the tests (a module of its own: tests/properties has its own conftest.py,
so `from conftest import ...` would be ambiguous)."""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SHARED = ROOT.parent / "shared"


def all_specs():
    return sorted(p for p in SPECS.glob("*.yaml"))


# Zoo specs whose every-spec tests stay in the default run: small, and between them SE, MBConv
# with attention layers and a 224x224 ResNet. `-m slow` runs the whole zoo.
CHEAP = ("se_resnet20_cifar", "mbconv_demo", "seresnet18")


def zoo_cases(cheap=CHEAP, keep=lambda path: False):
    """Every zoo spec as a pytest param (id: the file's stem); all but the cheap ones (or those
    `keep` accepts) marked slow."""
    import pytest
    return [pytest.param(p, id=p.stem, marks=[] if p.stem in cheap or keep(p) else
                         [pytest.mark.slow]) for p in all_specs()]


def slow_unless_cheap(names, cheap=CHEAP):
    """Names as pytest params, the ones not in `cheap` marked slow."""
    import pytest
    return [pytest.param(n, id=n, marks=[] if n in cheap else [pytest.mark.slow]) for n in names]


def randomise_bn(model, gen):
    """Random BatchNorm weights and running statistics (from `gen`, a torch.Generator): with the
    default init a wrong block can still match, as its BN outputs are near an identity."""
    import torch
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.2, generator=gen)
                m.running_mean.normal_(0, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    return model
