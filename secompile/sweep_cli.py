"""`secompile sweep` and `secompile diff`: argument parsing and output (secompile/sweep.py does
the work).

`register(subparsers)` adds both subcommands; each sets `handler` (its function) as a default,
so the CLI's dispatcher calls `args.handler(args)`. Spec problems raise SpecError (exit 2 in the
CLI, one located line each); invalid sweep variants are rows, not errors.
"""
from __future__ import annotations

import csv
import io
import json
import pathlib
import sys

from .analysis.numbers import si


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="evaluate the product of --vary lists analytically (MACs, params, SE cost)",
        description="Evaluate every combination of the --vary lists in one process: MACs, conv+fc "
                    "MACs, parameters, SE blocks and the SE cost against the same variant without "
                    "SE.")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("--vary", action="append", required=True, metavar="KEY=LIST",
                   help="a dotted spec path and a YAML list of alternatives, e.g. "
                        "--vary 'se.0.reduction=[4, 8, 16, 32]' (repeatable: the product is swept)")
    p.add_argument("--where", metavar="EXPR",
                   help="keep rows where EXPR holds (spec expression language), e.g. "
                        "'params < 30e6'; names: params, macs, conv_linear_macs, nodes, "
                        "se_blocks, se_params, se_macs, se_params_rel, se_macs_rel, base_params, "
                        "base_macs, acc, val_loss, epochs, index")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--csv", metavar="FILE", help="also write the rows as CSV")
    p.add_argument("--plot", metavar="FILE",
                   help="also plot params vs MACs with the Pareto front (svg/png; matplotlib)")
    p.add_argument("--emit", metavar="DIR", help="write one spec file per valid variant into DIR")
    p.add_argument("--metrics", action="append", metavar="GLOB",
                   help="join measured accuracy from examples/train.py's metrics.json files, e.g. "
                        "'runs/*/metrics.json'")
    p.set_defaults(handler=cmd_sweep)

    p = subparsers.add_parser("diff",
                              help="what changed from spec A to spec B, per stage and block",
                              description="Per stage and per block: nodes added, removed and "
                                          "changed, shapes, MACs and parameter deltas, SE blocks "
                                          "added or removed; totals.")
    p.add_argument("a", metavar="A", type=pathlib.Path)
    p.add_argument("b", metavar="B", type=pathlib.Path)
    p.add_argument("--json", action="store_true", help="print the diff object as JSON")
    p.add_argument("--draw", metavar="FILE",
                   help="write B's block-level diagram with the changes highlighted (svg, png, pdf "
                        "or dot by extension)")
    p.add_argument("--nodes", action="store_true", help="list every added/removed/changed node")
    p.set_defaults(handler=cmd_diff)


# -- sweep ---------------------------------------------------------------------------------
def _si(n) -> str:
    """3,871,627,264 -> '3.872G', 289,562 -> '289.6k': four significant digits (--json is exact)."""
    return si(n, 4, trim=False)


def _rel(x) -> str:
    return "" if x is None else f"{100 * x:+.2f}%"


def _keys(rows) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r["overrides"]))


def _fmt(v) -> str:
    from .lang.overrides import format_value
    return format_value(v)


def print_table(rows: list[dict], file=None) -> None:
    file = file or sys.stdout   # at call time: `-q` redirects it
    from rich.console import Console
    from rich.table import Table
    keys = _keys(rows)
    has_acc = any(r.get("acc") is not None for r in rows)
    t = Table(title=f"{rows[0]['spec'] if rows else 'sweep'}: {len(rows)} variant(s)",
              title_justify="left")
    t.add_column("#", justify="right")
    for k in keys:
        t.add_column(k)
    for col in ("MACs", "conv+fc MACs", "params", "SE", "SE params", "SE MACs") + \
            (("top-1 %",) if has_acc else ()) + ("",):
        t.add_column(col, justify="right" if col else "left")
    for r in rows:
        vals = [str(r["index"])] + [_fmt(r["overrides"].get(k, "")) for k in keys]
        if r["ok"]:
            vals += [_si(r["macs"]), _si(r["conv_linear_macs"]), _si(r["params"]),
                     str(r["se_blocks"]),
                     f"{r['se_params']:+,} ({_rel(r['se_params_rel'])})",
                     f"+{_si(r['se_macs'])} ({_rel(r['se_macs_rel'])})"]
            if has_acc:
                vals.append(f"{100 * r['acc']:.2f}" if r.get("acc") is not None else "")
            vals.append("pareto" if r.get("pareto") else "")
        else:
            vals += ["", "", "", "", "", ""] + ([""] if has_acc else []) + ["invalid"]
        t.add_row(*vals)
    Console(file=file, width=160).print(t)
    for r in rows:
        for m in r["errors"]:
            print(f"variant {r['index']} ({r['label']}): {m}", file=file)


CSV_FIELDS = ("index", "name", "label", "ok", "macs", "conv_linear_macs", "params",
              "nodes", "se_blocks",
              "base_macs", "base_params", "se_macs", "se_params", "se_macs_rel",
              "se_params_rel", "pareto",
              "acc", "val_loss", "epochs", "runs", "file", "errors")


def write_csv(rows: list[dict], path: str) -> str:
    from .outputs import atomic_write
    keys = _keys(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys + list(CSV_FIELDS))
    for r in rows:
        w.writerow([_fmt(r["overrides"].get(k, "")) for k in keys] +
                   ["; ".join(r["errors"]) if f == "errors"
                    else ("" if r.get(f) is None else r.get(f))
                    for f in CSV_FIELDS])
    return atomic_write(path, buf.getvalue())


def cmd_sweep(args) -> int:
    from .sweep import plot, sweep
    rows = sweep(args.spec, args.vary, where=args.where, metrics=args.metrics, emit=args.emit)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not getattr(args, "quiet", False):
        print_table(rows)
    quiet = args.json or getattr(args, "quiet", False)
    if args.csv:
        write_csv(rows, args.csv)
        if not quiet:
            print(f"wrote {args.csv}")
    if args.plot:
        plot(rows, args.plot)
        if not quiet:
            print(f"wrote {args.plot}")
    if args.emit and not quiet:
        print(f"wrote {sum(1 for r in rows if r.get('file'))} spec file(s) to {args.emit}/")
    return 0


# -- diff ----------------------------------------------------------------------------------
def _delta(t: dict, scale: float = 1.0, unit: str = "") -> str:
    if scale == 1.0:
        return f"{t['a']:,} -> {t['b']:,} ({t['delta']:+,})"
    return f"{t['a'] / scale:.3f}{unit} -> {t['b'] / scale:.3f}{unit} ({t['delta']:+,})"


def print_diff(d: dict, nodes: bool = False, file=None) -> None:
    file = file or sys.stdout   # at call time: `-q` redirects it
    from rich.console import Console
    from rich.table import Table
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


def cmd_diff(args) -> int:
    from .sweep import _graph, diff, draw_diff
    # built once, for the diff and the drawing
    ga, gb = _graph(args.a, None), _graph(args.b, None)
    d = diff(ga, gb)
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print_diff(d, nodes=args.nodes)
    if args.draw:
        from .backends.graphviz import DotNotFound
        try:
            out = draw_diff(ga, gb, args.draw)
        except DotNotFound as e:
            print(e, file=sys.stderr)
            return 2
        if not args.json:
            print(f"wrote {out}")
    return 0


__all__ = ["register", "cmd_sweep", "cmd_diff", "print_table", "print_diff", "write_csv"]
