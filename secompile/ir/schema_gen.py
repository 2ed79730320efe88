"""Regenerate the spec schema's op-derived data from the op registry.

    python -m secompile.ir.schema_gen          # rewrite the files
    python -m secompile.ir.schema_gen --check # exit 1 when stale (tests/ir/test_registry.py)

The spec layer sits below the IR and must not import it, so the registry's enums (ops.SCHEMA_ENUMS:
activation kinds, pool modes) reach `spec/schema.py` through a generated `spec/op_enums.json`;
`lang/schema.json` (the schema shipped for editors) is regenerated from the result.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from . import ops

SPEC_DIR = Path(__file__).resolve().parent.parent / "lang"
ENUMS_FILE = SPEC_DIR / "op_enums.json"
SCHEMA_FILE = SPEC_DIR / "schema.json"


def enums_text() -> str:
    note = "by python -m secompile.ir.schema_gen from secompile/ir/ops.py"
    return json.dumps({"_generated": note, **ops.SCHEMA_ENUMS}, indent=2) + "\n"


def schema_text(reload: bool = False) -> str:
    """schema.json as `secompile schema` prints it; `reload` after rewriting op_enums.json."""
    from ..lang import schema
    return json.dumps((importlib.reload(schema) if reload else schema).SCHEMA, indent=2) + "\n"


def stale() -> list[str]:
    """The generated files that disagree with the registry."""
    out = []
    if ENUMS_FILE.read_text() != enums_text():
        out.append(str(ENUMS_FILE))
    elif SCHEMA_FILE.read_text() != schema_text():   # spec.schema read this op_enums.json
        out.append(str(SCHEMA_FILE))
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--check" in argv:
        bad = stale()
        for f in bad:
            print(f"{f} disagrees with secompile/ir/ops.py: "
                  "run python -m secompile.ir.schema_gen", file=sys.stderr)
        return 1 if bad else 0
    ENUMS_FILE.write_text(enums_text())
    SCHEMA_FILE.write_text(schema_text(reload=True))   # the reload reads the new op_enums.json
    print(f"wrote {ENUMS_FILE.name} and {SCHEMA_FILE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
