"""Every human-readable report, in one place: the CLI summary table, a build's report.md, and
the model zoo (rich table and docs/zoo.md).

Renderers take the plain data the API returns (a `count` report dict, zoo rows) and format it;
they compute nothing. The zoo's prose lives in `templates/zoo.md.in`, with the place where the
generated tables go marked; its notes are a `str.format` template filled from the rows.

Over 400 lines on purpose: the issue asked for every text report in one module (count, build,
zoo, sweep, diff), so their number formats and wording stay one.
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
    if rep.get("memory"):
        print(memory_line(rep["memory"]), file=file)
    if rep.get("features"):
        print("features (channels, reduction): " + ", ".join(
            f"{f['module']} {f['num_chs']} /{f['reduction']}" for f in rep["features"]), file=file)
    if rep.get("overrides"):
        from .lang.overrides import format_value
        applied = ", ".join(f"{k}={format_value(v)}" for k, v in rep["overrides"].items())
        print(f"overrides: {applied}", file=file)


def memory_line(mem: dict) -> str:
    """One line for `count --batch N` and report.md (analysis/memory.py)."""
    from .analysis.memory import format_bytes as b
    return (f"memory at batch {mem['batch']} ({mem['dtype']}): activations "
            f"{b(mem['activations'])}; inference peak {b(mem['inference_peak'])}; training peak "
            f"{b(mem['train_peak'])} ({mem['optimizer']}: weights {b(mem['params'])}, gradients "
            f"{b(mem['gradients'])}, optimizer state {b(mem['optimizer_state'])}, kept for "
            f"backward {b(mem['saved_for_backward'])})")


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
    if rep.get("memory"):
        lines += [memory_line(rep["memory"]) + ".", ""]
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


# -- sweeps and diffs (secompile sweep / diff) ---------------------------------------------
def _si(n) -> str:
    """3,871,627,264 -> '3.872G', 289,562 -> '289.6k': four significant digits (--json is exact)."""
    from .analysis.numbers import si
    return si(n, 4, trim=False)


def _rel(x) -> str:
    return "" if x is None else f"{100 * x:+.2f}%"


def _keys(rows) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r["overrides"]))


def _fmt(v) -> str:
    from .lang.overrides import format_value
    return format_value(v)


def _mib(n) -> str:
    return "" if n is None else f"{n / 2**20:,.1f} MiB"


def print_sweep_table(rows: list[dict], file=None) -> None:
    """`secompile sweep`: one row per variant, its costs, the Pareto front and the errors."""
    from rich.console import Console
    from rich.table import Table
    file = file or sys.stdout
    keys = _keys(rows)
    has_acc = any(r.get("acc") is not None for r in rows)
    has_mem = any("train_mem" in r for r in rows)
    t = Table(title=f"{rows[0]['spec'] if rows else 'sweep'}: {len(rows)} variant(s)",
              title_justify="left")
    t.add_column("#", justify="right")
    for k in keys:
        t.add_column(k)
    for col in ("MACs", "conv+fc MACs", "params", "SE", "SE params", "SE MACs") + \
            (("train mem", "infer mem") if has_mem else ()) + \
            (("top-1 %",) if has_acc else ()) + ("",):
        t.add_column(col, justify="right" if col else "left")
    for r in rows:
        vals = [str(r["index"])] + [_fmt(r["overrides"].get(k, "")) for k in keys]
        if r["ok"]:
            vals += [_si(r["macs"]), _si(r["conv_linear_macs"]), _si(r["params"]),
                     str(r["se_blocks"]),
                     f"{r['se_params']:+,} ({_rel(r['se_params_rel'])})",
                     f"+{_si(r['se_macs'])} ({_rel(r['se_macs_rel'])})"]
            if has_mem:
                vals += [_mib(r["train_mem"]), _mib(r["infer_mem"])]
            if has_acc:
                vals.append(f"{100 * r['acc']:.2f}" if r.get("acc") is not None else "")
            vals.append("pareto" if r.get("pareto") else "")
        else:
            vals += ["", "", "", "", "", ""] + (["", ""] if has_mem else []) + \
                ([""] if has_acc else []) + ["invalid"]
        t.add_row(*vals)
    Console(file=file, width=160).print(t)
    for r in rows:
        for m in r["errors"]:
            print(f"variant {r['index']} ({r['label']}): {m}", file=file)


def _delta(t: dict, scale: float = 1.0, unit: str = "") -> str:
    if scale == 1.0:
        return f"{t['a']:,} -> {t['b']:,} ({t['delta']:+,})"
    return f"{t['a'] / scale:.3f}{unit} -> {t['b'] / scale:.3f}{unit} ({t['delta']:+,})"


def print_diff(d: dict, nodes: bool = False, file=None) -> None:
    """`secompile diff`: totals, then a table of what changed per stage and block."""
    from rich.console import Console
    from rich.table import Table
    file = file or sys.stdout
    t = d["totals"]
    print(f"{d['a']} -> {d['b']}" + ("  (identical)" if d["same"] else ""), file=file)
    if d["input"][0] != d["input"][1]:
        print(f"  input  {'x'.join(map(str, d['input'][0]))} -> "
              f"{'x'.join(map(str, d['input'][1]))}", file=file)
    if d["output"][0] != d["output"][1]:
        print(f"  output {'x'.join(map(str, d['output'][0]))} -> "
              f"{'x'.join(map(str, d['output'][1]))}", file=file)
    pct = f", {100 * t['params']['delta'] / t['params']['a']:+.2f}%" if t["params"]["a"] else ""
    print(f"  params     {_delta(t['params'])}{pct}", file=file)
    print(f"  MACs       {_delta(t['macs'])}", file=file)
    print(f"  conv+fc    {_delta(t['conv_linear_macs'])}", file=file)
    se = d["se"]
    print(f"  SE blocks  {t['se_blocks']['a']} -> {t['se_blocks']['b']}: {len(se['added'])} added "
          f"(+{se['params_added']:,} params, +{se['macs_added']:,} MACs), "
          f"{len(se['removed'])} removed"
          + (f" (-{se['params_removed']:,} params)" if se["removed"] else ""), file=file)
    print(f"  nodes      {t['nodes']['a']} -> {t['nodes']['b']}: {t['nodes_added']} added, "
          f"{t['nodes_removed']} removed, {t['nodes_changed']} changed", file=file)
    if d["same"]:
        return
    tab = Table(title="per stage and block (only what changed)", title_justify="left")
    for col in ("part", "status", "blocks", "SE", "nodes +/-/~", "output", "Δ params",
                "Δ MACs", "what"):
        tab.add_column(col, justify="right"
                       if col.startswith(("Δ", "SE", "blocks", "nodes")) else "left")
    units = {u["path"]: u for u in d["units"]}

    def unit_row(u, indent="  "):
        what = ["+SE " + _relpath(x, u["path"]) for x in u["se"]]
        what += ["SE " + _relpath(x, u["path"]) for x in u.get("se_changed", [])]
        reshaped = []
        for c in u["changed"]:
            if c["path"] in u["rewired"]:
                continue
            if set(c) <= {"path", "shape", "inputs"}:     # a consequence of a change upstream
                reshaped.append(c)
                continue
            fields = ", ".join(_change_text(k, v) for k, v in c.items()
                               if k not in ("path", "inputs"))
            what.append(f"{_relpath(c['path'], u['path'])}: {fields}")
        if reshaped:
            what.append(f"{len(reshaped)} more node(s) change shape")
        if u["rewired"] and u["se_added"]:
            what.append(f"{len(u['rewired'])} node(s) read the SE output")
        if u["removed"] and not u["se_removed"]:
            what.append(f"removed {', '.join(_relpath(p, u['path']) for p in u['removed'][:4])}"
                        + (" …" if len(u["removed"]) > 4 else ""))
        if u["se_removed"]:
            what.append("SE removed: " + ", ".join(u.get("se_removed_text", u["se_removed"])))
        shp = u["output_shape"]
        tab.add_row(indent + u["path"], u["status"], "",
                    _pm(len(u["se_added"]) - len(u["se_removed"])),
                    f"{len(u['added'])}/{len(u['removed'])}/{len(u['changed'])}",
                    _shape(shp), f"{u['params']['delta']:+,}", f"{u['macs']['delta']:+,}",
                    "; ".join(what[:3]) + (" …" if len(what) > 3 else ""))

    done = set()
    for u in d["units"]:
        if u["path"].split(".")[0] != "stages":
            if u["path"] in ("input", "stem"):
                unit_row(u, "")
                done.add(u["path"])
    for s in d["stages"]:
        if s["status"] == "same":
            continue
        tab.add_row(f"{s['name']} ({s['path']})", s["status"],
                    f"{s['blocks']['a']}->{s['blocks']['b']}",
                    _pm(s["se_blocks"]["delta"]), "", _shape(s["output_shape"]),
                    f"{s['params']['delta']:+,}",
                    f"{s['macs']['delta']:+,}", "", style="bold")
        for p in s["units"]:
            unit_row(units[p])
            done.add(p)
    for u in d["units"]:
        if u["path"] not in done:
            unit_row(u, "")
    Console(file=file, width=160).print(tab)
    if nodes:
        for u in d["units"]:
            for p in u["added"]:
                print(f"+ {p}", file=file)
            for p in u["removed"]:
                print(f"- {p}", file=file)
            for c in u["changed"]:
                print(f"~ {c['path']}: "
                      + ", ".join(_change_text(k, v) for k, v in c.items() if k != "path"),
                      file=file)


def _pm(n: int) -> str:
    return f"{n:+d}" if n else ""


def _shape(pair) -> str:
    a, b = ("x".join(map(str, s)) for s in pair)
    return a if a == b else f"{a or '-'} -> {b or '-'}"


def _relpath(p: str, unit: str) -> str:
    return p[len(unit) + 1:] if p.startswith(unit + ".") else p


def _change_text(k, v) -> str:
    if k == "attrs":
        return ", ".join(f"{a} {_short(x)}->{_short(y)}" for a, (x, y) in v.items())
    if k == "shape":
        return f"shape {'x'.join(map(str, v[0]))}->{'x'.join(map(str, v[1]))}"
    if k == "inputs":
        return "inputs rewired"
    return f"{k} {v[0]}->{v[1]}"


def _short(x) -> str:
    return "x".join(map(str, x)) if isinstance(x, list) else str(x)


__all__ = ["print_summary", "report_markdown", "zoo_table", "zoo_markdown", "print_zoo",
           "print_sweep_table", "print_diff"]
