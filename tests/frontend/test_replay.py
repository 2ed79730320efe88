"""Template bodies built once and added again (frontend/replay.py): the graph, its records and
every problem are exactly those of building each instance."""
import json

import pytest

import secompile
from secompile.frontend import replay
from secompile.frontend.binding import Param
from secompile.frontend.expand import Expander
from secompile.ir.records import Composite
from secompile.lang.errors import SpecError
from support import SPECS


def build(text, **kw):
    return secompile.build_ir(secompile.load_spec(text, base_dir=str(SPECS)), **kw)


def described(g) -> str:
    """Everything a later stage reads: nodes (in order) and every record."""
    return json.dumps({"ir": g.to_dict(), "blocks": repr(g.blocks), "scopes": repr(g.scopes),
                       "attention": repr(g.attention), "composites": repr(g.composites),
                       "units": g.units, "stages": repr(g.stages)}, sort_keys=True)


@pytest.fixture
def replays_counted(monkeypatch):
    """How many bodies were replayed; `off()` turns replaying off (every body built)."""
    seen = {"hits": 0, "on": True}
    get = replay.Replays.get

    def counted(self, key):
        found = get(self, key) if seen["on"] else None
        seen["hits"] += found is not None
        return found
    monkeypatch.setattr(replay.Replays, "get", counted)
    return seen


def test_se_resnext50_modules_replayed_and_identical(replays_counted):
    g = secompile.build_ir("se_resnext50")
    # 16 SE modules of 4 widths: 12 replayed; 16 bottlenecks, each stage's first and second
    # differ (stride, input width): 8 replayed
    assert replays_counted["hits"] == 12 + 8
    replays_counted["on"] = False
    replays_counted["hits"] = 0
    plain = secompile.build_ir("se_resnext50")
    assert replays_counted["hits"] == 0
    assert described(g) == described(plain)
    assert g.structural_hash() == plain.structural_hash()


TWIN = """name: t
input: {channels: 3, size: 16}
blocks:
  twin:
    params: {out: int}
    layers:
      - {name: a, conv: {out: $out, kernel: 3}}
      - {name: b, conv: {out: $out, kernel: 3, act: "'silu' if $block_index == 1 else 'relu'"}}
stem: [{name: conv1, conv: {out: 8, kernel: 3}}]
stages:
  - {block: twin, repeat: 4, out: 8}
head: [{name: pool, global_avgpool: {}}, {name: fc, linear: {out: 10}}]
"""


def test_a_body_reading_a_per_block_name_is_replayed_only_where_it_agrees(replays_counted):
    g = build(TWIN)
    # blocks 0, 2 and 3 read block_index 0, 2, 3: all differ, nothing replayed ...
    assert replays_counted["hits"] == 0
    assert [g.node(f"stages.0.blocks.{i}.b.act")["attrs"]["kind"] for i in range(4)] == \
        ["relu", "silu", "relu", "relu"]
    # ... but a body that does not read it is the same for blocks 1..3 (block 0 reads the stem)
    replays_counted["hits"] = 0
    g2 = build(TWIN.replace("'silu' if $block_index == 1 else 'relu'", "silu")
               .replace("conv1, conv: {out: 8", "conv1, conv: {out: 5"))
    assert replays_counted["hits"] == 2     # blocks 2 and 3 replay block 1 (input 8 channels)
    replays_counted["on"] = False
    plain = build(TWIN.replace("'silu' if $block_index == 1 else 'relu'", "silu")
                  .replace("conv1, conv: {out: 8", "conv1, conv: {out: 5"))
    assert described(g2) == described(plain)


def test_keys_tell_values_of_other_types_apart_and_refuse_what_they_cannot_compare():
    spec = secompile.load_spec(TWIN)
    tmpl = spec.templates["twin"]
    r = replay.Replays()
    keys = [r.key(tmpl, {"out": Param(v, None, ()), "block_index": Param(0, None, ())}, (8, 4, 4))
            for v in (1, 1.0, True)]
    assert len(set(keys)) == 3
    assert r.key(tmpl, {"out": Param([1], None, ()), "block_index": Param(0, None, ())},
                 (8, 4, 4)) is None


NESTED = """name: t
input: {channels: 3, size: 16}
blocks:
  nested:
    params: {out: int}
    residual:
      branch:
        - {name: conv1, conv: {out: $out, kernel: 3}}
        - {name: se, block: {template: se, reduction: 4}}
  fork:
    params: {out: int}
    parallel:
      branches: {a: [{conv: {out: $out}}], b: [{conv: {out: $out}}]}
  inner:
    params: {out: int}
    layers:
      - {name: r, residual: {branch: [{conv: {out: $out}}]}}
stem: [{name: conv1, conv: {out: 8, kernel: 3}}]
stages:
  - {block: nested, repeat: 2, out: 8}
  - {block: fork, repeat: 2, out: 8}
  - {block: inner, repeat: 2, out: 16}
head: [{name: pool, global_avgpool: {}}, {name: fc, linear: {out: 10}}]
"""


def test_bodies_that_record_more_than_their_own_composite_are_never_kept(replays_counted):
    spec = secompile.load_spec(NESTED)
    r = replay.Replays()
    for name in ("nested", "fork", "inner"):   # a block inside, a parallel, a residual layer
        assert r.key(spec.templates[name], {"out": Param(8, None, ())}, (8, 4, 4)) is None
    g = build(NESTED)
    assert replays_counted["hits"] == 1   # only the SE module inside the second `nested` block
    replays_counted["on"] = False
    assert described(g) == described(build(NESTED))


def test_a_replay_that_could_be_refused_adds_nothing():
    spec = secompile.load_spec(TWIN)
    fe = Expander(spec)
    g, _ = fe.build()
    body = next(iter(fe.replays._bodies.values()))
    before = g.node_count()
    g.add("free.a", "identity", {}, ["input"])   # 'free.a' taken: the body's first node
    assert fe.replay(body, "free", "input") is None
    assert g.node_count() == before + 1
    assert fe.replay(body, "other", "stem.conv1.act") == Composite("other", "layers", "stem.conv1.act",
                                                                   "other.b.act")


def test_problems_after_a_kept_body_are_reported_where_written():
    text = TWIN.replace("repeat: 4, out: 8}", "repeat: 3, out: 8}\n  - {block: twin, out: 0}")
    with pytest.raises(SpecError) as e:
        build(text)
    assert [str(p) for p in e.value.problems] == [
        "<string>:7:31: blocks.twin.layers[0].conv.out: out must be a positive integer, got 0 "
        "(in stages[1].blocks[0])"]
