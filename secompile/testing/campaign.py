"""The v2 fuzz campaign: mutated specs through validate + count with the IR verifier on, and the
small valid ones through compile + forward with torch's shapes compared at every node.

Each case is a seed spec (the fuzz seeds, the zoo's v2 specs made small, and `specs(v2=True)`
networks drawn with the campaign's seed) with 1-3 structured mutations (v2_mutations.py) and,
in a fraction of cases, 1-2 text mutations on top (text_mutations.py: the refusal path). The
case is written to a file beside a copy of the zoo (so `include:` works) and classified:

- spec_error: refused with `SpecError`, every problem located (an existing file, a line and a
  column inside it, a spec path, a one-line message) -- an unlocated one is a bug (`unlocated`);
- valid: built, verified (`Graph.check`, after every pass with SECOMPILE_VERIFY=1) and counted;
- verifier: `IRError` (the IR disagrees with its ops) -- a bug;
- internal: any other exception -- a bug;
- hang: more than PER_CASE_CPU_S seconds of CPU -- a bug.

Valid networks of at most FORWARD_MAX_PARAMS parameters and FORWARD_MAX_MACS multiply-adds are
then compiled and run in train and eval mode (`check_shapes`): `shape_mismatch` (torch's shape
of a node differs from the IR's) and `forward_error` (compile or forward raised) are bugs.
Every bug's spec text is kept (`Campaign.bugs`, and under `keep_dir` when given).

Used by tools/fuzz_campaign.py (the full run) and tests/fuzz/test_campaign.py (a small twin).
SECOMPILE_VERIFY=1 must be set before secompile is imported for the per-pass verifier.
"""
from __future__ import annotations

import contextlib
import copy
import os
import pathlib
import random
import re
import resource
import shutil
import signal
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

import yaml

from .text_mutations import OPS as TEXT_OPS
from .text_mutations import mutate as text_mutate
from .v2_mutations import mutate_v2

PER_CASE_CPU_S = 10
FORWARD_CPU_S = 60
FORWARD_MAX_PARAMS = 300_000
FORWARD_MAX_MACS = 100_000_000
MEMORY_HEADROOM = 2 * 2**30
BUGS = ("unlocated", "verifier", "internal", "hang", "shape_mismatch", "forward_error")
# the zoo's specs written with language v2 (families, foreach, attention modules, select merge)
ZOO_V2 = ("mbconv_demo", "efficientnet", "mobilenetv3", "regnet", "rexnet", "gcresnet50t",
          "resnest14d", "skresnet18", "eca_resnet50", "cbam_resnet50", "ecaresnet50d",
          "seresnext26d_32x4d")
YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")   # what YAML counts as a new line


class Hang(BaseException):
    """Raised by the CPU-time alarm (BaseException: the code under test must not swallow it)."""


@contextlib.contextmanager
def cpu_limit(seconds):
    def on_alarm(signum, frame):
        raise Hang(f"more than {seconds} s of CPU")
    old = signal.signal(signal.SIGPROF, on_alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


@contextlib.contextmanager
def memory_cap(headroom=MEMORY_HEADROOM):
    """Cap the address space at what is mapped now plus `headroom`: a blow-up is a MemoryError."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    status = pathlib.Path("/proc/self/status").read_text()
    vm = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024
    cap = vm + headroom if hard == resource.RLIM_INFINITY else min(vm + headroom, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def unlocated(e) -> str | None:
    """Why a SpecError's problems are not each located on one line of an existing file (None
    when they are)."""
    if not e.problems:
        return "a SpecError without problems"
    for p in e.problems:
        f = p.mark.file
        if not os.path.isfile(f):
            return f"problem located in a file that does not exist: {p}"
        lines = YAML_LINE_BREAK.split(pathlib.Path(f).read_bytes().decode("utf-8", "replace"))
        if not 1 <= p.mark.line <= len(lines) + 1:
            return f"line out of range: {p}"
        text = lines[p.mark.line - 1] if p.mark.line <= len(lines) else ""
        if not 1 <= p.mark.col <= len(text) + 2:
            return f"column out of range: {p}"
        if not (p.path and p.message):
            return f"no spec path or message: {p}"
        if "Traceback" in p.message or " object at 0x" in p.message:
            return f"a traceback in the message: {p}"
        if len(str(p).splitlines()) != 1:
            return f"a problem printed over several lines: {str(p)!r}"
    return None


# -- seeds ---------------------------------------------------------------------------------------
def shrink(spec: dict) -> dict:
    """A zoo spec made small enough to count in milliseconds (and some to run): input 32-64,
    at most 2 blocks per stage, network parameters `width`/`depth` scaled down."""
    out = copy.deepcopy(spec)
    out.pop("variants", None)
    inp = out.get("input") or {}
    inp["size"] = 32 if not isinstance(inp.get("size"), list) else [32, 48]
    for s in out.get("stages") or []:
        if isinstance(s, dict) and isinstance(s.get("repeat"), int):
            s["repeat"] = min(s["repeat"], 2)
    params = out.get("params")
    if isinstance(params, dict):
        for k, v in [("width", 0.25), ("depth", 0.3)]:
            if isinstance(params.get(k), float):
                params[k] = v
    for item in out.get("head") or []:      # 1000 classes -> 10: the head stops dominating
        if isinstance(item, dict) and isinstance(item.get("linear"), dict):
            item["linear"]["out"] = 10
    return out


def generated_seeds(n: int, seed: int) -> list[dict]:
    """`n` small `specs(v2=True)` networks, the same for the same seed."""
    if n <= 0:
        return []
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from .strategies import specs

    drawn: list[dict] = []

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(specs(v2=True, input_size=(16, 64), max_width=32, max_stages=3, max_repeat=2))
    def draw(spec):
        drawn.append(spec)

    draw()
    return drawn[:n]


def seed_pool(specs_dir, seeds_dir, generated: int, seed: int) -> list[tuple[str, dict]]:
    """(origin, spec dict) of every seed: fuzz seeds, shrunk zoo v2 specs, generated ones."""
    pool = [(p.stem, yaml.safe_load(p.read_text()))
            for p in sorted(pathlib.Path(seeds_dir).glob("*.yaml"))]
    pool += [(name, shrink(yaml.safe_load((pathlib.Path(specs_dir) / f"{name}.yaml")
                                          .read_text()))) for name in ZOO_V2]
    pool += [(f"generated{i}", s) for i, s in enumerate(generated_seeds(generated, seed))]
    return pool


# -- the campaign --------------------------------------------------------------------------------
@dataclass
class Bug:
    kind: str
    case: int
    origin: str
    mutations: list
    message: str
    text: str


@dataclass
class Stats:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    by_mutation: Counter = field(default_factory=Counter)       # mutation -> cases still valid
    used_mutation: Counter = field(default_factory=Counter)
    forwards: int = 0
    nodes_compared: int = 0
    slowest: tuple = (0.0, "")
    slowest_forward: tuple = (0.0, "")
    seconds: float = 0.0

    def summary(self) -> str:
        o = self.outcomes
        valid_rate = o["valid"] / max(1, self.cases)
        bugs = ", ".join(f"{o[k]} {k}" for k in BUGS)
        return (f"{self.cases} mutated v2 specs through validate + count (IR verifier after every "
                f"pass): {o['valid']} valid ({valid_rate:.0%}), {o['spec_error']} refused with a "
                f"located SpecError; bugs: {bugs}\n"
                f"{self.forwards} small valid networks compiled and run in train and eval: "
                f"{self.nodes_compared} node shapes compared with the IR's\n"
                f"slowest case {self.slowest[0]:.2f} s CPU ({self.slowest[1]}); slowest forward "
                f"{self.slowest_forward[0]:.2f} s ({self.slowest_forward[1]}); "
                f"{self.seconds:.0f} s in all; max RSS "
                f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


class Campaign:
    """`Campaign(tree, seed).run(specs, forwards)`: tree is a scratch folder (a copy of the zoo
    is put there); the pool of seeds and every mutation come from `seed`."""

    def __init__(self, tree, seed: int = 0, *, specs_dir, seeds_dir, generated: int = 60,
                 text_ratio: float = 0.25, keep_dir=None):
        self.tree = pathlib.Path(tree)
        if not (self.tree / "blocks").exists():
            shutil.copytree(specs_dir, self.tree, dirs_exist_ok=True)
        self.rng = random.Random(seed)
        self.pool = seed_pool(specs_dir, seeds_dir, generated, seed)
        self.text_ratio = text_ratio
        self.keep_dir = pathlib.Path(keep_dir) if keep_dir else None
        self.stats = Stats()
        self.bugs: list[Bug] = []
        self.mtime = time.time_ns()
        self.path = self.tree / "fuzz_case.yaml"

    def make_case(self) -> tuple[str, list, str]:
        origin, spec = self.rng.choice(self.pool)
        mutated, names = mutate_v2(spec, self.rng, self.rng.randint(1, 3))
        text = yaml.safe_dump(mutated, sort_keys=False, default_flow_style=None, width=100)
        if self.rng.random() < self.text_ratio:
            data = text.encode()
            for _ in range(self.rng.randint(1, 2)):
                op = self.rng.choice(TEXT_OPS)
                data = text_mutate(data, op, self.rng.randrange(2**24), self.rng.randrange(2**24))
                names.append(f"text:{op}")
            text = data.decode("utf-8", "surrogateescape")
        return origin, names, text

    def write(self, text: str):
        self.path.write_bytes(text.encode("utf-8", "surrogateescape"))
        self.mtime += 10**6   # a fresh, increasing mtime: no cache may keep the last case
        os.utime(self.path, ns=(self.mtime, self.mtime))

    def run(self, n_specs: int, n_forwards: int, progress=None) -> Stats:
        t0 = time.monotonic()
        with memory_cap():
            for i in range(n_specs):
                self.one(i, n_forwards)
                if progress and (i + 1) % 1000 == 0:
                    progress(f"{i + 1} cases, {self.stats.forwards} forwards, "
                             f"{dict(self.stats.outcomes)}, {time.monotonic() - t0:.0f} s")
        self.stats.seconds = time.monotonic() - t0
        return self.stats

    def one(self, i: int, n_forwards: int):
        import secompile
        from secompile.analysis.counts import report
        from secompile.ir.verify import IRError

        origin, names, text = self.make_case()
        st = self.stats
        st.cases += 1
        st.used_mutation.update(names)
        self.write(text)
        c0 = time.process_time()
        kind, message, rep = "valid", "", None
        try:
            with cpu_limit(PER_CASE_CPU_S):
                g = secompile.build_ir(str(self.path))
                rep = report(g)
        except secompile.SpecError as e:
            why = unlocated(e)
            kind, message = ("unlocated", why) if why else ("spec_error", "")
        except IRError as e:
            kind, message = "verifier", f"{e}"
        except Hang as e:
            kind, message = "hang", str(e)
        except Exception as e:   # noqa: BLE001 -- any other exception is the finding
            kind, message = "internal", _brief(e)
        cpu = time.process_time() - c0
        if cpu > st.slowest[0]:
            st.slowest = (cpu, f"case {i} from {origin}: {names}")
        st.outcomes[kind] += 1
        if kind == "valid":
            st.by_mutation.update(names)
        if kind in BUGS:
            self.keep(kind, i, origin, names, message, text)
            return
        if kind == "valid" and st.forwards < n_forwards \
                and rep["total"]["params"] <= FORWARD_MAX_PARAMS \
                and rep["total"]["macs"] <= FORWARD_MAX_MACS:
            self.forward(i, origin, names, text)

    def forward(self, i, origin, names, text):
        from secompile.ir.verify import IRError

        from .shapes import ShapeMismatch, check_shapes

        st = self.stats
        st.forwards += 1
        c0 = time.process_time()
        kind = None
        try:
            with cpu_limit(FORWARD_CPU_S):
                st.nodes_compared += sum(check_shapes(str(self.path)).values())
        except ShapeMismatch as e:
            kind, message = "shape_mismatch", str(e)
        except IRError as e:
            kind, message = "verifier", str(e)
        except Hang as e:
            kind, message = "hang", f"forward: {e}"
        except Exception as e:   # noqa: BLE001
            kind, message = "forward_error", _brief(e)
        if kind:
            st.outcomes[kind] += 1
            self.keep(kind, i, origin, names, message, text)
        cpu = time.process_time() - c0
        if cpu > st.slowest_forward[0]:
            st.slowest_forward = (cpu, f"case {i} from {origin}")

    def keep(self, kind, i, origin, names, message, text):
        self.bugs.append(Bug(kind, i, origin, names, message, text))
        if self.keep_dir:
            self.keep_dir.mkdir(parents=True, exist_ok=True)
            (self.keep_dir / f"{kind}-{i:05d}.yaml").write_text(
                f"# {kind} (case {i}, seed {origin}, {names}): "
                + " ".join(message.splitlines())[:500] + "\n" + text, errors="surrogateescape")


def _brief(e: BaseException) -> str:
    """The exception and the innermost frame it was raised in (one line)."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {tb[-1].filename}:{tb[-1].lineno} ({tb[-1].name})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"
