"""Overrides (KEY=VALUE by dotted path): applied before validation, problems located at the override."""
import subprocess
import sys

import pytest

import secompile
from secompile.lang.document import load_spec
from secompile.lang.errors import SpecError
from secompile.lang.overrides import (
    apply_overrides,
    make_override,
    parse_key,
    parse_override,
    parse_vary,
)
from support import ROOT, SPECS

SE50 = SPECS / "se_resnet50.yaml"


def run(*args):
    return subprocess.run([sys.executable, "-m", "secompile", *args], cwd=ROOT, capture_output=True, text=True)


def messages(overrides, spec=SE50):
    with pytest.raises(SpecError) as e:
        secompile.build_ir(load_spec(spec, overrides=overrides))
    return e.value.messages


def test_parse_key_forms():
    assert parse_key("stages.0.repeat") == (("stages", 0, "repeat"), (1, 8, 10))
    assert parse_key("stages[0].repeat")[0] == ("stages", 0, "repeat")
    assert parse_key("head.1.linear.out")[0] == ("head", 1, "linear", "out")
    assert parse_key("stages.-1.repeat")[0] == ("stages", -1, "repeat")


def test_parse_override_value_is_yaml_with_marks():
    o = parse_override("se.0.where.stages=[0, 1, 2]", index=3)
    assert (o.key, o.path, o.value, o.index, o.value_col) == ("se.0.where.stages", ("se", 0, "where", "stages"),
                                                                [0, 1, 2], 3, 19)
    assert dict(o.marks)[(1,)].col == 23


def test_input_size_override_counts_like_an_edited_copy(tmp_path):
    edited = tmp_path / "se_resnet50_320.yaml"
    edited.write_text(SE50.read_text().replace("size: [224, 224]", "size: 320")
                      .replace("include: [blocks/resnet.yaml]", f"include: [{SPECS / 'blocks' / 'resnet.yaml'}]"))
    a = secompile.count(load_spec(SE50, overrides={"input.size": 320}))
    b = secompile.count(edited)
    assert a["total"] == b["total"] and a["total"]["macs"] == 7_896_530_944
    # and the CLI flag
    out = run("count", "specs/se_resnet50.yaml", "--set", "input.size=320", "--json")
    assert out.returncode == 0, out.stderr
    assert '"macs": 7896530944' in out.stdout and '"overrides": {\n    "input.size": 320' in out.stdout


def test_num_classes_by_override_and_recorded_on_the_spec():
    spec = load_spec(SE50, overrides=["head.1.linear.out=365", "stages.2.repeat=8"])
    assert spec.override_dict() == {"head.1.linear.out": 365, "stages.2.repeat": 8}
    assert [o.text for o in spec.overrides] == ["head.1.linear.out=365", "stages.2.repeat=8"]
    base = secompile.count(SE50)["total"]["params"]
    only_head = secompile.count(load_spec(SE50, overrides={"head.1.linear.out": 365}))["total"]["params"]
    assert base - only_head == 635 * 2049
    g = secompile.build_ir(spec)
    assert g.shape(g.output) == (365,) and len(g.stages[2].blocks) == 8


def test_the_loaded_spec_is_not_mutated():
    base = load_spec(SE50)
    v = load_spec(base, overrides={"stages.0.repeat": 1, "se.0.reduction": 4})
    assert base.data["stages"][0]["repeat"] == 3 and base.data["se"][0]["reduction"] == 16
    assert v.data["stages"][0]["repeat"] == 1 and base.overrides == ()
    again = load_spec(v, overrides={"stages.1.repeat": 2})        # overrides accumulate
    assert list(again.override_dict()) == ["stages.0.repeat", "se.0.reduction", "stages.1.repeat"]


def test_append_and_negative_index():
    spec = load_spec(SPECS / "resnet50.yaml",
                     overrides=["se=[{where: {stages: all}}]", "se.1={where: {stages: -1}, reduction: 4}",
                                "stages.-1.repeat=2"])
    g = secompile.build_ir(spec)
    assert len(g.se) == 15 and len(g.stages[3].blocks) == 2


@pytest.mark.parametrize("override, message", [
    ("stages.0.repeat=x", "--set:1:17: stages[0].repeat: expected a positive integer or a $-expression, got string 'x'"),
    ("stages[0].repeat=0", "--set:1:18: stages[0].repeat: must be >= 1, got 0"),
    ("stagse.0.repeat=2", "--set:1:1: stagse: unknown key 'stagse' in the spec (did you mean 'stages'?)"),
    ("se.0.reductoin=8", "--set:1:6: se[0].reductoin: unknown key 'reductoin' (did you mean 'reduction'?)"),
    ("stages.9.repeat=2", "--set:1:8: stages[9]: index 9 out of range (stages has 4 items)"),
    ("input.size.x=1", "--set:1:12: input.size.x: input.size is a list: index it with a number (0..1)"),
    ("stages.0.block=botleneck", "--set:1:16: stages[0].block: unknown block template 'botleneck' "
                                 "(did you mean 'bottleneck'?)"),
    ("stages.0.repeat", "--set:1:1: <override>: expected KEY=VALUE, got 'stages.0.repeat'"),
    ("stages.0.repeat=", "--set:1:17: stages.0.repeat: missing VALUE after '=' (YAML; write null for an empty value)"),
    ("stages.0.repeat=[1", "--set:1:19: <value>: expected ',' or ']', but got '<stream end>' "
                           "(while parsing a flow sequence)"),
    ("=3", "--set:1:1: <override>: missing KEY before '=' (KEY is a dotted path into the spec, e.g. stages.2.repeat)"),
])
def test_problems_are_located_at_the_override(override, message):
    assert messages([override]) == [message]


def test_second_override_is_line_two_and_spec_problems_stay_in_the_file():
    msgs = messages(["stages.0.repeat=2", "se.0.where.stages=[0, 7]"])
    assert msgs == ["--set:2:23: se[0].where.stages[1]: stage index 7 is out of range (the network has 4 stages)"]


def test_api_values_are_located_at_their_key():
    o = make_override("stages.0.repeat", "x", index=2)
    assert o.text == "stages.0.repeat=x"
    assert messages({"input.size": 224, "stages.0.repeat": "x"}) == [
        "<overrides>:2:17: stages[0].repeat: expected a positive integer or a $-expression, got string 'x'"]


def test_parse_vary_locates_each_alternative():
    key, alts = parse_vary("se.0.reduction=[4, x, 16]", index=2)
    assert key == "se.0.reduction" and [a.value for a in alts] == [4, "x", 16]
    assert [a.value_col for a in alts] == [17, 20, 23] and {a.index for a in alts} == {2}
    with pytest.raises(SpecError) as e:
        parse_vary("se.0.reduction=8")
    assert e.value.messages == ["--vary:1:16: se.0.reduction: expected a non-empty YAML list of alternatives "
                                "(se.0.reduction=[A, B, ...]), got '8'"]


def test_apply_overrides_remarks_the_subtree():
    spec = load_spec(SE50)
    data, smap = apply_overrides(spec.data, spec.smap, ["se.0.where={stages: [0, 1]}"])
    assert data["se"][0]["where"] == {"stages": [0, 1]}
    assert smap.mark(("se", 0, "where", "stages", 1)).file == "--set"
    assert smap.mark(("se", 0, "reduction")).file == spec.smap.file       # untouched siblings keep theirs
    assert smap.mark(("se", 0, "where", "stages"), key=True).col == 13


@pytest.mark.parametrize("cmd", [["validate"], ["count"], ["draw", "--format", "dot", "-o", "/dev/null"],
                                 ["export", "-o", "/dev/null"], ["build", "-o", "/dev/null", "--no-draw"]])
def test_cli_bad_set_exits_2_located_without_traceback(cmd):
    out = run(cmd[0], "specs/se_resnet50.yaml", *cmd[1:], "--set", "stages.0.repeat=x")
    assert out.returncode == 2
    assert out.stderr == "--set:1:17: stages[0].repeat: expected a positive integer or a $-expression, got string 'x'\n"


def test_cli_validate_with_set():
    out = run("validate", "specs/se_resnet50.yaml", "--set", "se.0.where.stages=[0, 1, 2]")
    assert out.returncode == 0 and "13 SE blocks" in out.stdout


def test_resnet50_with_se_rules_by_override_is_se_resnet50():
    rep = secompile.count(load_spec(SPECS / "resnet50.yaml", overrides=["se=[{where: {stages: all}}]"]))
    assert rep["total"] == secompile.count(SE50)["total"]


# An override whose last segment is a list index replaces that item whole: the network equals
# the one of an edited copy of the file, and differs from the unedited one (a dropped override
# would build the original and fail here).
R50 = SPECS / "resnet50.yaml"
LIST_ITEM_EDITS = [
    ("stages.3", "{block: bottleneck, out: 1024, width: 128, repeat: 1, stride: 2}",
     "  - {block: bottleneck, repeat: 3, out: 2048, width: 512, stride: 2}",
     "  - {block: bottleneck, out: 1024, width: 128, repeat: 1, stride: 2}"),
    ("stages.-1", "{block: bottleneck, repeat: 2, out: 2048, width: 256, stride: 2}",
     "  - {block: bottleneck, repeat: 3, out: 2048, width: 512, stride: 2}",
     "  - {block: bottleneck, repeat: 2, out: 2048, width: 256, stride: 2}"),
    ("head.1", "{name: fc, linear: {out: 7}}",
     "  - {name: fc, linear: {out: 1000}}", "  - {name: fc, linear: {out: 7}}"),
]


@pytest.mark.parametrize("key, value, line, edited_line", LIST_ITEM_EDITS,
                         ids=[e[0] for e in LIST_ITEM_EDITS])
def test_list_index_override_equals_an_edited_copy(tmp_path, key, value, line, edited_line):
    text = R50.read_text()
    assert line in text
    edited = tmp_path / "resnet50.yaml"
    edited.write_text(text.replace(line, edited_line)
                      .replace("include: [blocks/resnet.yaml]",
                               f"include: [{SPECS / 'blocks' / 'resnet.yaml'}]"))
    by_override = secompile.build_ir(R50, overrides=[f"{key}={value}"])
    assert by_override.structural_hash() == secompile.build_ir(edited).structural_hash()
    assert by_override.structural_hash() != secompile.build_ir(R50).structural_hash()


def test_list_index_override_through_the_cli():
    out = run("count", "specs/resnet50.yaml", "--json", "--set",
              "stages.3={block: bottleneck, out: 1024, width: 128, repeat: 1, stride: 2}")
    assert out.returncode == 0, out.stderr
    assert '"params": 11031080' in out.stdout
    assert secompile.count(R50)["total"]["params"] != 11031080
