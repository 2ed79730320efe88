"""timm's feature levels (passes/truncate.py `feature_levels`), analytically: channels and
reductions equal timm's `features_only` feature_info for every timm-named zoo spec
(tests/reference/timm_features.json, made by tools/timm_features.py in the timm venv), and
`out_indices` means what it means in timm."""
import json

import pytest

import secompile
from secompile.lang.errors import SpecError
from support import ROOT

TIMM = json.loads((ROOT / "tests" / "reference" / "timm_features.json").read_text())["models"]
# where a spec and timm's model differ on purpose, with the reason
DIFFERENT = {
    # the paper's VGG: pool5 opens the head (as in its table), so there is no /32 feature;
    # timm's `features` end with pool5
    "vgg16_bn": {"channels": [64, 128, 256, 512, 512], "reduction": [1, 2, 4, 8, 16]},
}


@pytest.mark.parametrize("name", sorted(TIMM))
def test_feature_info_is_timms(name):
    feats = secompile.count(name, features_only=True)["features"]
    ours = {"channels": [f["num_chs"] for f in feats], "reduction": [f["reduction"] for f in feats]}
    timm = {k: TIMM[name][k] for k in ("channels", "reduction")}
    assert ours == DIFFERENT.get(name, timm)
    assert [f["index"] for f in feats] == list(range(len(feats)))
    assert all("." not in f["module"] for f in feats)      # a child name torchvision accepts


def test_every_timm_named_spec_is_compared():
    assert set(TIMM) >= {"seresnet18", "efficientnet_b0", "mobilenetv3_large_100", "regnety_008"}
    assert set(TIMM) <= set(secompile.list_models())


def test_module_names_and_stages():
    feats = secompile.count("efficientnet_b0", features_only=True)["features"]
    assert [f["module"] for f in feats] == ["stages_0", "stages_1", "stages_2", "stages_4",
                                            "stages_6"]
    assert [f["stage"] for f in feats] == [1, 2, 3, 5, 7]         # timm's efficientnet: the same
    feats = secompile.count("inception_resnet_v2", features_only=True)["features"]
    assert [f["module"] for f in feats] == ["stem_conv2d_2b", "stem_conv2d_4a", "stages_1",
                                            "stages_3", "stages_7"]
    assert [f["reduction"] for f in feats] == [2, 4, 8, 16, 32]   # strides, not 299 / 35 = 8.5


def test_out_indices_as_in_timm():
    def picked(out_indices):
        rep = secompile.count("seresnet18", features_only=True, out_indices=out_indices)
        return [f["reduction"] for f in rep["features"]]
    assert picked(None) == [2, 4, 8, 16, 32]
    assert picked((1, 2, 3)) == [4, 8, 16]
    assert picked(2) == [16, 32]                    # an int: the last n
    assert picked((-1, 0)) == [2, 32]
    for bad, message in [
        ((5,), "5 is not a feature index of seresnet18 (it has 5 features: 0..4)"),
        (0, "0 (the last n features) is not in 1..5: seresnet18 has 5 features"),
        ((), "select at least one feature"),
    ]:
        with pytest.raises(SpecError) as e:
            picked(bad)
        assert e.value.messages == [f"<out_indices>:1:1: out_indices: {message}"]


def test_truncated_count_keeps_only_what_the_last_feature_reads():
    rep = secompile.count("seresnet18", features_only=True, out_indices=(0,))
    assert rep["output"] == [64, 112, 112] and rep["stages"] == [] and rep["head"] is None
    assert rep["total"]["params"] == 64 * 3 * 7 * 7 + 2 * 64    # conv1 and its BN
