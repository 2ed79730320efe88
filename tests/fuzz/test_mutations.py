"""Mutation fuzzing: every zoo spec (specs/*.yaml) and every template file it includes
(specs/blocks/*.yaml), mutated at the text/byte level by hypothesis, must either build or be
refused with `secompile.SpecError` whose every problem is located (an existing file, a line and
column inside it, a spec path, a one-line message). Any other exception, a case running past
the per-case CPU bound, or an allocation past the address-space cap, fails the test.

Mutations: bit flips, character replacements and insertions of YAML-significant tokens, deleted
spans, truncation, deleted / duplicated / swapped / re-indented lines, numbers replaced by
zero / negative / huge / fractional / non-finite values, scalars replaced by values of another
type, deleted and misspelt keys, duplicated keys, and template expressions replaced by hostile
ones. One to four per case.

The default run is a bounded, derandomised CI campaign; `-m thorough` runs
SECOMPILE_FUZZ_EXAMPLES (default 20,000) random cases (seed printed; SECOMPILE_FUZZ_SEED to
replay) and prints counts, the slowest case and the max RSS.
"""
from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import io
import os
import pathlib
import random
import resource
import shutil
import sys
import time
from collections import Counter

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, note, seed, settings
from hypothesis import strategies as st

import secompile
from secompile.analysis.counts import report
from secompile.cli import main
from secompile.testing import check_shapes
from secompile.testing.campaign import cpu_limit, memory_cap, unlocated
from secompile.testing.text_mutations import OPS, mutate

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
SEEDS = pathlib.Path(__file__).resolve().parent / "seeds"   # extra specs, copied beside the zoo

PER_CASE_CPU_S = 10          # CPU seconds per case (ITIMER_PROF): past this it is a hang
HARD_WALL_S = 300            # faulthandler backstop for a hang inside C code (no Python signal)
MEMORY_HEADROOM = 2 * 2**30  # address space allowed on top of what the process already maps
CI_EXAMPLES = int(os.environ.get("SECOMPILE_FUZZ_CI_EXAMPLES", "250"))
THOROUGH_EXAMPLES = int(os.environ.get("SECOMPILE_FUZZ_EXAMPLES", "20000"))
SHAPE_CHECK_MAX_PARAMS = 300_000   # "small": compiled and run within a second or two
SHAPE_CHECK_MAX_MACS = 100_000_000
V2_SHAPE_EXAMPLES = int(os.environ.get("SECOMPILE_FUZZ_V2_SHAPES", "1000"))
CLI_EVERY = 10               # every 10th case also goes through `secompile validate` in-process


# -- the corpus being mutated ------------------------------------------------------------------------
def _originals() -> dict[str, bytes]:
    files = sorted(SPECS.glob("*.yaml")) + sorted((SPECS / "blocks").glob("*.yaml"))
    out = {p.relative_to(SPECS).as_posix(): p.read_bytes() for p in files}
    return {**out, **{p.name: p.read_bytes() for p in sorted(SEEDS.glob("*.yaml"))}}


ORIGINALS = _originals()
SPEC_FILES = sorted(k for k in ORIGINALS if "/" not in k)
INCLUDED_BY: dict[str, list[str]] = {}
for _name in SPEC_FILES:
    for _inc in yaml.safe_load(ORIGINALS[_name]).get("include") or []:
        INCLUDED_BY.setdefault(_inc, []).append(_name)
TARGETS = SPEC_FILES + sorted(INCLUDED_BY)   # a template file is mutated and loaded through a spec using it


# -- mutations (secompile/testing/text_mutations.py) -----------------------------------------
op_st = st.tuples(st.sampled_from(OPS), st.integers(0, 2**24), st.integers(0, 2**24))
case_st = st.tuples(st.integers(0, len(TARGETS) - 1), st.integers(0, 2**16), st.lists(op_st, min_size=1, max_size=4))
# language v2: the specs using its constructs, and the attention-module templates they include
V2_TARGETS = ["v2_everything.yaml", "v2_modules_everywhere.yaml", "mbconv_demo.yaml",
              "eca_resnet50.yaml", "cbam_resnet50.yaml", "skresnet18.yaml", "blocks/attention.yaml"]
V2_CI_EXAMPLES = int(os.environ.get("SECOMPILE_FUZZ_V2_CI_EXAMPLES", "120"))
v2_case_st = st.tuples(st.sampled_from([TARGETS.index(t) for t in V2_TARGETS]),
                       st.integers(0, 2**16), st.lists(op_st, min_size=1, max_size=4))


# -- checking one case -------------------------------------------------------------------------------
class Stats:
    def __init__(self):
        self.cases = 0
        self.outcomes: Counter = Counter()
        self.ops: Counter = Counter()
        self.texts: set = set()
        self.cli = 0
        self.shapes = 0
        self.slowest = (0.0, None)

    def summary(self) -> str:
        return (f"{self.cases} mutated specs ({len(self.texts)} distinct texts): "
                f"{self.outcomes['spec_error']} refused with SpecError, {self.outcomes['valid']} still valid, "
                f"{self.outcomes['unchanged']} unchanged by their mutations; {self.cli} also through the CLI; "
                f"{self.shapes} compiled and run in train and eval with torch's shapes == the IR's; "
                f"0 uncaught exceptions, 0 hangs (> {PER_CASE_CPU_S} s CPU); slowest case {self.slowest[0]:.2f} s CPU ({self.slowest[1]}); "
                f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
                f"ops {dict(sorted(self.ops.items()))}")


def _check_located(e: secompile.SpecError) -> None:
    """Every problem is located and prints as one line."""
    why = unlocated(e)
    assert why is None, why


class Campaign:
    def __init__(self, tree: pathlib.Path, shapes: int = 0):
        self.tree = tree
        self.stats = Stats()
        self.mtime = time.time_ns()
        self.shapes_left = shapes   # small valid networks also compiled and run (check_shapes)

    def write(self, rel: str, data: bytes):
        path = self.tree / rel
        path.write_bytes(data)
        self.mtime += 10**6   # a fresh, increasing mtime: the include cache must see every rewrite
        os.utime(path, ns=(self.mtime, self.mtime))

    def run(self, case):
        t_idx, pick, ops = case
        target = TARGETS[t_idx]
        spec = target if target in ORIGINALS and "/" not in target else \
            INCLUDED_BY[target][pick % len(INCLUDED_BY[target])]
        original = ORIGINALS[target]
        data = original
        for op, a, b in ops:
            data = mutate(data, op, a, b)
        st_ = self.stats
        st_.cases += 1
        st_.ops.update(op for op, _, _ in ops)
        st_.texts.add(hashlib.sha1(target.encode() + b"\0" + data).digest())
        note(f"target {target} (loaded through {spec}); mutated text:\n{data[:3000]!r}")
        self.write(target, data)
        faulthandler.dump_traceback_later(HARD_WALL_S, exit=True, file=sys.__stderr__)   # re-armed per case
        c0 = time.process_time()
        try:
            with cpu_limit(PER_CASE_CPU_S):
                outcome, messages = self.check(spec)
                if hashlib.sha1(data).digest()[0] % CLI_EVERY == 0:   # a fixed sample: reruns agree
                    self.check_cli(spec, messages)
        finally:
            self.write(target, original)
        cpu = time.process_time() - c0
        if cpu > st_.slowest[0]:
            st_.slowest = (cpu, f"{target}: {ops}")
        st_.outcomes["unchanged" if data == original else outcome] += 1

    def check(self, spec):
        try:
            g = secompile.build_ir(spec)   # the IR verifier runs after the front end and each pass
        except secompile.SpecError as e:
            _check_located(e)
            return "spec_error", e.messages
        rep = report(g)   # a still-valid network must also count
        assert rep["total"]["params"] >= 0 and rep["total"]["macs"] >= 0
        if self.shapes_left > 0 and rep["total"]["params"] <= SHAPE_CHECK_MAX_PARAMS \
                and rep["total"]["macs"] <= SHAPE_CHECK_MAX_MACS:
            self.shapes_left -= 1
            self.stats.shapes += 1
            check_shapes(spec)   # torch's shape at every node == the IR's, train and eval
        return "valid", None

    def check_cli(self, spec, messages):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["validate", spec])
        self.stats.cli += 1
        if messages is None:
            assert rc == 0 and err.getvalue() == "", err.getvalue()
        else:
            assert rc == 2 and out.getvalue() == "", (rc, err.getvalue())
            assert err.getvalue() == "".join(m + "\n" for m in messages)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    shutil.copytree(SPECS, tmp_path / "specs")
    for p in SEEDS.glob("*.yaml"):
        shutil.copy(p, tmp_path / "specs" / p.name)
    monkeypatch.chdir(tmp_path / "specs")
    return tmp_path / "specs"


def _campaign(tree, examples, derandomize, seed_value=None, cases=case_st, shapes=0):
    camp = Campaign(tree, shapes)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    @given(case=cases)
    def run(case):
        camp.run(case)

    if seed_value is not None:
        run = seed(seed_value)(run)
    try:
        with memory_cap(MEMORY_HEADROOM):
            run()
    finally:
        faulthandler.cancel_dump_traceback_later()
    return camp.stats


def test_harness_sanity(tree):
    """Sanity of the harness: the pristine copies build, so every refusal comes from a mutation."""
    for spec in SPEC_FILES:
        secompile.build_ir(spec)
    assert set(TARGETS) >= {"blocks/resnet.yaml", "se_resnet50.yaml"} and len(TARGETS) == len(ORIGINALS)
    data = ORIGINALS["se_resnet50.yaml"]
    assert mutate(data, "number", 0, 0) != data and mutate(data, "misspell_key", 3, 1) != data
    assert mutate(data, "expression", 0, 0) == data        # no expression in this file
    blocks = ORIGINALS["blocks/resnet.yaml"]
    assert mutate(blocks, "expression", 0, 0) != blocks


def test_mutated_specs_ci(tree, capsys):
    """Bounded, derandomised campaign for every test run."""
    stats = _campaign(tree, CI_EXAMPLES, derandomize=True)
    with capsys.disabled():
        print("\n[fuzz ci] " + stats.summary())
    assert stats.cases >= CI_EXAMPLES
    assert stats.outcomes["spec_error"] > CI_EXAMPLES // 4 and stats.outcomes["valid"] > 0


def test_mutated_v2_specs_ci(tree, capsys):
    """The same over the language-v2 specs (vars, when, skip: auto, drop_path, gate templates,
    attention modules, the select merge) and specs/blocks/attention.yaml."""
    assert set(V2_TARGETS) <= set(TARGETS)
    stats = _campaign(tree, V2_CI_EXAMPLES, derandomize=True, cases=v2_case_st)
    with capsys.disabled():
        print("\n[fuzz v2 ci] " + stats.summary())
    assert stats.cases >= V2_CI_EXAMPLES
    assert stats.outcomes["spec_error"] > V2_CI_EXAMPLES // 4 and stats.outcomes["valid"] > 0


@pytest.mark.thorough
def test_mutated_specs_thorough(tree, capsys):
    """>= 20,000 random mutated specs; no exception other than a located SpecError, no hang."""
    seed_value = int(os.environ.get("SECOMPILE_FUZZ_SEED", random.randrange(2**32)))
    with capsys.disabled():
        print(f"\n[fuzz thorough] seed {seed_value}, {THOROUGH_EXAMPLES} examples")
    stats = _campaign(tree, THOROUGH_EXAMPLES, derandomize=False, seed_value=seed_value)
    with capsys.disabled():
        print("[fuzz thorough] " + stats.summary())
    assert stats.cases >= THOROUGH_EXAMPLES


@pytest.mark.thorough
def test_mutated_v2_specs_thorough(tree, capsys):
    """SECOMPILE_FUZZ_EXAMPLES (20,000) mutated v2 specs through validate + count with the IR
    verifier on after every pass (an IRError is an uncaught exception: a failure), and up to
    SECOMPILE_FUZZ_V2_SHAPES (1,000) of the small valid ones compiled and run in train and eval
    with torch's shape == the IR's at every node (secompile.testing.check_shapes)."""
    seed_value = int(os.environ.get("SECOMPILE_FUZZ_SEED", random.randrange(2**32)))
    with capsys.disabled():
        print(f"\n[fuzz v2 thorough] seed {seed_value}, {THOROUGH_EXAMPLES} examples")
    stats = _campaign(tree, THOROUGH_EXAMPLES, derandomize=False, seed_value=seed_value,
                      cases=v2_case_st, shapes=V2_SHAPE_EXAMPLES)
    with capsys.disabled():
        print("[fuzz v2 thorough] " + stats.summary())
    assert stats.cases >= THOROUGH_EXAMPLES
