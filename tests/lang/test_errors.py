"""Broken specs: every problem as FILE:LINE:COL: path: message, all at once, exit 2, no traceback."""
import subprocess
import sys

import pytest

import secompile
from secompile.cli import main
from support import SPECS

BASE = (SPECS / "se_resnext50.yaml").read_text()


def _write(spec_dir, name, text):
    p = spec_dir / name
    p.write_text(text)
    return p


def _errors(path):
    with pytest.raises(secompile.SpecError) as e:
        secompile.build_ir(path)
    return [m.replace(str(path.parent) + "/", "") for m in e.value.messages]


CASES = [
    ("tab.yaml", "name: x\nstages:\n\t- {block: basic}\n",
     ["tab.yaml:3:1: <yaml>: found character '\\t' that cannot start any token (while scanning for the next token)"]),
    ("unknown.yaml", BASE.replace("kernel: 7, stride: 2", "kernal: 7, stride: 2"),
     ["unknown.yaml:8:35: stem[0].conv.kernal: unknown key 'kernal' (did you mean 'kernel'?)"]),
    ("cardinality.yaml", BASE.replace("out: 1024, width: 512,  stride: 2, cardinality: 32",
                                      "out: 1024, width: 500,  stride: 2, cardinality: 32"),
     ["cardinality.yaml:13:84: stages[2].cardinality: 32 does not divide the 500 input channels of branch.conv2"]),
    ("string.yaml", BASE.replace("repeat: 4, out: 512", "repeat: four, out: 512"),
     ["string.yaml:12:33: stages[1].repeat: expected a positive integer or a $-expression, got string 'four'"]),
    ("selector.yaml", BASE.replace("where: {stages: all}", "where: {stages: [7]}"),
     ["selector.yaml:20:13: se[0].where: selector {stages: [7]} matches nothing (the network has 4 stages)"]),
    ("template.yaml", BASE.replace("block: bottleneck, repeat: 3, out: 2048", "block: botleneck, repeat: 3, out: 2048"),
     ["template.yaml:14:13: stages[3].block: unknown block template 'botleneck' (did you mean 'bottleneck'?)"]),
]


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_exact_messages(spec_dir, name, text, expected):
    assert _errors(_write(spec_dir, name, text)) == expected


def test_all_problems_at_once(spec_dir):
    text = BASE.replace("kernel: 7, stride: 2", "kernal: 7, stride: 2").replace(
        "repeat: 4, out: 512", "repeat: four, out: 512").replace("name: se_resnext50_32x4d\n", "")
    msgs = _errors(_write(spec_dir, "many.yaml", text))
    assert len(msgs) == 3
    assert msgs[0] == "many.yaml:4:1: <root>: missing required key 'name'"


def test_semantic_problems_in_several_stages(spec_dir):
    text = BASE.replace("out: 512,  width: 256,  stride: 2, cardinality: 32",
                        "out: 512,  width: 250,  stride: 2, cardinality: 32").replace(
        "block: bottleneck, repeat: 3, out: 2048", "block: botleneck, repeat: 3, out: 2048")
    msgs = _errors(_write(spec_dir, "two.yaml", text))
    assert [m.split(": ")[1] for m in msgs] == ["stages[1].cardinality", "stages[3].block"]


README_EXAMPLE = BASE.replace("kernel: 7, stride: 2", "kernal: 7, stride: 2").replace(
    "out: 1024, width: 512,  stride: 2, cardinality: 32", "out: 1024, width: 500,  stride: 2, cardinality: 32"
).replace("where: {stages: all}", "where: {stages: [7]}")


def test_problems_of_three_phases_in_one_run(spec_dir):
    """The README's example: a schema problem (stem), a front-end problem (stage 2) and an SE-rule
    problem, each hidden behind the one before until this run reported them all."""
    _write(spec_dir, "broken.yaml", README_EXAMPLE)
    out = subprocess.run([sys.executable, "-m", "secompile", "validate", "broken.yaml"],
                         cwd=spec_dir, capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "broken.yaml:8:35: stem[0].conv.kernal: unknown key 'kernal' (did you mean 'kernel'?)",
        "broken.yaml:13:84: stages[2].cardinality: 32 does not divide the 500 input channels of branch.conv2",
        "broken.yaml:20:13: se[0].where: selector {stages: [7]} matches nothing (the network has 4 stages)"]


def test_every_misspelt_key_of_a_mapping(spec_dir):
    _write(spec_dir, "keys.yaml", BASE.replace("conv: {out: 64, kernel: 7, stride: 2}",
                                               "conv: {out: 64, kernal: 7, strid: 2, paddng: 3}"))
    out = subprocess.run([sys.executable, "-m", "secompile", "validate", "keys.yaml"], cwd=spec_dir,
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "keys.yaml:8:35: stem[0].conv.kernal: unknown key 'kernal' (did you mean 'kernel'?)",
        "keys.yaml:8:46: stem[0].conv.strid: unknown key 'strid' (did you mean 'stride'?)",
        "keys.yaml:8:56: stem[0].conv.paddng: unknown key 'paddng' (did you mean 'padding'?)"]


def test_misspelt_key_and_wrong_value_in_one_layer(spec_dir):
    text = BASE.replace("conv: {out: 64, kernel: 7, stride: 2}",
                        "conv: {out: 64.5, kernal: 7, stride: 2}")
    assert _errors(_write(spec_dir, "layer.yaml", text)) == [
        "layer.yaml:8:31: stem[0].conv.out: expected an integer or a $-expression, got number 64.5",
        "layer.yaml:8:37: stem[0].conv.kernal: unknown key 'kernal' (did you mean 'kernel'?)"]


TEMPLATE_IN_SPEC = """name: t
input: {channels: 3, size: 32}
blocks:
  mb:
    params: {out: int, expand: 1.0}
    layers:
      - {conv: {out: $out * $expand, kernel: 3}}
stages:
  - {block: mb, repeat: 2, out: 16}
  - {block: mb, repeat: 2, out: 48, expand: 1.15}
"""


def test_template_line_names_the_instance(spec_dir):
    """A template written in the spec itself: its line is shared by every instance, so the message
    says which one (it used to, only for templates in included files)."""
    assert _errors(_write(spec_dir, "mb.yaml", TEMPLATE_IN_SPEC)) == [
        "mb.yaml:7:22: blocks.mb.layers[0].conv.out: expected int, got 55.2 (in stages[1].blocks[0])"]


def test_schema_problem_does_not_hide_later_ones(spec_dir):
    """A stage the schema refuses is skipped; the stages after it are checked for what needs no
    shape, and the SE rules for their indices."""
    text = BASE.replace("repeat: 4, out: 512", "repeat: four, out: 512").replace(
        "block: bottleneck, repeat: 3, out: 2048", "block: botleneck, repeat: 3, out: 2048").replace(
        "where: {stages: all}", "where: {stages: [0, 4]}")
    assert _errors(_write(spec_dir, "later.yaml", text)) == [
        "later.yaml:12:33: stages[1].repeat: expected a positive integer or a $-expression, got string 'four'",
        "later.yaml:14:13: stages[3].block: unknown block template 'botleneck' (did you mean 'bottleneck'?)",
        "later.yaml:20:26: se[0].where.stages[1]: stage index 4 is out of range (the network has 4 stages)"]


def test_block_index_out_of_range_names_the_blocks(spec_dir):
    text = BASE.replace("where: {stages: all}", "where: {stages: [2], blocks: [7]}")
    assert _errors(_write(spec_dir, "blocks.yaml", text)) == [
        "blocks.yaml:20:35: se[0].where.blocks: selector {stages: [2], blocks: [7]} matches nothing "
        "(stage 2 has 6 blocks)"]


def test_after_suggestion_is_relative(spec_dir):
    text = BASE.replace("position: standard", "position: {after: branch.conv4}")
    assert _errors(_write(spec_dir, "after.yaml", text)) == [
        "after.yaml:20:46: se[0].position.after: 'branch.conv4' is not inside block stages.0.blocks.0 "
        "(did you mean 'branch.conv3'?)"]


def test_shape_underflow(spec_dir):
    text = BASE.replace("size: [224, 224]", "size: [4, 4]").replace("kernel: 7, stride: 2}",
                                                                  "kernel: 7, stride: 2, padding: valid}")
    msgs = _errors(_write(spec_dir, "small.yaml", text))
    assert len(msgs) == 1 and "has a size below 1" in msgs[0] and msgs[0].startswith("small.yaml:")


def test_reduction_leaves_no_channel(spec_dir):
    text = BASE.replace("position: standard, reduction: 16", "position: standard, reduction: 512")
    assert _errors(_write(spec_dir, "red.yaml", text)) == [
        "red.yaml:20:59: se[0].reduction: reduction 512 leaves no channel for 256 channels (256 // 512 = 0)"]


def test_missing_include_and_cycle(spec_dir):
    (spec_dir / "a.yaml").write_text("include: [b.yaml]\nblocks: {}\n")
    (spec_dir / "b.yaml").write_text("include: [a.yaml]\nblocks: {}\n")
    text = BASE.replace("include: [blocks/resnet.yaml]", "include: [blocks/resnet.yaml, nothere.yaml, a.yaml]")
    msgs = _errors(_write(spec_dir, "inc.yaml", text))
    assert any("include[1]: included file 'nothere.yaml' not found" in m for m in msgs)
    assert any("b.yaml:1:11: include[0]: include cycle: inc.yaml -> a.yaml -> b.yaml -> a.yaml" in m for m in msgs)


@pytest.mark.parametrize("name,text,expected", CASES[:3], ids=[c[0] for c in CASES[:3]])
def test_cli_exit_code_2_no_traceback(spec_dir, name, text, expected):
    _write(spec_dir, name, text)
    out = subprocess.run([sys.executable, "-m", "secompile", "validate", name], cwd=spec_dir,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.splitlines() == expected and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_build_writes_nothing_on_error(spec_dir, capsys):
    path = _write(spec_dir, "bad.yaml", CASES[2][1])
    assert main(["build", str(path), "-o", str(spec_dir / "out")]) == 2
    assert not (spec_dir / "out").exists()
    assert not [p for p in spec_dir.iterdir() if p.name.startswith(".out")]


def test_internal_error_exit_1(monkeypatch, capsys):
    import secompile.api
    monkeypatch.setattr(secompile.api, "expand_partial", lambda spec: 1 / 0)
    assert main(["count", str(SPECS / "resnet50.yaml")]) == 1
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError" in err and "--debug" in err and "Traceback" not in err
