"""Paths shared by the tests (a module of its own: tests/properties has its own conftest.py,
so `from conftest import ...` would be ambiguous)."""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SHARED = ROOT.parent / "shared"


def all_specs():
    return sorted(p for p in SPECS.glob("*.yaml"))
