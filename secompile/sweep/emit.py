"""What a sweep writes: one spec file per valid variant (`--emit`, into a folder staged and
swapped in whole, secompile/outputs.py) and the rows as CSV (`--csv`)."""
from __future__ import annotations

import csv
import io
import os

from ..lang.document import Spec
from ..lang.overrides import format_value
from ..outputs import atomic_write


def _oneline(text) -> str:
    """Text for a YAML comment line: a line break in a name or an override cannot start a key."""
    return " ".join(str(text).splitlines())


def write_variant(spec: Spec, name: str, folder: str, final: str | None = None) -> str:
    """One spec file per variant into `folder`: the overridden data, renamed, includes
    re-pointed (relative to `final`, the folder the file ends up in, default `folder`)."""
    import yaml
    data = dict(spec.data)
    data["name"] = name
    if isinstance(data.get("include"), list):
        data["include"] = [os.path.relpath(inc if os.path.isabs(inc)
                                           else os.path.join(spec.base_dir, inc),
                                           os.path.abspath(final or folder))
                           for inc in data["include"]]
    over = "; ".join(o.text for o in spec.overrides)
    data = {"name": name, "description": f"{spec.name} with {over} (secompile sweep)",
            **{k: v for k, v in data.items() if k not in ("name", "description")}}
    text = (f"# written by secompile sweep: {_oneline(spec.name)} ({_oneline(spec.file)}) with\n"
            + "".join(f"#   --set {_oneline(o.text)}\n" for o in spec.overrides)
            + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110))
    path = os.path.join(folder, f"{name}.yaml")
    atomic_write(path, text)
    return path


CSV_FIELDS = ("index", "name", "label", "ok", "macs", "conv_linear_macs", "params",
              "nodes", "se_blocks",
              "base_macs", "base_params", "se_macs", "se_params", "se_macs_rel",
              "se_params_rel", "pareto",
              "acc", "val_loss", "epochs", "runs", "file", "errors")


def override_keys(rows) -> list[str]:
    """The varied keys, in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r["overrides"]))


def write_csv(rows: list[dict], path: str) -> str:
    keys = override_keys(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys + list(CSV_FIELDS))
    for r in rows:
        w.writerow([format_value(r["overrides"][k]) if k in r["overrides"] else "" for k in keys]
                   + ["; ".join(r["errors"]) if f == "errors"
                      else ("" if r.get(f) is None else r.get(f))
                      for f in CSV_FIELDS])
    return atomic_write(path, buf.getvalue())


__all__ = ["write_variant", "write_csv", "override_keys", "CSV_FIELDS"]
