#!/usr/bin/env python3
"""The v2 fuzz campaign (issue 19): mutated v2 specs through validate + count with the IR
verifier on after every pass, and the small valid ones through compile + forward in train and
eval with torch's shape == the IR's at every node (secompile/testing/campaign.py says how cases
are made and classified).

    OMP_NUM_THREADS=1 python tools/fuzz_campaign.py --specs 20000 --forwards 1000 --seed 0

Prints progress every 1,000 cases and a summary; exit 1 when it found a bug (an internal error,
a verifier failure, an unlocated refusal, a hang, a shape mismatch or a failed forward), each
bug's spec kept under --keep (default fuzz-findings/) with its classification on line 1.
Needs torch and hypothesis (the `test` extra).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

os.environ["SECOMPILE_VERIFY"] = "1"   # read when secompile.ir.verify is imported: set it first
ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--specs", type=int, default=20_000, help="cases through validate + count")
    ap.add_argument("--forwards", type=int, default=1_000,
                    help="small valid cases compiled and run in train and eval")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generated", type=int, default=60,
                    help="specs(v2=True) networks in the seed pool")
    ap.add_argument("--text-ratio", type=float, default=0.25,
                    help="share of cases that also get 1-2 text mutations")
    ap.add_argument("--keep", default="fuzz-findings", help="folder for the specs of bugs found")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)

    import torch

    from secompile.testing.campaign import Campaign

    torch.set_num_threads(1)
    progress = None if args.quiet else (lambda line: print(f"[fuzz] {line}", flush=True))
    with tempfile.TemporaryDirectory(prefix="secompile-fuzz-") as tree:
        camp = Campaign(tree, args.seed, specs_dir=ROOT / "specs",
                        seeds_dir=ROOT / "tests" / "fuzz" / "seeds", generated=args.generated,
                        text_ratio=args.text_ratio, keep_dir=args.keep)
        print(f"[fuzz] seed {args.seed}: {len(camp.pool)} seed specs, {args.specs} cases, "
              f"{args.forwards} forwards", flush=True)
        stats = camp.run(args.specs, args.forwards, progress)
    print(stats.summary())
    print("valid after each mutation: " + ", ".join(
        f"{k} {stats.by_mutation[k]}/{n}" for k, n in sorted(stats.used_mutation.items())
        if not k.startswith("text:")))
    for bug in camp.bugs[:50]:
        print(f"BUG {bug.kind} case {bug.case} ({bug.origin}, {bug.mutations}): "
              f"{bug.message[:300]}")
    if camp.bugs:
        print(f"{len(camp.bugs)} bug(s); their specs are in {args.keep}/")
    return 1 if camp.bugs else 0


if __name__ == "__main__":
    sys.exit(main())
