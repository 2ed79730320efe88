"""Issue 19's reproducers: each a located one-line error with exit 2, nothing written.

Values (nan/inf residual scales, BN eps <= 0, momentum outside [0, 1]), template recursion,
layer-name clashes inside templates, the auto shortcut on vectors, attention modules that do
not keep the shape of the tensor they recalibrate, and spec "files" that are not regular files
(a device, a FIFO: once a MemoryError and a hang)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from secompile.cli import main
from support import ROOT

BASE = """
name: t
input: {{channels: 3, size: 16}}
{blocks}stages:
  - layers:
      - {{name: c, conv: {{out: 8, kernel: 3}}}}
{layer}
head:
  - {{name: pool, global_avgpool: {{}}}}
  - {{name: fc, linear: {{out: 10}}}}
"""


def spec(layer: str, blocks: str = "") -> str:
    return BASE.format(layer=layer, blocks=blocks)


def refused(tmp_path, monkeypatch, capsys, text: str, *argv) -> list[str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text(text)
    assert main(["validate", "t.yaml", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err.splitlines()


RESIDUAL = "      - {{name: r, residual: {{branch: [{{conv: {{out: 8, kernel: 3}}}}], scale: {}}}}}"
CASES = {
    "scale-nan": (spec(RESIDUAL.format(".nan")),
                  "t.yaml:7:76: stages[0].layers[1].residual.scale: residual scale must be a "
                  "finite number, got nan"),
    "scale-inf": (spec(RESIDUAL.format("-.inf")),
                  "t.yaml:7:76: stages[0].layers[1].residual.scale: residual scale must be a "
                  "finite number, got -inf"),
    "scale-expression-inf": (spec(RESIDUAL.format('"$block_in * 1e308"')),
                             "t.yaml:7:76: stages[0].layers[1].residual.scale: residual scale "
                             "must be a finite number, got inf"),
    "bn-eps-negative": (spec("      - {name: n, bn: {eps: -1}}"),
                        "t.yaml:7:29: stages[0].layers[1].bn.eps: bn eps must be > 0, got -1"),
    "bn-eps-zero": (spec("      - {name: n, bn: {eps: 0.0}}"),
                    "t.yaml:7:29: stages[0].layers[1].bn.eps: bn eps must be > 0, got 0.0"),
    "bn-momentum": (spec("      - {name: n, bn: {momentum: 1.5}}"),
                    "t.yaml:7:34: stages[0].layers[1].bn.momentum: bn momentum must be in [0, 1], "
                    "got 1.5"),
    "dropout-p": (spec("      - {name: d, dropout: {p: 1.0}}"),
                  "t.yaml:7:32: stages[0].layers[1].dropout.p: dropout p must be in [0, 1), "
                  "got 1.0"),
    "recursion-through-when": (
        spec("      - {name: deep, block: {template: deep, n: 40}}",
             blocks="blocks:\n  deep:\n    params: {n: 1}\n    layers:\n      - relu\n"
                    "      - {name: more, when: \"$n > 0\", block: {template: deep, n: \"$n - 1\"}}\n"),
        "t.yaml:9:45: blocks.deep.layers[1].block: template nesting deeper than 32 levels (a "
        "template that instantiates itself?) (in stages[0])"),
    "gate-layer-named-scale": (
        spec("      - {name: att, block: {template: att}}",
             blocks="blocks:\n  att:\n    gate:\n      - {name: pool, global_pool: {mode: avg}}\n"
                    "      - {name: scale, conv2d: {out: $in_channels}}\n"
                    "      - {name: gate, act: sigmoid}\n"),
        "t.yaml:8:16: blocks.att.gate[1].name: an attention body's layer cannot be named 'scale': "
        "stages.0.att.scale is the body's result; rename the layer (in stages[0])"),
    "branch-named-like-the-merge": (
        spec("      - {name: p, parallel: {merge: add, branches: {add: [{conv: {out: 8}}], "
             "b: [{conv: {out: 8}}]}}}"),
        "t.yaml:7:29: stages[0].layers[1].parallel: a layer gets the name of a scope holding "
        "other layers at stages.0.p.add"),
    "auto-shortcut-on-vectors": (
        spec("      - {name: g, global_avgpool: {}}\n"
             "      - {name: r, residual: {branch: [{linear: {out: 4}}]}}"),
        "t.yaml:8:29: stages[0].layers[2].residual: the auto shortcut (a 1x1 conv) needs feature "
        "maps, but the block maps (8,) to (4,); give the shortcut layers explicitly"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_values_and_names_are_located(tmp_path, monkeypatch, capsys, case):
    text, message = CASES[case]
    assert refused(tmp_path, monkeypatch, capsys, text) == [message]


def test_attention_module_that_reshapes_is_refused_at_the_rule(tmp_path, monkeypatch, capsys):
    """sk_attention gives (P * C, 1, 1) logits: as an SE module its consumers would read a tensor
    of another shape (the IR said 32x112x112 where torch computed 32x1x1)."""
    monkeypatch.chdir(tmp_path)
    assert main(["build", "se_resnet20_cifar", "-o", "out", "--set", "se.0.module=sk_attention"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "--set:1:13: se[0].module: attention module 'sk_attention' turns "
        "stages.0.blocks.0.branch.conv2.bn (16, 32, 32) into (32, 1, 1) at stages.0.blocks.0.se; "
        "a module an SE rule inserts must keep the shape it is inserted on (and at 8 more places "
        "this rule selects)"]
    assert not (tmp_path / "out").exists()
    assert main(["validate", "efficientnet_b0", "--set",
                 "se=[{where: {stages: all}, module: sk_attention, position: pre}]"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "--set:1:36: se[0].module: attention module 'sk_attention' turns stem.conv_stem.act "
        "(32, 112, 112) into (64, 1, 1) at stages.0.blocks.0.se_pre; a module an SE rule inserts "
        "must keep the shape it is inserted on (and at 15 more places this rule selects)"]


def test_only_regular_files_are_read(tmp_path):
    """A device or a FIFO is refused at once (it was a MemoryError, or a hang: the size check
    used stat); a child process with a timeout, so a regression fails instead of hanging."""
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    paths = ["/dev/zero", "/dev/urandom", str(fifo)]
    r = subprocess.run([sys.executable, "-m", "secompile", "validate", *paths], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "/dev/zero:1:1: <file>: cannot read: not a regular file (a spec is a YAML file)",
        "/dev/urandom:1:1: <file>: cannot read: not a regular file (a spec is a YAML file)",
        "spec.yaml:1:1: <file>: cannot read: not a regular file (a spec is a YAML file)"]
