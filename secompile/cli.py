"""The command line: thin argument parsing over secompile.api.

Exit codes: 0 success, 2 spec errors (one `FILE:LINE:COL: path: message` per line on
stderr), 1 internal errors (a short message; `--debug` shows the traceback).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from . import __version__
from .spec.errors import SpecError


def _add_limits(p):
    from .api import MAX_MACS, MAX_PARAMS
    p.add_argument("--max-params", type=float, default=MAX_PARAMS, metavar="N",
                   help=f"refuse networks with more parameters (default {MAX_PARAMS:.0e})")
    p.add_argument("--max-macs", type=float, default=MAX_MACS, metavar="N",
                   help=f"refuse networks with more multiply-adds (default {MAX_MACS:.0e})")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="secompile", description="Squeeze-and-Excitation networks as data: "
                                 "validate, count, draw and compile YAML network specs.")
    ap.add_argument("--version", action="version", version=f"secompile {__version__}")
    ap.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check specs (schema + semantics) and report every problem")
    p.add_argument("specs", nargs="+", metavar="SPEC", type=pathlib.Path)

    p = sub.add_parser("count", help="analytic multiply-adds and parameters by stage")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("--json", action="store_true", help="print the report object as JSON")
    p.add_argument("--no-se", action="store_true", help="count the network without its SE blocks")

    p = sub.add_parser("build", help="validate, count and compile a spec; write reports (and other outputs)")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (default: out/<name>)")
    p.add_argument("--onnx", action="store_true", help="also write DIR/<name>.onnx")
    p.add_argument("--no-draw", action="store_true", help="do not write the block-level diagram DIR/<name>.svg")
    p.add_argument("--inference", action="store_true",
                   help="also compile the inference module (BN folded) and report its parameter count")
    _add_limits(p)

    p = sub.add_parser("export", help="lower a spec to a deployable format (ONNX)")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("-o", "--output", metavar="FILE", required=True)
    p.add_argument("--weights", metavar="CKPT", help="state_dict / checkpoint file (else initialised from --seed)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed when no weights are given")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the preceding convolutions")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17)")
    _add_limits(p)

    p = sub.add_parser("draw", help="draw the architecture with Graphviz")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("--level", choices=["stage", "block", "op"], default="block")
    p.add_argument("--format", choices=["svg", "png", "pdf", "dot"], default="svg")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: <name>-<level>.<format>)")
    p.add_argument("--scope", metavar="PATH",
                   help="draw only this block, stage, stem or head (e.g. stages.1.blocks.0; block and op levels)")

    p = sub.add_parser("zoo", help="table of every spec in a directory (default: specs/)")
    p.add_argument("directory", nargs="?", default="specs")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--markdown", action="store_true")

    sub.add_parser("schema", help="print the JSON Schema of the spec language")
    return ap


def _print_summary(report: dict, file=sys.stdout) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{report['name']}  input {'x'.join(map(str, report['input']))}", title_justify="left")
    for col in ("part", "blocks", "SE", "output", "MACs (G)", "params (M)"):
        t.add_column(col, justify="left" if col in ("part", "output") else "right")
    rows = ([report["stem"]] if report.get("stem") else []) + report["stages"] + \
        ([report["head"]] if report.get("head") else [])
    for r in rows:
        t.add_row(r["name"], str(r.get("blocks", "")), str(r.get("se_blocks", "")),
                  "x".join(map(str, r["output_shape"])), f"{r['macs'] / 1e9:.3f}", f"{r['params'] / 1e6:.3f}")
    tot = report["total"]
    t.add_row("total", "", str(report["se"]["blocks"]), "x".join(map(str, report["output"])),
              f"{tot['macs'] / 1e9:.3f}", f"{tot['params'] / 1e6:.3f}", style="bold")
    Console(file=file, width=100).print(t)
    print(f"multiply-adds {tot['macs']:,} (conv+fc {tot['conv_linear_macs']:,}); parameters {tot['params']:,}; "
          f"SE: {report['se']['blocks']} blocks, +{report['se']['params']:,} params", file=file)


def cmd_validate(args) -> int:
    from .api import build_ir
    problems = []
    for s in args.specs:
        try:
            g = build_ir(s)
            if not args.quiet:
                print(f"{s}: ok ({g.name}: {len(g)} ops, {len(g.se)} SE blocks)")
        except SpecError as e:
            problems.extend(e.messages)
    for m in problems:
        print(m, file=sys.stderr)
    return 2 if problems else 0


def cmd_count(args) -> int:
    from .api import count
    rep = count(args.spec, se=not args.no_se)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        _print_summary(rep)
    return 0


def cmd_build(args) -> int:
    from .build import build
    writers = []
    if not args.no_draw:
        from .backends.graphviz import build_output as draw_output
        writers.append(draw_output)
    if args.onnx:
        from .backends.onnx import build_output as onnx_output
        writers.append(onnx_output)
    rep = build(args.spec, args.output, max_params=args.max_params, max_macs=args.max_macs,
                extra_outputs=writers)
    if not args.quiet:
        _print_summary(rep)
        print(f"wrote {rep['_output_dir']}/: " + ", ".join(rep["_files"]))
    if args.inference:   # -- inference compilation (issue 16) --
        from .api import compile
        m = compile(args.spec, seed=0, inference=True, max_params=args.max_params, max_macs=args.max_macs)
        if not args.quiet:
            r, n = m.report, rep["total"]["params"]
            print(f"inference module: {r['params']:,} parameters ({r['params'] - n:+,}: {r['bn_folded']} "
                  f"BatchNorms folded into their convolutions), {r['relu_fused']} ReLUs fused, "
                  f"{r['memory_format']}")
    return 0


def cmd_export(args) -> int:
    from .backends.onnx import export_cli
    return export_cli(args)


def cmd_draw(args) -> int:
    from .backends.graphviz import draw_cli
    return draw_cli(args)


def cmd_zoo(args) -> int:
    from .analysis.zoo import zoo_cli
    return zoo_cli(args)


def cmd_schema(args) -> int:
    from .spec.schema import SCHEMA
    print(json.dumps(SCHEMA, indent=2))
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return {"validate": cmd_validate, "count": cmd_count, "build": cmd_build, "export": cmd_export,
                "draw": cmd_draw, "zoo": cmd_zoo, "schema": cmd_schema}[args.command](args)
    except SpecError as e:
        for m in e.messages:
            print(m, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # an internal error: short message, traceback only on request
        if args.debug:
            raise
        print(f"secompile: internal error: {type(e).__name__}: {e}\n"
              "  re-run with --debug for the traceback, and please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
