"""Architecture diagrams (issue 5): DOT structure against the IR, determinism, rendering with
the real `dot` for every spec in specs/, layout quality, and the path without `dot`.

The DOT is parsed by Graphviz itself (`dot -Tjson`, the parser that renders it, which also
gives the geometry for the no-edge-through-text check) and, for a small drawing, by pydot.
pydot's parser needs seconds per hundred HTML-labelled nodes, too slow for every spec.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pydot
import pytest

import secompile
from secompile import api, cli
from secompile.analysis.counts import Counts
from secompile.backends.graphviz import diagram as gv
from secompile.backends.graphviz import style as st
from secompile.backends.graphviz.layout import choose_columns
from secompile.backends.graphviz.levels import chains
from secompile.build import diagram_output
from secompile.cli import cmd_draw
from support import CHEAP, ROOT, SPECS, all_specs

HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="the Graphviz 'dot' program is not installed")
# IR nodes above which a level's test runs only with -m slow (layout, or layout + PNG raster)
HEAVY_LAYOUT = {"op": 500}
HEAVY_RENDER = {"op": 200, "block": 400}
SE_FILL = st.COLORS["se"][0]

_IR = {}


def ir(spec):
    key = str(spec)
    if key not in _IR:
        _IR[key] = secompile.build_ir(spec)
    return _IR[key]


def spec_levels(heavy: dict, default_levels=("stage",)):
    """Every spec at every level; by default only the cheap specs (support.CHEAP) run all levels,
    the others `default_levels`; bigger graphs than `heavy` allows run only under -m slow."""
    out = []
    for p in all_specs():
        for level in ("stage", "block", "op"):
            slow = ((p.stem not in CHEAP and level not in default_levels)
                    or (level in heavy and len(ir(p)) > heavy[level]))   # IRs built only if asked
            out.append(pytest.param(p, level, id=f"{p.stem}-{level}", marks=[pytest.mark.slow] if slow else []))
    return out


# -- reading the DOT back ------------------------------------------------------------------
class Layout:
    """A DOT text as Graphviz reads and lays it out (`dot -Tjson`)."""

    def __init__(self, source: str):
        out = subprocess.run(["dot", "-Tjson"], input=source.encode(), capture_output=True, check=True)
        d = json.loads(out.stdout)
        n_sub = d.get("_subgraph_cnt", 0)
        objs = d.get("objects", [])
        self.nodes = {o["name"]: o for o in objs[n_sub:]}
        names = {o["_gvid"]: o["name"] for o in objs[n_sub:]}
        self.clusters = {}
        for o in objs[:n_sub]:
            if o["name"].startswith("cluster_"):
                self.clusters[o["name"][len("cluster_"):]] = {**o, "members": {names[i] for i in o.get("nodes", [])}}
        self.edges = [(names[e["tail"]], names[e["head"]], e) for e in d.get("edges", [])]
        self.graph = d

    def visible_edges(self):
        return [(a, b) for a, b, e in self.edges if e.get("style") != "invis"]

    def ir_edges(self):
        """Drawn edges with the off-page connectors resolved: `T~to~B` is the tail side of an
        edge drawn again as `B~from~T -> head`."""
        out = []
        for a, b in self.visible_edges():
            if "~to~" in b:
                continue
            out.append((a.split("~from~")[1] if "~from~" in a else a, b))
        return out

    def crossings(self):
        """Visible edges whose curve passes through a node other than its ends (titles included)."""
        boxes = []
        for name, o in self.nodes.items():
            x, y = map(float, o["pos"].split(","))
            w, h = float(o["width"]) * 36, float(o["height"]) * 36
            boxes.append((name, x - w, y - h, x + w, y + h))
        bad = []
        for a, b, e in self.edges:
            if e.get("style") == "invis":
                continue
            pts = [p for op in e.get("_draw_", []) if op["op"] == "b" for p in _bezier(op["points"])]
            if not pts:
                continue
            ex0, ex1 = min(x for x, _ in pts), max(x for x, _ in pts)
            ey0, ey1 = min(y for _, y in pts), max(y for _, y in pts)
            for name, x0, y0, x1, y1 in boxes:
                if x1 < ex0 or x0 > ex1 or y1 < ey0 or y0 > ey1 or name in (a, b):
                    continue        # cheap rejection first: most boxes are nowhere near the edge
                if any(x0 + 1 < x < x1 - 1 and y0 + 1 < y < y1 - 1 for x, y in pts):
                    bad.append((a, b, name))
        return bad


def _bezier(p, n=16):
    for i in range(0, len(p) - 3, 3):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = p[i:i + 4]
        for k in range(n + 1):
            t = k / n
            u = 1 - t
            yield (u ** 3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t ** 3 * x3,
                   u ** 3 * y0 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t ** 3 * y3)


def is_aid(name):
    """Nodes the layout adds: cluster titles and off-page connectors."""
    return "~" in name


# -- structure, for every spec ---------------------------------------------------------------
@needs_dot
@pytest.mark.parametrize("spec,level", spec_levels(HEAVY_LAYOUT, ("stage", "block")))
def test_structure_matches_ir(spec, level):
    g = ir(spec)
    lay = Layout(api.to_dot(spec, level))
    if level == "stage":
        check_stage(g, lay)
    elif level == "block":
        check_block(g, lay)
    else:
        check_op(g, lay)
    assert lay.crossings() == [], "an edge runs through a node or a title"


def check_stage(g, lay):
    boxes = ["input"] + (["stem"] if "stem" in g.units else []) + [s.path for s in g.stages] + \
        (["head"] if "head" in g.units else [])
    assert sorted(lay.nodes) == sorted(boxes)
    assert lay.visible_edges() == list(zip(boxes, boxes[1:]))
    for s in g.stages:
        label = lay.nodes[s.path]["label"]
        n_se = sum(1 for b in s.blocks if any(k.startswith(b + ".") for k in g.se))
        said = f"SE in {n_se} of {len(s.blocks)} blocks" if n_se < len(s.blocks) else \
            f"SE in all {n_se} blocks" if n_se > 1 else "SE in the block"
        assert (said in label) == (n_se > 0) and ("SE in" in label) == (n_se > 0)
        assert st.shape_text(g.shape(g.blocks[s.blocks[-1]].output)) in label


def check_block(g, lay):
    chain_of, members = chains(g)
    # every block is a cluster holding the nodes that draw its IR nodes
    assert len([c for c in lay.clusters if c in g.blocks]) == len(g.blocks)
    for b in g.blocks:
        want = {chain_of[p] for p in g.order if p.startswith(b + ".") and chain_of[p].startswith(b + ".")}
        assert want <= lay.clusters[b]["members"], b
    # every IR node is drawn by exactly one node; one SE node per SE insertion
    drawn = {n for n in lay.nodes if not is_aid(n)}
    assert drawn == set(members)
    se_nodes = {n for n, o in lay.nodes.items() if o.get("class") == "se"}
    assert se_nodes == set(g.se) and len(se_nodes) == len(g.se)
    assert all(lay.nodes[n]["fillcolor"] == SE_FILL for n in se_nodes)
    assert not [n for n in drawn - se_nodes if lay.nodes[n].get("fillcolor") == SE_FILL]
    # the edges are the IR's edges between the collapsed nodes
    want = {(chain_of[a], chain_of[b]) for a, b in g.g.edges() if chain_of[a] != chain_of[b]}
    assert set(lay.ir_edges()) == want and len(lay.ir_edges()) == len(want)


def check_op(g, lay):
    assert {n for n in lay.nodes if not is_aid(n)} == set(g.order)
    got = lay.ir_edges()
    assert sorted(got) == sorted(g.g.edges())           # each IR edge exactly once
    assert len([c for c in lay.clusters if c in g.blocks]) == len(g.blocks)
    se_clusters = [c for c, o in lay.clusters.items() if o.get("class") == "se"]
    assert sorted(se_clusters) == sorted(g.se)
    roles = ("pool", "fc1", "act", "fc2", "gate", "scale")
    for s in g.se:
        if g.se[s].get("module", "se") != "se":   # ECA, CBAM, ...: every node of the module inside
            assert {p for p in g.order if p.startswith(s + ".")} <= lay.clusters[s]["members"]
            continue
        nodes = [f"{s}.{r}" for r in roles]   # pool -> fc1 -> relu -> fc2 -> gate -> scale, figure 3
        assert set(nodes) <= lay.clusters[s]["members"]
        assert set(zip(nodes, nodes[1:])) <= set(got)
    assert len([n for n, o in lay.nodes.items() if o.get("class") == "se"]) == \
        sum(f"{s}.{r}" in g for s in g.se for r in roles)


# -- rendering, for every spec ---------------------------------------------------------------
@needs_dot
@pytest.mark.parametrize("spec,level", spec_levels(HEAVY_RENDER, ()))
def test_renders_svg_and_png(spec, level, tmp_path):
    svg = api.draw(spec, level, "svg", tmp_path / f"{level}.svg")
    png = api.draw(spec, level, "png", tmp_path / f"{level}.png")
    text = pathlib.Path(svg).read_text()
    assert text.lstrip().startswith("<?xml") and "</svg>" in text
    assert pathlib.Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == sorted([f"{level}.svg", f"{level}.png"])   # no temp files


@needs_dot
def test_op_level_se_resnext50_renders_fast(tmp_path):
    """Issue 5: the op-level SVG of SE-ResNeXt-50 in under 10 s (typically well under 1 s)."""
    import time
    t = time.perf_counter()
    api.draw(SPECS / "se_resnext50.yaml", "op", "svg", tmp_path / "op.svg")
    assert time.perf_counter() - t < 10


# -- determinism -------------------------------------------------------------------------------
def test_dot_text_is_deterministic():
    spec = SPECS / "se_resnext50.yaml"
    first = {lv: api.to_dot(spec, lv) for lv in ("stage", "block", "op")}
    assert first == {lv: api.to_dot(spec, lv) for lv in ("stage", "block", "op")}
    assert api.to_dot(ir(spec).copy(), "op") == first["op"]        # from an IR Graph too
    code = ("import sys, secompile.api as api; "
            "sys.stdout.write(api.to_dot(sys.argv[1], 'block') + api.to_dot(sys.argv[1], 'op'))")
    outs = set()
    for seed in ("1", "2"):    # set and dict order may not leak into the text
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
        outs.add(subprocess.run([sys.executable, "-c", code, str(spec)], env=env, cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout)
    assert outs == {first["block"] + first["op"]}


# -- labels, read by an independent parser (pydot) -----------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")       # pydot's use of pyparsing
def test_op_labels_show_op_attributes_shape_and_cost():
    spec = SPECS / "se_resnext50.yaml"
    g, c = ir(spec), Counts(ir(spec))
    dot = pydot.graph_from_dot_data(api.to_dot(spec, "op", scope="stages.1.blocks.0"))[0]
    nodes = {n.get_name().strip('"'): n for sub in _walk(dot) for n in sub.get_nodes()}
    path = "stages.1.blocks.0.branch.conv2.conv"
    cost = c.nodes[path]
    assert cost.params == 256 * (256 // 32) * 9 and st.si(cost.params) == "18.4k"
    for part in ("conv 3×3, 256, stride 2, groups 32", "256×28×28", f"MACs {st.si(cost.macs)}",
                 "params 18.4k", "branch.conv2"):
        assert part in nodes[path].get("label"), part
    assert "fc1, 512→32 (r=16)" in nodes["stages.1.blocks.0.se.fc1"].get("label")
    assert "squeeze: global avg pool" in nodes["stages.1.blocks.0.se.pool"].get("label")
    title = nodes["stages.1.blocks.0~title"].get("label")
    assert "block 1.0 · bottleneck" in title and st.cost_text(c.scope("stages.1.blocks.0")) in title
    legend = dot.get("label")
    assert "Squeeze-and-Excitation" in legend and "multiply-adds" in legend
    # a cropped drawing: the block's IR nodes, and stubs for what feeds it and what reads it
    drawn = {n for n in nodes if n in g}
    assert drawn - {"stages.0.blocks.2.post.0", "stages.1.blocks.1.add", "stages.1.blocks.1.branch.conv1.conv"} == \
        {p for p in g.order if p.startswith("stages.1.blocks.0.")}
    assert "from stages.0.blocks.2.post.0" in nodes["stages.0.blocks.2.post.0"].get("label")


def _walk(graph):
    yield graph
    for sub in graph.get_subgraphs():
        yield from _walk(sub)


def test_stage_level_shows_stage_parameters():
    text = api.to_dot(SPECS / "se_resnext50.yaml", "stage")
    for part in ("stage 2 · bottleneck × 6", "width 512", "cardinality 32", "stride 2",
                 "SE in all 6 blocks, reduction 16", "output 1024×14×14"):
        assert part in text, part
    from_ir = api.to_dot(ir(SPECS / "se_resnext50.yaml"), "stage")    # without the spec: from the IR
    assert "groups 32" in from_ir and "width 512" not in from_ir


def test_block_level_draws_projection_and_identity_shortcuts():
    g = ir(SPECS / "se_resnet50.yaml")
    text = api.to_dot(g, "block")
    assert text.count("projection shortcut") == 4            # the first block of each stage
    dashed = [ln for ln in text.splitlines() if "->" in ln and "style=dashed" in ln]
    assert len(dashed) == 16 - 4                              # identity shortcuts


# -- columns -------------------------------------------------------------------------------------
def test_columns_follow_stages_and_split_only_very_long_ones(monkeypatch):
    import secompile.backends.graphviz.layout as layout
    seen = []
    monkeypatch.setattr(layout, "choose_columns", lambda *a: seen.append(choose_columns(*a)) or seen[-1])

    def columns(name):
        g = ir(SPECS / f"{name}.yaml")
        api.to_dot(g, "block")
        return {s.path: sorted({seen[-1].column[b] for b in s.blocks}) for s in g.stages}
    assert columns("se_resnet50") == {f"stages.{i}": [i] for i in range(4)}
    senet = columns("senet154")             # 3, 8, 36, 3 blocks
    assert len(senet["stages.2"]) > 1 and all(len(v) == 1 for k, v in senet.items() if k != "stages.2")


def test_choose_columns_packs_whole_stages():
    blocks = [f"s{i}.b{j}" for i, n in enumerate((2, 2, 2)) for j in range(n)]
    stage_of = {b: b.split(".")[0] for b in blocks}
    nodes = [([b], b, {"label": "<x>"}) for b in blocks]
    edges = list(zip(blocks, blocks[1:]))
    cols = choose_columns(blocks, stage_of, nodes, edges)
    for s in ("s0", "s1", "s2"):
        assert len({cols.column[b] for b in blocks if stage_of[b] == s}) == 1   # never split


# -- without dot ----------------------------------------------------------------------------------
@pytest.fixture
def no_dot(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("dot") is None
    return tmp_path


def test_without_dot_draw_writes_dot_source_and_says_how_to_render(no_dot):
    out = no_dot / "net.svg"
    with pytest.raises(gv.DotNotFound) as e:
        api.draw(SPECS / "se_resnet50.yaml", "block", "svg", out)
    assert not out.exists()
    assert (no_dot / "net.dot").read_text() == api.to_dot(SPECS / "se_resnet50.yaml", "block")
    msg = str(e.value)
    assert f"dot -Tsvg {no_dot / 'net.dot'} -o {out}" in msg and "apt-get install graphviz" in msg


def test_without_dot_cli_exits_2_except_for_dot_format(no_dot, capsys):
    spec = str(SPECS / "se_resnet50.yaml")
    assert cli.main(["draw", spec, "--format", "png", "-o", str(no_dot / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "dot -Tpng" in err and "apt-get install graphviz" in err
    assert (no_dot / "a.dot").exists() and not (no_dot / "a.png").exists()
    assert cli.main(["draw", spec, "--level", "op", "--format", "dot", "-o", str(no_dot / "b.dot")]) == 0
    assert (no_dot / "b.dot").read_text().startswith("digraph")


def test_without_dot_build_writes_dot_file(no_dot, capsys):
    spec = secompile.load_spec(SPECS / "se_resnet50.yaml")
    stage = no_dot / "stage"
    stage.mkdir()
    assert diagram_output(spec, ir(SPECS / "se_resnet50.yaml"), None, str(stage)) == ["se_resnet50.dot"]
    assert "dot -Tsvg se_resnet50.dot -o se_resnet50.svg" in capsys.readouterr().err
    assert os.listdir(stage) == ["se_resnet50.dot"]


def test_failed_render_leaves_no_file(monkeypatch, tmp_path):
    def broken(*a, **k):
        raise subprocess.CalledProcessError(1, ["dot"], stderr=b"syntax error")
    monkeypatch.setattr(gv.graphviz, "pipe", broken)
    monkeypatch.setattr(gv.shutil, "which", lambda name: "/usr/bin/dot")
    with pytest.raises(subprocess.CalledProcessError):
        api.draw(SPECS / "se_resnet50.yaml", "stage", "svg", tmp_path / "x.svg")
    assert os.listdir(tmp_path) == []


# -- CLI and build -------------------------------------------------------------------------------
@needs_dot
def test_cli_draw_default_name(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["draw", str(SPECS / "se_resnet50.yaml"), "--level", "stage"]) == 0
    assert (tmp_path / "se_resnet50-stage.svg").read_text().rstrip().endswith("</svg>")
    assert "se_resnet50-stage.svg" in capsys.readouterr().out


@needs_dot
def test_build_writes_block_diagram(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["-q", "build", str(SPECS / "se_resnet20_cifar.yaml"), "-o", str(out)]) == 0
    name = ir(SPECS / "se_resnet20_cifar.yaml").name
    svg = (out / f"{name}.svg").read_text()
    assert "</svg>" in svg and "block 0.0" in svg


def test_rejects_unknown_level_format_and_scope(tmp_path):
    with pytest.raises(ValueError, match="level"):
        api.to_dot(SPECS / "se_resnet50.yaml", "layer")
    with pytest.raises(ValueError, match="format"):
        api.draw(SPECS / "se_resnet50.yaml", "block", "jpeg", tmp_path / "x.jpeg")
    with pytest.raises(ValueError, match="names no node"):
        api.to_dot(SPECS / "se_resnet50.yaml", "op", scope="stages.9")


def test_draw_cli_scope_and_bad_scope(tmp_path, capsys):
    import argparse

    def args(scope):
        return argparse.Namespace(spec=str(SPECS / "se_resnet50.yaml"), level="op", format="dot",
                                  output=str(tmp_path / "x.dot"), scope=scope, quiet=False)
    assert cmd_draw(args("stages.9")) == 2
    assert "names no node" in capsys.readouterr().err and not (tmp_path / "x.dot").exists()
    assert cmd_draw(args("stages.1.blocks.0")) == 0
    assert "stages.1.blocks.0.se.fc1" in (tmp_path / "x.dot").read_text()
    assert "stages.2." not in (tmp_path / "x.dot").read_text()          # nothing outside the scope
