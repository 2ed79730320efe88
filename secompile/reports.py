"""Every human-readable report, in one place: the CLI summary table, a build's report.md, and
the model zoo (rich table and docs/zoo.md).

Renderers take the plain data the API returns (a `count` report dict, zoo rows) and format it;
they compute nothing. The zoo's prose lives in `templates/zoo.md.in`, with the place where the
generated tables go marked; its notes are a `str.format` template filled from the rows.
"""
from __future__ import annotations

import os
import sys

from .lang.errors import SpecError
from .zoo import (
    CAFFE_README_EXTRA_PARAMS,
    CAFFE_REFERENCE,
    PAPER_TABLE2,
    ZOO_DIR,
    spec_stem,
)
from .zoo.names import members

ZOO_TEMPLATE = os.path.join(os.path.dirname(__file__), "templates", "zoo.md.in")
TABLES_MARK = "<!-- secompile zoo: the generated tables go here -->\n"


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _parts(rep: dict) -> list[dict]:
    """The rows of a count report: stem, stages, head."""
    return (([rep["stem"]] if rep.get("stem") else []) + rep["stages"]
            + ([rep["head"]] if rep.get("head") else []))


# -- one network ---------------------------------------------------------------------------
def print_summary(rep: dict, file=None) -> None:
    """`secompile count` / `build`: a rich table by part and a line of totals."""
    from rich.console import Console
    from rich.table import Table

    file = file or sys.stdout
    t = Table(title=f"{rep['name']}  input {_dims(rep['input'])}", title_justify="left")
    for col in ("part", "blocks", "SE", "output", "MACs (G)", "params (M)"):
        t.add_column(col, justify="left" if col in ("part", "output") else "right")
    for r in _parts(rep):
        t.add_row(r["name"], str(r.get("blocks", "")), str(r.get("se_blocks", "")),
                  _dims(r["output_shape"]), f"{r['macs'] / 1e9:.3f}", f"{r['params'] / 1e6:.3f}")
    tot = rep["total"]
    t.add_row("total", "", str(rep["se"]["blocks"]), _dims(rep["output"]),
              f"{tot['macs'] / 1e9:.3f}", f"{tot['params'] / 1e6:.3f}", style="bold")
    Console(file=file, width=100).print(t)
    print(f"multiply-adds {tot['macs']:,} (conv+fc {tot['conv_linear_macs']:,}); parameters "
          f"{tot['params']:,}; SE: {rep['se']['blocks']} blocks, +{rep['se']['params']:,} "
          "params", file=file)
    if rep.get("features"):
        print("features (channels, reduction): " + ", ".join(
            f"{f['module']} {f['num_chs']} /{f['reduction']}" for f in rep["features"]), file=file)
    if rep.get("overrides"):
        from .lang.overrides import format_value
        applied = ", ".join(f"{k}={format_value(v)}" for k, v in rep["overrides"].items())
        print(f"overrides: {applied}", file=file)


def report_markdown(rep: dict) -> str:
    """A build's report.md."""
    lines = [f"# {rep['name']}", "",
             f"input {_dims(rep['input'])}, output {_dims(rep['output'])}", "",
             "| part | blocks | SE | output | MACs | params |", "|---|---:|---:|---|---:|---:|"]
    if rep.get("overrides"):
        from .lang.overrides import format_value
        applied = ", ".join(f"`{k}={format_value(v)}`" for k, v in rep["overrides"].items())
        lines[4:4] = [f"Overrides applied: {applied}.", ""]
    for r in _parts(rep):
        lines.append(f"| {r['name']} | {r.get('blocks', '')} | {r.get('se_blocks', '')} | "
                     f"{_dims(r['output_shape'])} | {r['macs']:,} | {r['params']:,} |")
    t = rep["total"]
    lines += [f"| **total** | | {rep['se']['blocks']} | | **{t['macs']:,}** | "
              f"**{t['params']:,}** |", "",
              f"Conv + fc multiply-adds: {t['conv_linear_macs']:,}. SE blocks add "
              f"{rep['se']['params']:,} parameters and {rep['se']['macs']:,} multiply-adds.", ""]
    return "\n".join(lines)


# -- the zoo -------------------------------------------------------------------------------
def _family_key(stem: str) -> tuple:
    base = stem[3:] if stem.startswith("se_") else stem
    return (base, stem.startswith("se_"))


def zoo_table(directory=ZOO_DIR) -> list[dict]:
    """The model zoo table: one row per spec of `directory`, plain networks before their SE
    variant, counted from the IR (no torch). `secompile zoo` prints it; docs/zoo.md is
    `zoo_markdown(zoo_table())`.

    Row keys: name, file, variant (of a family file, else None), input (C, H, W), output, macs,
    conv_linear_macs, params, se_blocks,
    plain (file of the paired plain spec or None), se_macs_pct, se_params_pct (overhead over
    the plain spec in %, None without one), error (None, or the spec's problems as text). An
    SE spec `se_X.yaml` is paired with the plain spec `X.yaml` of the same directory.
    """
    from .analysis.counts import report
    from .api import prepare
    rows: dict[str, dict] = {}
    for stem, entry in members(directory):     # a family file: one row per variant
        path = entry.file
        row = {"name": stem, "file": os.path.basename(path), "input": None,
               "output": None, "macs": None,
               "conv_linear_macs": None, "params": None, "se_blocks": None, "plain": None,
               "se_macs_pct": None, "se_params_pct": None, "error": None,
               "variant": entry.variant}
        try:
            source = path if entry.variant is None else entry
            _, g, counts = prepare(source, max_params=None, max_macs=None)   # nothing allocated
            rep = report(g, counts)
        except SpecError as e:
            row["error"] = "\n".join(e.messages)
        else:
            row.update(name=rep["name"], input=tuple(rep["input"]), output=tuple(rep["output"]),
                       macs=rep["total"]["macs"], conv_linear_macs=rep["total"]["conv_linear_macs"],
                       params=rep["total"]["params"], se_blocks=rep["se"]["blocks"])
        rows[stem] = row
    for stem, row in rows.items():
        plain = rows.get(stem[3:]) if stem.startswith("se_") else None
        if plain is None:
            continue
        row["plain"] = plain["file"]
        if row["error"] is None and plain["error"] is None:
            row["se_macs_pct"] = 100.0 * (row["macs"] - plain["macs"]) / plain["macs"]
            row["se_params_pct"] = 100.0 * (row["params"] - plain["params"]) / plain["params"]
    return [rows[s] for s in sorted(rows, key=_family_key)]


def _g(n) -> str:
    return "" if n is None else f"{n / 1e9:.3f}"


def _m(n) -> str:
    return "" if n is None else f"{n / 1e6:.2f}"


def _pct(x) -> str:
    return "" if x is None else f"{x:+.2f}%"


def _size(row) -> str:
    return "" if row["input"] is None else "x".join(map(str, row["input"][1:]))


def _zoo_template() -> tuple[str, str]:
    """-> (preamble, notes) of templates/zoo.md.in."""
    with open(ZOO_TEMPLATE, encoding="utf-8") as f:
        preamble, notes = f.read().split(TABLES_MARK)
    return preamble, notes


def _table2(rows_by_stem: dict) -> list[str]:
    out = ["## Table 2 of the paper", "",
           "| network | spec | paper (G) | MACs (G) | diff | conv+fc (G) | diff |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for stem, (label, paper) in PAPER_TABLE2.items():
        r = rows_by_stem.get(stem)
        if r is None or r["error"] is not None:
            continue
        d1 = 100.0 * (r["macs"] / 1e9 - paper) / paper
        d2 = 100.0 * (r["conv_linear_macs"] / 1e9 - paper) / paper
        out.append(f"| {label} | `{r['file']}` | {paper:.2f} | {_g(r['macs'])} | {d1:+.2f}% | "
                   f"{_g(r['conv_linear_macs'])} | {d2:+.2f}% |")
    return out + [""]


def _caffe(rows_by_stem: dict) -> list[str]:
    out = ["## The authors' Caffe models", "",
           "Counts of the reference prototxt files (`../shared/reference/caffe/README.md`) against "
           "the spec reproducing each one.", "",
           "| prototxt | spec | conv+fc (README) | conv+fc (spec) | params (README) "
           "| params (spec) |",
           "|---|---|---:|---:|---:|---:|"]
    for stem, (proto, macs, params) in CAFFE_REFERENCE.items():
        r = rows_by_stem.get(stem)
        if r is None or r["error"] is not None:
            continue
        m = "equal" if r["conv_linear_macs"] == macs else f"{r['conv_linear_macs']:,}"
        extra = CAFFE_README_EXTRA_PARAMS.get(stem, 0)
        if r["params"] == params:
            p = "equal"
        elif extra and r["params"] == params - extra:
            p = f"{r['params']:,} (README - {extra:,}, see notes)"
        else:
            p = f"{r['params']:,}"
        out.append(f"| {proto} | `{r['file']}` | {macs:,} | {m} | {params:,} | {p} |")
    return out + [""]


def zoo_markdown(rows: list[dict]) -> str:
    """The zoo as Markdown (docs/zoo.md): table, comparison with the paper and the Caffe models,
    notes.

    The notes are left out where the rows lack a network they quote (a directory other than specs/).
    """
    preamble, notes = _zoo_template()
    by_stem = {spec_stem(r["file"]): r for r in rows}
    lines = [preamble, "## All specs", "",
             "| spec | network | input | MACs (G) | conv+fc MACs | params | SE blocks "
             "| SE MACs | SE params |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["error"] is not None:
            lines.append(f"| `{r['file']}` | error: {r['error'].splitlines()[0]} | | | | | | | |")
            continue
        lines.append(f"| `{r['file']}` | {r['name']} | {_size(r)} | {_g(r['macs'])} | "
                     f"{r['conv_linear_macs']:,} | {r['params']:,} | {r['se_blocks']} | "
                     f"{_pct(r['se_macs_pct'])} | {_pct(r['se_params_pct'])} |")
    lines.append("")
    lines += _table2(by_stem)
    lines += _caffe(by_stem)
    se_bn = by_stem.get("se_bn_inception")
    irv2 = by_stem.get("inception_resnet_v2")
    se_r50 = by_stem.get("se_resnet50")
    parts = (se_bn, irv2, se_r50)
    if (all(r is not None and r["error"] is None for r in parts)
            and se_r50["se_macs_pct"] is not None):
        cl = irv2["conv_linear_macs"] / 1e9
        lines.append(notes.format(se_bn_params=se_bn["params"], irv2_cl=cl,
                                  irv2_pct=100.0 * (cl - 11.75) / 11.75,
                                  se_r50_macs=se_r50["macs"] / 1e9,
                                  r50_macs=by_stem["resnet50"]["macs"] / 1e9,
                                  se_r50_pct=se_r50["se_macs_pct"]).rstrip("\n"))
    return "\n".join(lines).rstrip("\n") + "\n"


def print_zoo(rows: list[dict], directory, file=None) -> None:
    """`secompile zoo`: the rich table of a directory's specs."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"model zoo: {directory}", title_justify="left")
    for col in ("spec", "input", "MACs (G)", "conv+fc (G)", "params (M)", "SE",
                "SE MACs", "SE params"):
        t.add_column(col, justify="left" if col in ("spec", "input") else "right")
    for r in rows:
        if r["error"] is not None:
            t.add_row(r["file"], "error", "", "", "", "", "", "", style="red")
            continue
        t.add_row(r.get("variant") or spec_stem(r["file"]), _size(r), _g(r["macs"]),
                  _g(r["conv_linear_macs"]), _m(r["params"]),
                  str(r["se_blocks"]), _pct(r["se_macs_pct"]), _pct(r["se_params_pct"]))
    Console(file=file or sys.stdout, width=120).print(t)


__all__ = ["print_summary", "report_markdown", "zoo_table", "zoo_markdown", "print_zoo"]
