"""The v2 fuzz campaign (secompile/testing/campaign.py, tools/fuzz_campaign.py): structured
mutations of v2 specs through validate + count with the IR verifier after every pass, and the
small valid ones through compile + forward in train and eval with torch's shapes == the IR's.

The default run is a derandomised twin (a fixed seed, 100 cases, 10 forwards, a few seconds);
`-m thorough` runs SECOMPILE_FUZZ_EXAMPLES (20,000) cases and SECOMPILE_FUZZ_V2_SHAPES (1,000)
forwards with a random seed (printed; SECOMPILE_FUZZ_SEED replays), as the tools script does.
"""
from __future__ import annotations

import copy
import os
import pathlib
import random

import pytest
import yaml

import secompile
from secompile.ir.verify import IRError
from secompile.testing import campaign as C
from secompile.testing.v2_mutations import MUTATIONS, mutate_v2

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = pathlib.Path(__file__).resolve().parent / "seeds"
EVERYTHING = yaml.safe_load((SEEDS / "v2_everything.yaml").read_text())


def _campaign(tmp_path, seed, generated=12, **kw):
    return C.Campaign(tmp_path / "tree", seed, specs_dir=ROOT / "specs", seeds_dir=SEEDS,
                      generated=generated, keep_dir=tmp_path / "keep", **kw)


def test_every_mutation_applies_to_the_v2_seed():
    """Each structured mutation finds something to change in v2_everything.yaml, changes it,
    and leaves its input alone."""
    for name, fn in sorted(MUTATIONS.items()):
        spec = copy.deepcopy(EVERYTHING)
        changed = [fn(spec, random.Random(k)) and spec != EVERYTHING for k in range(8)]
        assert any(changed), name
    before = copy.deepcopy(EVERYTHING)
    out, names = mutate_v2(EVERYTHING, random.Random(0), 3)
    assert EVERYTHING == before and out != before and len(names) == 3


def test_mutations_replay_from_the_seed():
    a = [mutate_v2(EVERYTHING, random.Random(7), 2) for _ in range(2)]
    assert a[0] == a[1]
    assert mutate_v2(EVERYTHING, random.Random(8), 2) != a[0]


def test_the_campaign_classifies_what_the_compiler_does(tmp_path, monkeypatch):
    """The harness can fail: an exception other than SpecError is an internal error, an IRError
    a verifier failure, a refusal without a location is one too; each bug's spec is kept."""
    camp = _campaign(tmp_path, 0, generated=0)
    real = secompile.build_ir
    raised = iter([RuntimeError("boom"), IRError("net", ["stem.conv: shape (8, 4, 4) != (8, 2, 2)"]),
                   secompile.SpecError([])])

    def build_ir(spec, **kw):
        raise next(raised)
    monkeypatch.setattr(secompile, "build_ir", build_ir)
    for i in range(3):
        camp.one(i, 0)
    monkeypatch.setattr(secompile, "build_ir", real)
    o = camp.stats.outcomes
    assert (o["internal"], o["verifier"], o["unlocated"]) == (1, 1, 1)
    assert [b.kind for b in camp.bugs] == ["internal", "verifier", "unlocated"]
    assert camp.bugs[0].message.startswith("RuntimeError: boom at ")
    kept = sorted(p.name for p in (tmp_path / "keep").iterdir())
    assert kept == ["internal-00000.yaml", "unlocated-00002.yaml", "verifier-00001.yaml"]
    first = (tmp_path / "keep" / "internal-00000.yaml").read_text().splitlines()[0]
    assert first.startswith("# internal (case 0, seed ")


def test_the_campaign_flags_a_shape_mismatch(tmp_path, monkeypatch):
    """A forward whose torch shapes differ from the IR's is counted and kept."""
    from secompile.testing import shapes
    camp = _campaign(tmp_path, 1, generated=0, text_ratio=0.0)

    def check_shapes(spec, **kw):
        raise shapes.ShapeMismatch("n: IR 1")
    monkeypatch.setattr(shapes, "check_shapes", check_shapes)
    for i in range(20):
        camp.one(i, 1)
        if camp.stats.forwards:
            break
    assert camp.stats.forwards == 1 and camp.stats.outcomes["shape_mismatch"] == 1
    assert camp.bugs[-1].kind == "shape_mismatch" and camp.bugs[-1].message == "n: IR 1"


def test_campaign_ci(tmp_path, capsys):
    """The derandomised twin: 100 mutated v2 specs, 10 forwards, no bug; most stay valid and
    the refusal path is taken too."""
    camp = _campaign(tmp_path, 0)
    stats = camp.run(100, 10)
    with capsys.disabled():
        print("\n[fuzz campaign ci] " + stats.summary().replace("\n", "; "))
    assert not camp.bugs, [(b.kind, b.message, b.text) for b in camp.bugs[:3]]
    assert stats.cases == 100 and stats.forwards == 10 and stats.nodes_compared > 200
    assert stats.outcomes["valid"] >= 30 and stats.outcomes["spec_error"] >= 10


@pytest.mark.thorough
def test_campaign_thorough(tmp_path, capsys):
    """Issue 19's acceptance: 20,000 mutated v2 specs through validate + count with the verifier
    on, 1,000 small ones through compile + forward in train and eval; no bug of any kind."""
    seed = int(os.environ.get("SECOMPILE_FUZZ_SEED", random.randrange(2**32)))
    n = int(os.environ.get("SECOMPILE_FUZZ_EXAMPLES", "20000"))
    forwards = int(os.environ.get("SECOMPILE_FUZZ_V2_SHAPES", "1000"))
    camp = _campaign(tmp_path, seed, generated=60)
    with capsys.disabled():
        print(f"\n[fuzz campaign thorough] seed {seed}, {n} cases, {forwards} forwards")
        stats = camp.run(n, forwards, progress=lambda line: print(f"[fuzz campaign] {line}"))
        print(stats.summary())
    assert not camp.bugs, [(b.kind, b.message, b.text) for b in camp.bugs[:3]]
    assert stats.cases == n and stats.forwards == forwards
