"""`secompile sweep` and `secompile diff`: argument parsing and what each writes (the package
does the work; the text tables are secompile/reports.py's).

`register(subparsers)` adds both subcommands; each sets `handler` (its function) as a default,
so the CLI's dispatcher calls `args.handler(args)`. Spec problems raise SpecError (exit 2, one
located line each); invalid grid variants are rows, but a sweep with no valid variant exits 2.
"""
from __future__ import annotations

import json
import pathlib
import sys

from .options import KINDS, MAX_VARIANTS


def _count(text: str) -> int:
    import argparse
    try:
        n = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="evaluate variants of a spec analytically: a grid of --vary lists, or "
                      "--sample N models from ranges (MACs, params, SE cost)",
        description="Evaluate every combination of the --vary lists (or --sample N of them) in "
                    "one process: MACs, conv+fc MACs, parameters, SE blocks and the SE cost "
                    "against the same variant without SE. Counting only: no torch.")
    p.add_argument("spec", metavar="SPEC", type=pathlib.Path)
    p.add_argument("--vary", action="append", required=True, metavar="KEY=VALUES",
                   help="a dotted spec path and its alternatives: a YAML list "
                        "('se.0.reduction=[4, 8, 16, 32]') or " + ", ".join(f"{k}(...)"
                                                                            for k in KINDS)
                        + " ('stages.0.out=range(16, 256, 8)'); repeatable: the product is "
                          "swept, or sampled with --sample")
    p.add_argument("--sample", type=_count, metavar="N",
                   help="draw N distinct valid variants at random (inside --where) instead of "
                        "the whole product")
    p.add_argument("--seed", type=int, help="the sampling seed (default 0)")
    p.add_argument("--max-draws", type=_count, metavar="N",
                   help="stop sampling after N draws (default 50 per model asked for)")
    p.add_argument("--max-variants", type=_count, default=MAX_VARIANTS, metavar="N",
                   help=f"refuse sweeps of more variants (default {MAX_VARIANTS:,})")
    p.add_argument("--where", metavar="EXPR",
                   help="keep rows where EXPR holds (spec expression language), e.g. "
                        "'params < 30e6' or 'macs >= 400e6 and macs <= 800e6' (with --sample: "
                        "the band the sample is drawn in); names: params, macs, "
                        "conv_linear_macs, nodes, se_blocks, se_params, se_macs, se_params_rel, "
                        "se_macs_rel, base_params, base_macs, acc, val_loss, epochs, index, "
                        "train_mem, infer_mem, act_mem (bytes; sizes with units: "
                        "'train_mem < 24GiB')")
    p.add_argument("--batch", type=_count, metavar="N",
                   help="also estimate memory for N images: train_mem, infer_mem, act_mem "
                        "(a --where that reads them estimates them at batch 1 without it)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="memory estimates: fp32, or bf16/fp16 autocast (default fp32)")
    p.add_argument("--optimizer", choices=["sgd", "adamw", "none"], default="sgd",
                   help="memory estimates: optimizer state in train_mem (default sgd)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--csv", metavar="FILE", help="also write the rows as CSV")
    p.add_argument("--plot", metavar="FILE",
                   help="also plot params vs MACs with the Pareto front (svg/png; matplotlib)")
    p.add_argument("--emit", metavar="DIR", help="write one spec file per valid variant into DIR "
                                                 "(a new or empty folder, or one secompile "
                                                 "wrote)")
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


def _sample_note(s: dict) -> str:
    why = [f"{s[k]} {w}" for k, w in (("outside", "outside --where"), ("invalid", "invalid"),
                                      ("repeats", "repeated")) if s[k]]
    return (f"sample (seed {s['seed']}): kept {s['kept']} of {s['sample']} asked for, "
            f"{s['drawn']} drawn" + (f" ({', '.join(why)})" if why else ""))


def cmd_sweep(args) -> int:
    from ..outputs import output_option
    from ..reports import print_sweep_table
    from . import plot, run, write_csv
    quiet = args.json or getattr(args, "quiet", False)
    if args.sample is None and (args.seed is not None or args.max_draws is not None):
        print("secompile sweep: --seed and --max-draws are for --sample N", file=sys.stderr)
        return 2
    with output_option("--emit"):
        rows = run(args.spec, args.vary, sample=args.sample, seed=args.seed or 0, where=args.where,
                   metrics=args.metrics, emit=args.emit, max_variants=args.max_variants,
                   max_draws=args.max_draws, batch=args.batch, dtype=args.dtype,
                   optimizer=args.optimizer)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not quiet:
        print_sweep_table(rows)
    summary = rows.summary
    if args.sample is not None:
        print(_sample_note(summary), file=sys.stderr if args.json else sys.stdout)
    if args.csv:
        with output_option("--csv"):
            write_csv(rows, args.csv)
        if not quiet:
            print(f"wrote {args.csv}")
    if args.plot:
        with output_option("--plot"):
            plot(rows, args.plot)
        if not quiet:
            print(f"wrote {args.plot}")
    if args.emit and not quiet:
        print(f"wrote {sum(1 for r in rows if r.get('file'))} spec file(s) to {args.emit}/")
    return _no_valid_variant(rows, summary)


def _no_valid_variant(rows, summary) -> int:
    """Exit 2, with the located errors on stderr, where not one variant was valid."""
    if any(r["ok"] for r in rows):
        return 0
    errors = summary.get("first_errors") or next((r["errors"] for r in rows if r["errors"]), [])
    invalid = summary.get("invalid", len(rows))
    if invalid == 0 and not errors:     # a sample whose valid draws all fell outside --where
        print(f"secompile sweep: no variant inside --where after {summary.get('drawn', 0)} "
              f"draws", file=sys.stderr)
        return 2
    print(f"secompile sweep: every variant is invalid ({invalid}); the first:", file=sys.stderr)
    for m in errors:
        print(m, file=sys.stderr)
    return 2


def cmd_diff(args) -> int:
    from ..outputs import output_option
    from ..reports import print_diff
    from . import diff, draw_diff
    from .diffing import graph_of
    ga, gb = graph_of(args.a), graph_of(args.b)    # built once, for the diff and the drawing
    d = diff(ga, gb)
    if args.json:
        print(json.dumps(d, indent=2))
    elif not getattr(args, "quiet", False):
        print_diff(d, nodes=args.nodes)
    if args.draw:
        from ..backends.graphviz import DotNotFound
        try:
            with output_option("--draw"):
                out = draw_diff(ga, gb, args.draw)
        except DotNotFound as e:
            print(e, file=sys.stderr)
            return 2
        if not args.json and not getattr(args, "quiet", False):
            print(f"wrote {out}")
    return 0


__all__ = ["register", "cmd_sweep", "cmd_diff"]
