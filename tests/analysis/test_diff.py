"""secompile diff: what changed per stage and per block, with exact deltas."""
import json
import subprocess
import sys

import pytest

import secompile
from secompile.analysis.diff import changed_paths, diff_graphs
from support import ROOT, SPECS

R50, SE50, SE50TV = SPECS / "resnet50.yaml", SPECS / "se_resnet50.yaml", SPECS / "se_resnet50_tv.yaml"


def run(*args):
    return subprocess.run([sys.executable, "-m", "secompile", *args], cwd=ROOT, capture_output=True, text=True)


def test_resnet50_to_se_resnet50_is_16_se_blocks():
    d = secompile.diff(R50, SE50)
    t = d["totals"]
    assert t["params"] == {"a": 25_557_032, "b": 28_088_024, "delta": 2_530_992}
    assert t["macs"]["delta"] == 13_553_664 and t["se_blocks"] == {"a": 0, "b": 16, "delta": 16}
    assert (t["nodes_added"], t["nodes_removed"], t["nodes_changed"]) == (96, 0, 16)
    assert len(d["se"]["added"]) == 16 and d["se"]["removed"] == []
    assert d["se"]["params_added"] == 2_530_992
    # per block: one SE scope (6 nodes) each, the residual add now reads its scale
    blocks = [u for u in d["units"] if u["path"].startswith("stages.")]
    assert len(blocks) == 16 and all(u["status"] == "changed" for u in blocks)
    b = next(u for u in blocks if u["path"] == "stages.0.blocks.0")
    assert b["se_added"] == ["stages.0.blocks.0.se"] and len(b["added"]) == 6
    assert b["rewired"] == ["stages.0.blocks.0.add"]
    assert b["changed"] == [{"path": "stages.0.blocks.0.add",
                             "inputs": [["stages.0.blocks.0.shortcut.0.bn", "stages.0.blocks.0.branch.conv3.bn"],
                                        ["stages.0.blocks.0.shortcut.0.bn", "stages.0.blocks.0.se.scale"]]}]
    assert b["params"]["delta"] == 8_464            # 2 * 256 * 16 + 16 + 256
    # per stage: C^2 * 2/16 * N plus biases
    assert [s["params"]["delta"] for s in d["stages"]] == [25_392, 133_248, 792_960, 1_579_392]
    assert [s["se_blocks"]["delta"] for s in d["stages"]] == [3, 4, 6, 3]
    assert sum(s["params"]["delta"] for s in d["stages"]) == 2_530_992


def test_caffe_to_torchvision_layout_changes_strides_not_params():
    d = secompile.diff(SE50, SE50TV)
    t = d["totals"]
    assert t["params"]["delta"] == 0 and t["macs"]["delta"] == 231_211_008 and t["se_blocks"]["delta"] == 0
    stem = next(u for u in d["units"] if u["path"] == "stem")
    assert stem["changed"] == [{"path": "stem.pool", "attrs": {"ceil_mode": [True, False], "padding": [[0, 0], [1, 1]]}}]
    b = next(u for u in d["units"] if u["path"] == "stages.1.blocks.0")
    conv1 = next(c for c in b["changed"] if c["path"] == "stages.1.blocks.0.branch.conv1.conv")
    assert conv1["attrs"] == {"stride": [[2, 2], [1, 1]]} and conv1["shape"] == [[128, 28, 28], [128, 56, 56]]
    assert [s["status"] for s in d["stages"]] == ["same", "changed", "changed", "changed"]


def test_blocks_added_by_an_override_and_identical_graphs():
    d = secompile.diff(SE50, SE50, overrides_b={"stages.2.repeat": 8})
    s2 = d["stages"][2]
    assert s2["blocks"] == {"a": 6, "b": 8, "delta": 2} and s2["se_blocks"]["delta"] == 2
    assert [u["path"] for u in d["units"] if u["status"] == "added"] == ["stages.2.blocks.6", "stages.2.blocks.7"]
    # a 1024-256-1024 bottleneck: convs 262,144 + 589,824 + 262,144, BN 2 x (256 + 256 + 1024),
    # SE 2 x 1024 x 64 + 64 + 1024
    assert d["totals"]["params"]["delta"] == 2 * (1_114_112 + 3_072 + 132_160)
    same = secompile.diff(SE50, SE50)
    assert same["same"] and same["units"] == [] and same["totals"]["params"]["delta"] == 0


def test_removed_se_and_changed_paths():
    g50, g = secompile.build_ir(SE50), secompile.build_ir(R50)
    d = diff_graphs(g50, g)
    assert len(d["se"]["removed"]) == 16 and d["se"]["params_removed"] == 2_530_992
    assert d["totals"]["nodes_removed"] == 96
    assert changed_paths(d) == {f"{u}.add": "changed" for u in g.blocks}


def test_cli_diff_text_json_and_draw(tmp_path):
    out = run("diff", "specs/resnet50.yaml", "specs/se_resnet50.yaml", "--draw", str(tmp_path / "d.svg"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:6] == [
        "resnet50 -> se_resnet50",
        "  params     25,557,032 -> 28,088,024 (+2,530,992), +9.90%",
        "  MACs       3,858,073,600 -> 3,871,627,264 (+13,553,664)",
        "  conv+fc    3,857,973,248 -> 3,860,488,192 (+2,514,944)",
        "  SE blocks  0 -> 16: 16 added (+2,530,992 params, +13,553,664 MACs), 0 removed",
        "  nodes      175 -> 271: 96 added, 0 removed, 16 changed"]
    assert "+SE se: 256->16->256" in out.stdout and lines[-1] == f"wrote {tmp_path / 'd.svg'}"
    svg = (tmp_path / "d.svg").read_text()
    assert svg.count('class="node se diff&#45;added"') == 16 and svg.count('class="node diff&#45;changed"') == 16
    assert "resnet50 → se_resnet50" in svg
    out = run("diff", "specs/resnet50.yaml", "specs/se_resnet50.yaml", "--json")
    assert json.loads(out.stdout)["totals"]["params"]["delta"] == 2_530_992


def test_cli_diff_bad_spec_exits_2():
    out = run("diff", "specs/resnet50.yaml", "specs/nope.yaml")
    assert out.returncode == 2 and out.stderr == "specs/nope.yaml:1:1: <file>: cannot read: No such file or directory\n"


# Every pair of a sample mixing SE, ECA, CBAM, SK, MBConv (a layer-written SE), plain nets.
PAIR_SAMPLE = ("resnet50", "se_resnet50", "eca_resnet50", "cbam_resnet50", "skresnet18",
               "efficientnet_b0", "mbconv_demo", "seresnet18", "mobilenetv3_small_100",
               "se_shufflenet_v1_g3")


KINDS = {"resnet50": set(), "se_resnet50": {"se"}, "eca_resnet50": {"eca"},
         "cbam_resnet50": {"cbam"}, "skresnet18": {"sk"}, "efficientnet_b0": {"se"},
         "mbconv_demo": {"se"}, "seresnet18": {"se"}, "mobilenetv3_small_100": {"se"},
         "se_shufflenet_v1_g3": {"se"}}


@pytest.mark.slow
def test_diff_every_pair_of_a_zoo_sample_names_the_attention_modules():
    diff_every_pair(PAIR_SAMPLE)


def test_diff_every_pair_of_eca_cbam_sk_and_a_plain_net():
    diff_every_pair(("seresnet18", "skresnet18", "eca_resnet50", "cbam_resnet50"))


def diff_every_pair(sample):
    import io

    from secompile.sweep_cli import print_diff
    graphs = {n: secompile.build_ir(SPECS / f"{n}.yaml") for n in sample}
    kinds = {n: {m.kind for m in g.attention.values()} for n, g in graphs.items()}
    assert kinds == {n: KINDS[n] for n in sample}
    for a in sample:
        for b in sample:
            if a == b:
                continue
            d = diff_graphs(graphs[a], graphs[b])
            assert d["totals"]["se_blocks"] == {"a": len(graphs[a].attention),
                                                "b": len(graphs[b].attention),
                                                "delta": len(graphs[b].attention)
                                                - len(graphs[a].attention)}
            assert d["se"]["kinds"] == [sorted(kinds[a]), sorted(kinds[b])]
            out = io.StringIO()
            print_diff(d, file=out)
            # each module added or removed is a row naming what it is (the paper's SE: '+SE')
            text = out.getvalue()
            rows = [t for u in d["units"] for t in u["se"]]
            assert len(rows) == len(d["se"]["added"])
            for s, row in zip([s for u in d["units"] for s in u["se_added"]], rows):
                m = graphs[b].attention[s]
                assert row.startswith(f"{s}: " + ("" if m.module == "se" else m.module)), row
            removed = [t for u in d["units"] for t in u["se_removed_text"]]
            assert len(removed) == len(d["se"]["removed"])
            assert ("+SE" in text) == bool(rows)


def test_cli_diff_resnet50_to_eca_and_cbam_names_the_module():
    r = run("diff", "resnet50", "eca_resnet50")
    assert r.returncode == 0 and "+SE se: eca, 256 channels" in r.stdout, r.stderr
    d = secompile.diff(R50, SPECS / "cbam_resnet50.yaml")
    assert d["units"][1]["se"][0] == "stages.0.blocks.0.se: cbam, 256 channels"
    d = secompile.diff(R50, SPECS / "skresnet18.yaml")
    assert d["units"][1]["se"][0] == (
        "stages.0.blocks.0.branch.conv1.attn: sk_attention (sk), 64->16->64")
    d = secompile.diff(SE50, SPECS / "eca_resnet50.yaml")
    assert len(d["se"]["changed"]) == 16 and d["se"]["added"] == []
    u = next(u for u in d["units"] if u["se_changed"])
    assert u["se_changed"] == ["stages.0.blocks.0.se: se -> eca"]
