"""What a sweep's rows say beyond the counts: the --where filter, the Pareto front, and the
measured accuracy joined from examples/train.py's metrics.json files."""
from __future__ import annotations

import glob as _glob
import json
import re

from ..analysis.memory import parse_bytes
from ..lang import expr
from ..lang.errors import Mark, Problem, SpecError

# names a --where expression can use (None where a row has no value, e.g. acc without --metrics)
WHERE_NAMES = ("params", "macs", "conv_linear_macs", "nodes", "se_blocks", "se_params", "se_macs",
               "se_params_rel", "se_macs_rel", "base_params", "base_macs", "acc", "val_loss",
               "epochs", "index", "train_mem", "infer_mem", "act_mem")
MEMORY_NAMES = ("train_mem", "infer_mem", "act_mem")   # bytes: engine.MEMORY_FIELDS
# '24GiB', '1.5 GB' in a --where: the bytes they mean (the expression language has no units)
_SIZE = re.compile(r"\b(\d+(?:\.\d+)?)\s*([KMGT]i?B)\b", re.IGNORECASE)


def reads_memory(where: str | None) -> bool:
    """Whether a --where expression uses a memory metric (the sweep then estimates memory)."""
    return bool(where) and any(re.search(rf"\b{n}\b", where) for n in MEMORY_NAMES)


def compile_where(where: str | None):
    """--where TEXT -> predicate(row). The spec expression language; names: WHERE_NAMES."""
    if where is None:
        return None
    if not isinstance(where, str) or not where.strip():
        raise SpecError([Problem(Mark("--where", 1, 1), "<where>", "empty expression")])
    text = _SIZE.sub(lambda m: str(parse_bytes(m.group(0))), where.replace("$", ""))
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


def as_dataframe(rows: list[dict]):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("as_dataframe needs pandas (pip install pandas); the rows "
                          "are plain dicts") from None
    return pd.DataFrame(rows)


__all__ = ["WHERE_NAMES", "MEMORY_NAMES", "reads_memory", "compile_where", "mark_pareto",
           "read_metrics", "join_metrics",
           "as_dataframe"]
