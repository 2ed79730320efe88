"""`secompile build`: validate, count, compile the module to check it, write the outputs.

Every output of one build is staged in a temporary directory and swapped in whole.
Backends add their files through OUTPUT_WRITERS (ONNX, diagrams).
"""
from __future__ import annotations

import json
import os

from .analysis.counts import report
from .api import MAX_MACS, MAX_PARAMS, build_ir, check_limits
from .outputs import staged_dir
from .spec.document import load_spec


def _report_md(rep: dict) -> str:
    lines = [f"# {rep['name']}", "", f"input {'x'.join(map(str, rep['input']))}, output "
             f"{'x'.join(map(str, rep['output']))}", "",
             "| part | blocks | SE | output | MACs | params |", "|---|---:|---:|---|---:|---:|"]
    rows = ([rep["stem"]] if rep.get("stem") else []) + rep["stages"] + ([rep["head"]] if rep.get("head") else [])
    for r in rows:
        lines.append(f"| {r['name']} | {r.get('blocks', '')} | {r.get('se_blocks', '')} | "
                     f"{'x'.join(map(str, r['output_shape']))} | {r['macs']:,} | {r['params']:,} |")
    t = rep["total"]
    lines += [f"| **total** | | {rep['se']['blocks']} | | **{t['macs']:,}** | **{t['params']:,}** |", "",
              f"Conv + fc multiply-adds: {t['conv_linear_macs']:,}. SE blocks add {rep['se']['params']:,} "
              f"parameters and {rep['se']['macs']:,} multiply-adds.", ""]
    return "\n".join(lines)


def build(spec_src, out_dir: str | None = None, *, max_params=MAX_PARAMS, max_macs=MAX_MACS,
          extra_outputs=()) -> dict:
    spec = load_spec(spec_src)
    g = build_ir(spec)
    counts = check_limits(spec, g, max_params, max_macs)
    rep = report(g, counts)

    from .backends.torch import lower
    model = lower(g, seed=0)
    n = sum(p.numel() for p in model.parameters())
    if n != rep["total"]["params"]:
        raise AssertionError(f"compiled module has {n} parameters, the analysis says {rep['total']['params']}")

    out_dir = out_dir or os.path.join("out", spec.name)
    files = ["report.json", "report.md"]
    with staged_dir(out_dir) as stage:
        with open(os.path.join(stage, "report.json"), "w") as f:
            json.dump(rep, f, indent=2)
            f.write("\n")
        with open(os.path.join(stage, "report.md"), "w") as f:
            f.write(_report_md(rep))
        for writer in extra_outputs:
            files += writer(spec, g, model, stage)
    return {**rep, "_output_dir": out_dir, "_files": files}
