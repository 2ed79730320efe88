"""The generator's oracle (secompile/testing/oracle.py) = the compiler, helper by helper.

The oracle is written apart from the compiler so that the two can disagree; these
properties compare them directly, on inputs the generated specs seldom reach (character
classes, negative and out-of-range indices, '**' anywhere, template and stage globs).
"""
import fnmatch

from hypothesis import given
from hypothesis import strategies as st
from profiles import scaled

from secompile.ir import ops
from secompile.ir.graph import Composite, Graph, Stage
from secompile.passes.insert_se import _indices, _select_blocks, glob_match
from secompile.testing import oracle

# -- paths and globs ------------------------------------------------------------------------

WORDS = ["stages", "blocks", "branch", "shortcut", "conv1", "conv2", "bn", "se", "0", "1", "12",
         "a", ""]
ODD = "ab1_-[]!*?^\\\n"         # text that exercises globs' character classes
segment = st.one_of(st.sampled_from(WORDS), st.text(ODD, max_size=4))
paths = st.lists(segment, min_size=1, max_size=6).map(".".join)
CLASSES = ["[{c}]", "[!{c}]", "[{c}-z]", "[a-{c}]", "[!{c}-z]", "[{c}-]", "[-{c}]", "[]{c}]",
           "[!]{c}]", "[!a]", "[0-9]", "[z-a]", "[!z-a]", "[a-c-e]", "[+-/]", "[!]", "[", "[!", "]"]


@st.composite
def wild(draw, text: str) -> str:
    """A glob made from `text`, character by character: most kept, some replaced by '?',
    '*' or a character class built around them (some odd, some unclosed)."""
    out = []
    for c in text:
        form = draw(st.sampled_from(["keep", "keep", "keep", "?", "*", "class", "class",
                                     "drop"]))
        if form == "keep":
            out.append(c)
        elif form == "class":
            out.append(draw(st.sampled_from(CLASSES)).replace("{c}", c))
        elif form != "drop":
            out.append(form)
    if draw(st.booleans()):
        extra = st.sampled_from(["*", "?", "**"] + CLASSES[-9:])
        out.insert(draw(st.integers(0, len(out))), draw(extra))
    return "".join(out)


@st.composite
def glob_for(draw, path: str) -> str:
    """A glob over `path`'s segments: some kept, some wildcarded, some '**', some random."""
    out = []
    for seg in path.split("."):
        form = draw(st.sampled_from(["keep", "keep", "star", "globstar", "wild", "wild", "drop",
                                     "odd"]))
        if form == "keep":
            out.append(seg)
        elif form == "star":
            out.append("*")
        elif form == "globstar":
            out.append("**")
        elif form == "wild":
            out.append(draw(wild(seg)))
        elif form == "odd":
            out.append(draw(st.text(ODD, max_size=5)))
    if draw(st.booleans()):
        out.insert(draw(st.integers(0, len(out))), "**")
    # mostly '.' between segments; sometimes a wildcard where the path has its dot, which
    # must not match it ('[+-/]' is a range holding '.')
    seps = st.sampled_from([".", ".", ".", ".", "?", "*", "[!a]", "[+-/]", "[!z-a]"])
    return out[0] + "".join(draw(seps) + seg for seg in out[1:]) if out else ""


path_and_glob = paths.flatmap(lambda p: st.tuples(
    st.just(p), st.one_of(glob_for(p), st.text(ODD + ".", max_size=10))))
names = st.one_of(st.sampled_from(["basic", "inception_a", "conv2_x", "stage1", "a.b", ""]),
                  st.text(ODD + ".", max_size=5))
name_and_glob = names.flatmap(lambda n: st.tuples(
    st.just(n), st.one_of(wild(n), st.text(ODD + ".", max_size=8))))


@scaled(5)
@given(path_and_glob)
def test_path_globs_agree(case):
    path, pattern = case
    assert oracle.glob(pattern, path) == glob_match(pattern, path), (pattern, path)


@scaled(5)
@given(name_and_glob)
def test_name_globs_agree(case):
    """The compiler matches template and stage names with fnmatch.fnmatchcase."""
    name, pattern = case
    assert oracle.name_glob(pattern, name) == fnmatch.fnmatchcase(name, pattern), (pattern, name)


def test_path_glob_examples():
    """The documented forms (docs/spec-language.md), in both."""
    cases = [("stages.*.blocks.*.branch.conv2", "stages.1.blocks.0.branch.conv2", True),
             ("stages.*.branch.conv2", "stages.1.blocks.0.branch.conv2", False),
             ("**.conv2", "stages.1.blocks.0.branch.conv2", True), ("**", "stem", True),
             ("stages.**", "stages", True), ("stages.**.bn", "stages.bn", True),
             ("stages.[01].*", "stages.1.blocks", True),
             ("stages.[!01].*", "stages.1.blocks", False),
             ("stem.conv?", "stem.conv1", True), ("stem*", "stem.conv1", False)]
    for pattern, path, want in cases:
        assert oracle.glob(pattern, path) is want, (pattern, path)
        assert glob_match(pattern, path) is want, (pattern, path)


def test_character_class_corners():
    """Every odd class form against single characters and short names, as names and as paths."""
    chars = "abcxz-]!^.[\n"
    patterns = [form.replace("{c}", c) for form in CLASSES for c in "bx-]"]
    patterns += [q + p for p in patterns for q in ("a", "*")] + [p + "*" for p in patterns]
    texts = list(chars) + ["ab", "a-", "a]", "a.b", "", "aab"]
    for pattern in patterns:
        for text in texts:
            want = fnmatch.fnmatchcase(text, pattern)
            assert oracle.name_glob(pattern, text) == want, (pattern, text)
            assert oracle.glob(pattern, text) == glob_match(pattern, text), (pattern, text)


# -- index selectors and block selection ------------------------------------------------

def index_selectors(n: int):
    i = st.integers(-2 * n - 2, 2 * n + 2)
    return st.one_of(st.just("all"), i, st.lists(i, max_size=4))


@scaled(5)
@given(st.integers(0, 8).flatmap(lambda n: st.tuples(st.just(n), index_selectors(n))))
def test_index_selectors_agree(case):
    n, sel = case
    assert oracle.indices(sel, n) == _indices(sel, n), (sel, n)


TEMPLATES = ["basic", "bottleneck", "inception_a", "inception_b", "x.y"]
NAMES = ["stage0", "stage1", "conv2_x", "low", "s_a", "a.b"]
NAME_GLOBS = ["stage*", "*", "?o*", "conv[0-9]_x", "[!s]*", "s_?", "nosuch", "a.*"]


@st.composite
def networks_and_selectors(draw):
    """Stages (layer stages: one block, no template) and a {stages, blocks, name} selector."""
    stages = []
    for i in range(draw(st.integers(1, 5))):
        template = draw(st.one_of(st.none(), st.sampled_from(TEMPLATES)))
        repeat = 1 if template is None else draw(st.integers(1, 4))
        stages.append((template, repeat, draw(st.sampled_from(NAMES))))
    n = len(stages)
    sel = {}
    if draw(st.booleans()):
        sel["stages"] = draw(index_selectors(n))
    if draw(st.booleans()):
        globs = TEMPLATES + [t[:2] + "*" for t in TEMPLATES]
        globs += ["*", "?", "", "inception_[ab]", "[!b]*"]
        sel["blocks"] = draw(st.one_of(index_selectors(4), st.sampled_from(globs)))
    if draw(st.booleans()):
        sel["name"] = draw(st.sampled_from(NAMES + NAME_GLOBS))
    return stages, sel


def both_views(stages):
    """The same network as the IR the compiler selects from and as the oracle's BlockInfos."""
    g, infos = Graph("net", (1, 8, 8)), []
    for i, (template, repeat, name) in enumerate(stages):
        stage = Stage(f"stages.{i}", name)
        g.stages.append(stage)
        for j in range(repeat):
            path = f"stages.{i}" if template is None else f"stages.{i}.blocks.{j}"
            kind = "layers" if template is None else "residual"
            g.blocks[path] = Composite(path, kind, "input", "input", template=template, stage=i,
                                       index=j, name=name)
            stage.blocks.append(path)
            infos.append(oracle.BlockInfo(path, i, j, template, name, kind, 8, 8))
    return g, infos, [len(s.blocks) for s in g.stages]


@scaled(5)
@given(networks_and_selectors())
def test_block_selectors_agree(case):
    stages, sel = case
    g, infos, sizes = both_views(stages)
    want = [b.path for b in _select_blocks(g, sel)]
    assert [b.path for b in oracle.select_blocks(infos, sel, sizes)] == want, (stages, sel)


# -- sizes ----------------------------------------------------------------------------------

def test_conv_sizes_agree():
    """Every axis size, kernel, stride, padding and dilation in a small box."""
    for n in range(1, 19):
        for k in range(1, 8):
            for s in range(1, 5):
                for p in range(0, 5):
                    for d in range(1, 4):
                        want = max(0, ops.conv_out(n, k, s, p, d))
                        assert oracle.conv_size(n, k, s, p, d) == want, (n, k, s, p, d)


def test_pool_sizes_agree():
    """Both roundings; pool padding is at most half the kernel (the compiler refuses more)."""
    for n in range(1, 19):
        for k in range(1, 8):
            for s in range(1, 8):
                for p in range(0, k // 2 + 1):
                    for ceil in (False, True):
                        want = max(0, ops.conv_out(n, k, s, p, 1, ceil))
                        assert oracle.pool_size(n, k, s, p, ceil) == want, (n, k, s, p, ceil)


def test_same_padding_agrees():
    for k in range(1, 12):
        for d in range(1, 6):
            assert oracle.same_pad(k, d) == ops.same_padding(k, d), (k, d)
