"""Design-space sweeps and spec diffs, analytically, in one process.

    rows = secompile.sweep("specs/se_resnet50.yaml", vary={"se.0.reduction": [4, 8, 16, 32]})
    rows = secompile.sweep(spec, vary={"se.0.where.stages": ["all", [0, 1, 2]]},
                           where="params < 30e6")
    d = secompile.diff("specs/resnet50.yaml", "specs/se_resnet50.yaml")

A sweep is the product of the `vary` lists (first key slowest). The spec is read and parsed
once; each variant applies its overrides (secompile/lang/overrides.py) to a copy of the data and
is validated, expanded and counted. What is safe to share is shared: variants whose data differ
only in `se` reuse one expanded graph (SE insertion copies it), which is also the variant
"without SE" that the SE cost is measured against. An invalid variant is a row with its located
errors, never an exception. Rows are plain dicts (`as_dataframe(rows)` if pandas is installed).
"""
from __future__ import annotations

import glob as _glob
import itertools
import json
import os
import re

from .analysis.counts import Counts
from .analysis.diff import changed_paths, diff_graphs
from .analysis.numbers import si_unit
from .api import _gc_paused, build_ir
from .frontend import attention_modules, expand, se_rules
from .ir.ops import CONV_LINEAR_OPS
from .lang import expr
from .lang.document import Spec
from .lang.errors import Mark, Problem, SpecError
from .lang.overrides import (
    Override,
    apply_overrides,
    exists,
    format_value,
    make_override,
    parse_vary,
)
from .passes import insert_se
from .zoo.loader import load_spec  # zoo names, and every phase's problems

# names a --where expression can use (None where a row has no value, e.g. acc without --metrics)
WHERE_NAMES = ("params", "macs", "conv_linear_macs", "nodes", "se_blocks", "se_params", "se_macs",
               "se_params_rel", "se_macs_rel", "base_params", "base_macs", "acc", "val_loss",
               "epochs", "index")


# None in an invalid variant's row
COST_FIELDS = ("macs", "conv_linear_macs", "params", "nodes", "se_blocks", "base_macs",
               "base_params", "se_macs", "se_params", "se_macs_rel", "se_params_rel")


# -- the variants --------------------------------------------------------------------------
def _axes(vary) -> list[list[Override]]:
    """vary: {KEY: [values]} (Python values) or ['KEY=[YAML list]', ...] (CLI text) -> axes."""
    if isinstance(vary, dict):
        axes = []
        for i, (key, values) in enumerate(vary.items(), 1):
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise TypeError(f"vary[{key!r}] must be a list of alternatives, not "
                                f"{type(values).__name__}")
            values = list(values)
            if not values:
                raise SpecError([Problem(Mark("<vary>", i, 1), str(key), "no alternatives given")])
            axes.append([make_override(key, v, index=i, file="<vary>") for v in values])
        return axes
    if isinstance(vary, str):
        vary = [vary]
    problems, axes = [], []
    for i, text in enumerate(vary, 1):
        try:
            axes.append(parse_vary(text, index=i))
        except SpecError as e:
            problems.extend(e.problems)
    if problems:
        raise SpecError(problems)
    return [alts for _, alts in axes]


def variant_name(base: str, index: int, overrides) -> str:
    """Deterministic name of a variant (also its --emit file name and train.py's run folder)."""
    def clean(text):
        return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")
    slug = "+".join(f"{clean(o.key)}-{clean(format_value(o.value))}" for o in overrides)
    return f"{base}-{index:02d}-{slug[:80]}" if slug else f"{base}-{index:02d}"


class _Shared:
    """Per-sweep caches: expanded graphs (and their counts) keyed by everything but `se`."""

    def __init__(self):
        self.expanded: dict = {}

    def base(self, spec: Spec, overrides):
        key = json.dumps([{k: v for k, v in spec.data.items() if k != "se"},
                          [o.text for o in overrides if o.path[0] != "se"]],
                         sort_keys=True, default=str)
        hit = self.expanded.get(key)
        if hit is None:
            g = expand(spec)
            hit = self.expanded[key] = (g, Counts(g))
        return hit


def _evaluate(spec: Spec, shared: _Shared, overrides) -> dict:
    g0, c0 = shared.base(spec, overrides)
    rules = se_rules(spec)   # a rule whose `when:` is false left out (None)
    # with the spec's attention modules, as build_ir: v2 rule options (channels expressions,
    # act, module:) are template parameters the built-in block would not see
    g = insert_se(g0, rules, spec.smap, modules=attention_modules(spec)) if any(rules) else g0
    c = Counts(g) if g is not g0 else c0
    tot, base = c.total, c0.total
    return {"macs": tot.macs, "conv_linear_macs": c.by_op(*CONV_LINEAR_OPS).macs,
            "params": tot.params, "nodes": len(g), "se_blocks": len(g.se),
            "base_macs": base.macs, "base_params": base.params,
            "se_macs": tot.macs - base.macs, "se_params": tot.params - base.params,
            "se_macs_rel": (tot.macs - base.macs) / base.macs if base.macs else None,
            "se_params_rel": (tot.params - base.params) / base.params if base.params else None}


def _check_keys(spec: Spec | None, axes) -> None:
    """A KEY that names nothing in the spec is a bad --vary (exit 2), not N invalid rows: its
    path must resolve, and the first alternative must raise no problem located at the KEY's
    last segment (an unknown key or template parameter is reported there)."""
    if spec is None:
        return
    problems = []
    for alts in axes:
        try:
            apply_overrides(spec.data, spec.smap, alts[:1])
        except SpecError as e:
            problems.extend(e.problems)
            continue
        o = alts[0]
        # a key the spec has: its values are the variants' business
        if exists(spec.data, o.path):
            continue
        at_key = o.mark(o.key_cols[-1]) if o.key_cols else None
        try:
            v = load_spec(spec, overrides=alts[:1])
            expand(v)
        except SpecError as e:
            problems.extend(p for p in e.problems if p.mark == at_key)
    if problems:
        raise SpecError(problems)


def compile_where(where: str | None):
    """--where TEXT -> predicate(row). The spec expression language; names: WHERE_NAMES."""
    if where is None:
        return None
    if not isinstance(where, str) or not where.strip():
        raise SpecError([Problem(Mark("--where", 1, 1), "<where>", "empty expression")])
    text = where.replace("$", "")
    try:   # reject syntax errors and unknown names before anything runs
        expr.evaluate(text, {n: 1 for n in WHERE_NAMES})
    except expr.ExprError as e:
        raise SpecError([Problem(Mark("--where", 1, 1), "<where>", str(e))]) from None

    def pred(row) -> bool:
        try:
            return bool(expr.evaluate(text, {n: row.get(n) for n in WHERE_NAMES}))
        except expr.ExprError:   # e.g. acc of a run that has no metrics: not selected
            return False
    return pred


def sweep(spec, vary, *, where: str | None = None, metrics: str | list | None = None,
          emit: str | None = None, base_dir: str | None = None, dataframe: bool = False):
    """Evaluate every combination of `vary` analytically. -> list of row dicts (see module doc).

    vary: {KEY: [values]} or ['KEY=[a, b]', ...]. where: a budget filter in the spec expression
    language over WHERE_NAMES (invalid rows are kept). metrics: glob(s) of train.py metrics.json
    files joined by variant name or by (spec name, overrides). emit: a folder to write one spec
    file per valid variant. dataframe=True returns a pandas DataFrame."""
    axes = _axes(vary)
    pred = compile_where(where)
    with _gc_paused():
        try:
            base = load_spec(spec, base_dir)
        except SpecError:
            base = None          # perhaps every variant fixes it: each loads from the source
        _check_keys(base, axes)
        shared = _Shared()
        name = (base.name if base is not None
                else os.path.splitext(os.path.basename(os.fspath(spec)))[0]
                if isinstance(spec, (str, os.PathLike)) else "spec")
        rows = []
        for i, combo in enumerate(itertools.product(*axes)):
            row = {"index": i, "spec": name, "name": variant_name(name, i, combo),
                   "overrides": {o.key: o.value for o in combo},
                   "label": ", ".join(f"{o.key}={format_value(o.value)}" for o in combo),
                   "ok": True, "errors": [], **dict.fromkeys(COST_FIELDS)}
            try:
                v = load_spec(base if base is not None else spec, base_dir, overrides=list(combo))
                row.update(_evaluate(v, shared, combo))
                if emit:
                    row["file"] = write_variant(v, row["name"], emit)
            except SpecError as e:
                row.update({"ok": False, "errors": e.messages})
            rows.append(row)
    if metrics:
        join_metrics(rows, metrics)
    mark_pareto(rows)
    if pred is not None:
        rows = [r for r in rows if not r["ok"] or pred(r)]
    return as_dataframe(rows) if dataframe else rows


# -- results -------------------------------------------------------------------------------
def mark_pareto(rows: list[dict]) -> None:
    """row['pareto']: no other valid row is at least as good in params, MACs (and accuracy
    where every row has one) and better in one of them."""
    ok = [r for r in rows if r["ok"]]
    with_acc = bool(ok) and all(r.get("acc") is not None for r in ok)

    def key(r):
        return (r["params"], r["macs"]) + ((-r["acc"],) if with_acc else ())
    for r in rows:
        if not r["ok"]:
            r["pareto"] = False
            continue
        k = key(r)
        r["pareto"] = not any(all(x <= y for x, y in zip(key(o), k)) and key(o) != k for o in ok)


def read_metrics(pattern) -> list[dict]:
    files = sorted({f for p in ([pattern] if isinstance(pattern, str) else pattern)
                    for f in _glob.glob(p)})
    out = []
    for f in files:
        try:
            with open(f) as fh:
                m = json.load(fh)
        except (OSError, ValueError) as e:
            raise SpecError([Problem(Mark(f, 1, 1), "<metrics>",
                                     f"cannot read metrics: {e}")]) from None
        if isinstance(m, dict):
            out.append({**m, "_file": f})
    return out


def _key(overrides: dict) -> str:
    return json.dumps(overrides, sort_keys=True, default=str)


def join_metrics(rows: list[dict], pattern) -> None:
    """Add acc (final val top-1), val_loss, epochs and runs (how many) to the rows that have
    metrics files: matched by variant name (emitted specs), else by spec name and overrides."""
    ms = read_metrics(pattern)
    for r in rows:
        found = [m for m in ms if m.get("spec") == r["name"]] or \
                [m for m in ms if m.get("spec") == r["spec"]
                 and _key(m.get("overrides") or {}) == _key(r["overrides"])]
        found = [m for m in found if m.get("val_acc") is not None]
        if found:
            r["acc"] = sum(m["val_acc"] for m in found) / len(found)
            r["val_loss"] = sum(m.get("val_loss") or 0.0 for m in found) / len(found)
            r["epochs"] = max(m.get("epochs") or 0 for m in found)
            r["runs"] = len(found)
            r["metrics_files"] = [m["_file"] for m in found]


def write_variant(spec: Spec, name: str, folder: str) -> str:
    """One spec file per variant: the overridden data, renamed, includes re-pointed."""
    import yaml

    from .outputs import atomic_write
    os.makedirs(folder, exist_ok=True)
    data = dict(spec.data)
    data["name"] = name
    if isinstance(data.get("include"), list):
        data["include"] = [os.path.relpath(inc if os.path.isabs(inc)
                                           else os.path.join(spec.base_dir, inc),
                                           os.path.abspath(folder)) for inc in data["include"]]
    over = "; ".join(o.text for o in spec.overrides)
    data = {"name": name, "description": f"{spec.name} with {over} (secompile sweep)",
            **{k: v for k, v in data.items() if k not in ("name", "description")}}
    text = (f"# written by secompile sweep: {spec.name} ({spec.file}) with\n"
            + "".join(f"#   --set {o.text}\n" for o in spec.overrides)
            + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110))
    path = os.path.join(folder, f"{name}.yaml")
    atomic_write(path, text)
    return path


def as_dataframe(rows: list[dict]):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("as_dataframe needs pandas (pip install pandas); the rows "
                          "are plain dicts") from None
    return pd.DataFrame(rows)


def _unit(values) -> tuple[float, str]:
    return si_unit(max((abs(v) for v in values), default=0))


def plot(rows: list[dict], path: str, title: str | None = None) -> str:
    """params vs MACs, each point named by its values, the Pareto front marked and labelled;
    coloured by val top-1 where --metrics gave one (svg/png/pdf by the file's extension)."""
    try:
        import matplotlib
    except ImportError:
        raise SpecError([Problem(Mark("--plot", 1, 1), "<plot>",
                                 "plotting needs matplotlib (pip install matplotlib, or pip "
                                 "install 'secompile[plot]')")]) from None
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    from .outputs import atomic_write
    plt.rcParams["svg.hashsalt"] = "secompile"      # deterministic SVG ids
    ok = [r for r in rows if r["ok"]]
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    (pd, pu), (md, mu) = _unit([r["params"] for r in ok]), _unit([r["macs"] for r in ok])

    def xy(r):
        return r["params"] / pd, r["macs"] / md

    def short(r):   # the values only: the keys are in the title
        return ", ".join(format_value(r["overrides"][k]) for k in keys if k in r["overrides"])

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    acc = [r.get("acc") for r in ok]
    xs, ys = [xy(r)[0] for r in ok], [xy(r)[1] for r in ok]
    if any(a is not None for a in acc):
        sc = ax.scatter(xs, ys,
                        c=[100 * a if a is not None else float("nan") for a in acc], cmap="viridis",
                        s=40, zorder=2, plotnonfinite=True, label="variants")
        fig.colorbar(sc, ax=ax, label="val top-1 (%)")
    else:
        ax.scatter(xs, ys, s=32, color="#7a8ca3", zorder=2, label="variants")
    front = sorted((r for r in ok if r.get("pareto")), key=lambda r: (r["params"], r["macs"]))
    if len(ok) <= 16:     # few points: name them all; the front's names are drawn in colour
        for r in ok:
            if not r.get("pareto"):
                ax.annotate(short(r), xy(r), textcoords="offset points", xytext=(7, -3), fontsize=7,
                            color="#555555")
    if front:
        ax.plot([xy(r)[0] for r in front], [xy(r)[1] for r in front], "-o", color="#d9480f",
                mfc="none", ms=11,
                lw=1.2, zorder=3, label="Pareto front")
        for i, r in enumerate(front):
            text = short(r) + (f" ({100 * r['acc']:.1f}%)" if r.get("acc") is not None else "")
            ax.annotate(text, xy(r), textcoords="offset points",
                        xytext=(8, 8 if i % 2 == 0 else -14),
                        fontsize=7.5, color="#d9480f", fontweight="bold")
    ax.margins(x=0.25, y=0.15)
    ax.set_xlabel(f"parameters ({pu})" if pu else "parameters")
    ax.set_ylabel(f"multiply-adds ({mu})" if mu else "multiply-adds")
    name = rows[0]["spec"] if rows else "sweep"
    ax.set_title(title or f"{name}: {', '.join(keys)}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "svg"
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())


# -- diff ----------------------------------------------------------------------------------
def diff(a, b, *, overrides_a=None, overrides_b=None) -> dict:
    """Spec (or Graph) A -> B: per stage and per block what changed, and the totals
    (secompile.analysis.diff.diff_graphs)."""
    ga, gb = _graph(a, overrides_a), _graph(b, overrides_b)
    return diff_graphs(ga, gb)


def _graph(spec, overrides):
    from .ir.graph import Graph
    if isinstance(spec, Graph):
        return spec
    return build_ir(load_spec(spec, overrides=overrides) if overrides else spec)


ADDED = {"fillcolor": "#d3f9d8", "color": "#2b8a3e", "penwidth": "3"}
CHANGED = {"fillcolor": "#fff3bf", "color": "#e67700", "penwidth": "3"}


def draw_diff(a, b, path: str, fmt: str | None = None, *, overrides_a=None,
              overrides_b=None) -> str:
    """B's block-level diagram with what the diff from A adds (green) and changes (amber)
    highlighted; the title lists what was removed. Where `dot` is missing, DOT is written."""
    from .backends.graphviz import write_diagram
    from .backends.graphviz.levels import block_level
    from .backends.graphviz.style import html_lines
    ga, gb = _graph(a, overrides_a), _graph(b, overrides_b)
    d = diff_graphs(ga, gb)
    style = {"added": ADDED, "changed": CHANGED}
    highlight = {}
    for p, what in changed_paths(d).items():
        cls = "diff-" + what
        highlight[p] = {**style[what], "class": ("se " if _in_se(gb, p) else "") + cls}
    dot = block_level(gb, Counts(gb), highlight=highlight)
    t = d["totals"]
    removed = [u["path"] for u in d["units"] if u["status"] == "removed"] + d["se"]["removed"]
    lines = [f"green: added, amber: changed · params {t['params']['delta']:+,} · MACs "
             f"{t['macs']['delta']:+,} · SE blocks {t['se_blocks']['a']} → {t['se_blocks']['b']}"]
    if removed:
        lines.append("removed: " + ", ".join(removed[:12]) + (" …" if len(removed) > 12 else ""))
    dot.attr(label=html_lines(f"{d['a']} → {d['b']}", *lines, left=True))
    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower() or "svg"
    return write_diagram(dot.source, gb.name, "block", fmt, path)


def _in_se(g, p: str) -> bool:
    return any(p == s or p.startswith(s + ".") for s in g.se)


__all__ = ["sweep", "diff", "draw_diff", "plot", "as_dataframe", "mark_pareto",
           "join_metrics", "read_metrics",
           "write_variant", "variant_name", "compile_where", "WHERE_NAMES"]
