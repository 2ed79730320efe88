"""`secompile build`: validate, count, compile the module to check it, write the outputs.

Every output of one build is staged in a temporary directory and swapped in whole.
Extra outputs are writers `(spec, g, model, stage_dir) -> [file names]`: the block-level
diagram (`diagram_output`) and the ONNX model (`onnx_output`) below.
"""
from __future__ import annotations

import json
import os
import sys

from .analysis.counts import report
from .api import MAX_MACS, MAX_PARAMS, prepare
from .ir.graph import Graph
from .outputs import check_folder, safe_name, staged_dir
from .reports import report_markdown


def build(spec_src, out_dir: str | None = None, *, max_params=MAX_PARAMS, max_macs=MAX_MACS,
          extra_outputs=(), batch: int | None = None) -> dict:
    spec, g, counts = prepare(spec_src, max_params=max_params, max_macs=max_macs)
    name = safe_name(spec.name)     # a downloaded spec never chooses where files go
    out_dir = out_dir or os.path.join("out", name)
    check_folder(out_dir)           # refuse before the work, not after it
    rep = report(g, counts)
    if batch is not None:   # activation memory and peaks in report.json/md
        from .analysis.memory import memory, report_section
        rep["memory"] = report_section(memory(g, batch))
    if spec.overrides:
        rep["overrides"] = spec.override_dict()

    from .backends.torch import lower
    model = lower(g, seed=0)
    n = sum(p.numel() for p in model.parameters())
    if n != rep["total"]["params"]:
        raise AssertionError(f"compiled module has {n} parameters, the analysis says "
                             f"{rep['total']['params']}")

    files = ["report.json", "report.md"]
    with staged_dir(out_dir) as stage:
        with open(os.path.join(stage, "report.json"), "w") as f:
            json.dump(rep, f, indent=2)
            f.write("\n")
        with open(os.path.join(stage, "report.md"), "w") as f:
            f.write(report_markdown(rep))
        for writer in extra_outputs:
            files += writer(spec, g, model, stage)
    return {**rep, "_output_dir": out_dir, "_files": files, "_model": model}


def diagram_output(spec, g: Graph, model, stage_dir: str) -> list[str]:
    """The block-level diagram `<name>.svg` (or `<name>.dot` without `dot`), into the staging
    dir, through the one diagram writer (backends.graphviz.write_diagram)."""
    from .api import note_overrides
    from .backends.graphviz import DotNotFound, dot_missing_message, dot_source, write_diagram
    source = note_overrides(dot_source(g, spec, "block", None), spec)
    name = safe_name(spec.name, quiet=True)    # build() said so already
    try:
        return [os.path.basename(write_diagram(source, name, "block", "svg",
                                               os.path.join(stage_dir, f"{name}.svg")))]
    except DotNotFound:
        print(dot_missing_message(f"{name}.dot", "svg", f"{name}.svg",
                                  written=f"{name}.dot in the output directory "
                                          f"(run dot there)"),
              file=sys.stderr)
        return [f"{name}.dot"]


def onnx_output(spec, g: Graph, model, stage_dir: str) -> list[str]:
    """`secompile build --onnx`: `<name>.onnx` with the build's module weights, into the staging
    dir."""
    from .api import record_overrides
    from .backends.onnx import lower, save
    from .backends.onnx.weights import load_state
    m = lower(g, load_state(model, g))
    record_overrides(m, spec)
    return save(m, os.path.join(stage_dir, f"{safe_name(spec.name, quiet=True)}.onnx"))
