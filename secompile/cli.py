"""The command line: thin argument parsing over secompile.api.

Exit codes: 0 success, 2 spec errors (one `FILE:LINE:COL: path: message` per line on
stderr), 1 internal errors (a short message; `--debug` shows the traceback).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pathlib
import sys

from . import __version__
from .ir.plugins import PluginError
from .lang.errors import Mark, Problem, SpecError
from .reports import print_summary


def _add_limits(p):
    from .api import MAX_MACS, MAX_PARAMS
    p.add_argument("--max-params", type=float, default=MAX_PARAMS, metavar="N",
                   help=f"refuse networks with more parameters (default {MAX_PARAMS:.0e})")
    p.add_argument("--max-macs", type=float, default=MAX_MACS, metavar="N",
                   help=f"refuse networks with more multiply-adds (default {MAX_MACS:.0e})")


def _add_set(*parsers):
    """`--set KEY=VALUE` (repeatable) on the spec commands; see secompile/lang/overrides.py."""
    for p in parsers:
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set",
                       help="override a spec value before validation (dotted path, YAML value; "
                            "repeatable), e.g. --set stages.2.repeat=8 --set input.size=320")


def _spec(args, path):
    """The spec to hand to the API: the path (zoo names are resolved by the API's loader), or
    the Spec with the --set overrides applied."""
    if not getattr(args, "set", None):
        return path
    from .zoo import load_spec
    return load_spec(path, overrides=args.set)


def _indices(text: str) -> tuple:
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected feature indices like 1,2,3, got {text!r}") \
            from None


def _add_features(p, what):
    p.add_argument("--features-only", action="store_true",
                   help=f"{what} the backbone: no head; timm's features, one per reduction")
    p.add_argument("--out-indices", type=_indices, default=None, metavar="I,J,...",
                   help="the features to give, indices into timm's list (with --features-only; "
                        "default: every feature)")


def _add_common(parsers):
    """-q/--debug are accepted after the subcommand too (`secompile build SPEC -q`)."""
    for p in parsers:
        have = p._option_string_actions
        if "--debug" not in have:
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help="show tracebacks of internal errors")
        if "-q" not in have and "--quiet" not in have:
            p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                           help=QUIET_HELP)


SPEC_HELP = "a spec file, or a zoo name (`secompile zoo` lists them)"
QUIET_HELP = "print only errors (and the output --json, --markdown or `schema` asks for)"


def _asked_for_output(args) -> bool:
    """Output a flag asks for is what the command is run for: -q leaves it on stdout."""
    return bool(getattr(args, "json", False) or getattr(args, "markdown", False)
                or args.command == "schema")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="secompile",
                                 description="Squeeze-and-Excitation networks as data: validate, "
                                             "count, draw and compile YAML network specs.")
    ap.add_argument("--version", action="version", version=f"secompile {__version__}")
    ap.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    ap.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check specs (schema + semantics) and report every problem")
    p.add_argument("specs", nargs="+", metavar="SPEC", type=pathlib.Path)

    p = sub.add_parser("count", help="analytic multiply-adds and parameters by stage")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("--json", action="store_true", help="print the report object as JSON")
    p.add_argument("--no-se", action="store_true", help="count the network without its SE blocks")
    _add_features(p, "count")
    p.add_argument("--batch", type=_positive, metavar="N",
                   help="also count memory for N images: activations, inference and training peak")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="with --batch: fp32, or bf16/fp16 autocast (default fp32)")
    p.add_argument("--optimizer", choices=["sgd", "adamw", "none"], default="sgd",
                   help="with --batch: optimizer state in the training peak (sgd = with momentum)")

    p = sub.add_parser("build",
                       help="validate, count and compile a spec; write reports (and other outputs)")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (default: out/<name>)")
    p.add_argument("--onnx", action="store_true", help="also write DIR/<name>.onnx")
    p.add_argument("--batch", type=_positive, metavar="N",
                   help="add memory at batch N (fp32, SGD) to report.json/md")
    p.add_argument("--no-draw", action="store_true",
                   help="do not write the block-level diagram DIR/<name>.svg")
    p.add_argument("--inference", action="store_true",
                   help="also compile the inference module (BN folded) and report its "
                        "parameter count")
    _add_limits(p)

    p = sub.add_parser("export", help="lower a spec to a deployable format (ONNX)")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("-o", "--output", metavar="FILE", required=True)
    p.add_argument("--weights", metavar="CKPT",
                   help="state_dict / checkpoint file (else initialised from --seed)")
    p.add_argument("--seed", type=int, default=0,
                   help="initialisation seed when no weights are given")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold BatchNorm into the preceding convolutions")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17)")
    _add_features(p, "export")
    _add_limits(p)

    p = sub.add_parser("draw", help="draw the architecture with Graphviz")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("--level", choices=["stage", "block", "op"], default="block")
    p.add_argument("--format", choices=["svg", "png", "pdf", "dot"], default="svg")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="output file (default: <name>-<level>.<format>)")
    p.add_argument("--scope", metavar="PATH",
                   help="draw only this block, stage, stem or head (e.g. stages.1.blocks.0; "
                        "block and op levels)")

    p = sub.add_parser("zoo", help="table of every spec in a directory (default: the shipped zoo)")
    p.add_argument("directory", nargs="?", default=None)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--markdown", action="store_true")

    sub.add_parser("schema", help="print the JSON Schema of the spec language")
    _add_set(*(sub.choices[c] for c in ("validate", "count", "build", "export", "draw")))
    from .sweep.cli import register  # sweep, diff (secompile/sweep/cli.py)
    register(sub)
    _add_common(sub.choices.values())
    for name in ("validate", "count", "build", "export", "draw", "sweep", "diff"):
        for a in sub.choices[name]._actions if name in sub.choices else ():
            if a.metavar in ("SPEC", "A", "B") and not a.option_strings:
                a.help = a.help or SPEC_HELP
    return ap


def cmd_validate(args) -> int:
    from .api import build_ir
    problems = []
    for s in args.specs:
        try:
            g = build_ir(_spec(args, s))
            if not args.quiet:
                print(f"{s}: ok ({g.name}: {len(g)} ops, {len(g.se)} SE blocks)")
        except SpecError as e:
            problems.extend(e.messages)
    for m in problems:
        print(m, file=sys.stderr)
    return 2 if problems else 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a positive whole number, not {text!r}")
    return int(text)


def cmd_count(args) -> int:
    from .api import count
    rep = count(_spec(args, args.spec), se=not args.no_se, features_only=args.features_only,
                out_indices=_out_indices(args), batch=args.batch, dtype=args.dtype,
                optimizer=args.optimizer)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print_summary(rep)
    return 0


def _out_indices(args):
    if args.out_indices is not None and not args.features_only:
        raise SpecError([Problem(Mark("--out-indices", 1, 1), "out_indices",
                                 "--out-indices selects features: add --features-only")])
    return args.out_indices


def cmd_build(args) -> int:
    from .build import build, diagram_output, onnx_output
    from .outputs import output_option
    writers = []
    if not args.no_draw:
        writers.append(diagram_output)
    if args.onnx:
        writers.append(onnx_output)
    with output_option("-o"):      # a bad output path is named by its option (exit 2)
        rep = build(_spec(args, args.spec), args.output, max_params=args.max_params,
                    max_macs=args.max_macs, extra_outputs=writers, batch=args.batch)
    if not args.quiet:
        print_summary(rep)
        print(f"wrote {rep['_output_dir']}/: " + ", ".join(rep["_files"]))
    if args.inference:   # -- inference compilation (issue 16) --
        from .backends.torch.inference import optimize_for_inference
        m = optimize_for_inference(rep["_model"].eval())   # the module the build compiled
        if not args.quiet:
            r, n = m.report, rep["total"]["params"]
            print(f"inference module: {r['params']:,} parameters ({r['params'] - n:+,}: "
                  f"{r['bn_folded']} BatchNorms folded into their convolutions), {r['relu_fused']} "
                  f"ReLUs fused, {r['memory_format']}")
    return 0


def cmd_export(args) -> int:
    """`secompile export SPEC --format onnx -o FILE [--weights CKPT] [--fold-bn] [--opset N]`."""
    from .api import to_onnx
    from .backends.onnx import DEFAULT_OPSET, check_opset
    from .outputs import output_option
    opset = args.opset if args.opset is not None else DEFAULT_OPSET
    try:
        check_opset(opset)
    except ValueError as e:
        print(f"secompile export: --opset: {e}", file=sys.stderr)
        return 2
    with output_option("-o"):
        model = to_onnx(_spec(args, args.spec), args.weights, args.output, seed=args.seed,
                        fold_bn=args.fold_bn, opset=opset, max_params=args.max_params,
                        max_macs=args.max_macs, features_only=args.features_only,
                        out_indices=_out_indices(args))
    if not getattr(args, "quiet", False):
        n = sum(math.prod(t.dims) for t in model.graph.initializer)
        outs = len(model.graph.output)
        print(f"wrote {args.output}: {model.graph.name}, {len(model.graph.node)} nodes, "
              f"{n:,} weights, opset {opset}{', BatchNorm folded' if args.fold_bn else ''}"
              f"{f', {outs} feature outputs' if args.features_only else ''}")
    return 0


def cmd_draw(args) -> int:
    """`secompile draw SPEC [--level] [--format] [-o FILE]`: 0 drawn, 2 `dot` missing (DOT
    written)."""
    from .api import draw
    from .backends.graphviz import DotNotFound
    from .outputs import output_option
    try:
        with output_option("-o"):
            out = draw(_spec(args, args.spec), args.level, args.format, args.output,
                       scope=getattr(args, "scope", None))
    except DotNotFound as e:
        print(e, file=sys.stderr)
        return 2
    except ValueError as e:          # a scope that names nothing: the user's mistake, not a crash
        print(f"secompile: {e}", file=sys.stderr)
        return 2
    if not getattr(args, "quiet", False):
        print(f"wrote {out}")
    return 0


def cmd_zoo(args) -> int:
    """`secompile zoo [DIR] [--json|--markdown]`: 0, or 2 when a spec has problems."""
    from .reports import print_zoo, zoo_markdown, zoo_table
    from .zoo import ZOO_DIR
    directory = args.directory if args.directory is not None else ZOO_DIR
    if not os.path.isdir(directory):
        print(f"secompile zoo: {directory}: not a directory", file=sys.stderr)
        return 2
    rows = zoo_table(directory)
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
    elif getattr(args, "markdown", False):
        sys.stdout.write(zoo_markdown(rows))
    else:
        print_zoo(rows, directory if args.directory is not None else "the shipped zoo")
    errors = [r for r in rows if r["error"] is not None]
    for r in errors:
        print(r["error"], file=sys.stderr)
    return 2 if errors else 0


def cmd_schema(args) -> int:
    from .lang.schema import SCHEMA
    print(json.dumps(SCHEMA, indent=2))
    return 0


def _resolve_names(args) -> None:
    """Zoo names in the spec arguments of sweep and diff (the other commands go through _spec)."""
    if args.command in ("sweep", "diff"):
        from .zoo import resolve_spec
        for attr in ("spec", "a", "b"):
            if getattr(args, attr, None) is not None:
                found = resolve_spec(getattr(args, attr))
                # a family's variant has no file of its own: its name, which the loader resolves
                setattr(args, attr, pathlib.Path(found) if isinstance(found, (str, os.PathLike))
                        else str(getattr(args, attr)))


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    args.debug = getattr(args, "debug", False)
    args.quiet = getattr(args, "quiet", False)
    try:
        _resolve_names(args)
        handler = getattr(args, "handler", None) or {   # handler: subcommands added by register()
            "validate": cmd_validate, "count": cmd_count, "build": cmd_build, "export": cmd_export,
            "draw": cmd_draw, "zoo": cmd_zoo, "schema": cmd_schema}[args.command]
        if args.quiet and not _asked_for_output(args):   # -q: the same in every command
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                return handler(args)
        return handler(args)
    except SpecError as e:
        for m in e.messages:
            print(m, file=sys.stderr)
        return 2
    except PluginError as e:   # a plug-in op of the calling program without an emitter
        print(f"secompile: {e}", file=sys.stderr)
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
