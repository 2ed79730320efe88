"""Zoo names: a shipped network's name works wherever a spec path does.

    model_path("se_resnext50")         # -> .../secompile/specs/se_resnext50.yaml
    resolve("seresnet18")              # -> ZooEntry(file=..., variant=None)
    list_models("se_resnet*")          # the shipped names, sorted

A name is a spec file's stem or the spec's `name:` (se_resnext50.yaml is se_resnext50_32x4d).
Family files (one file, several networks) plug in at `_names_in`: it returns (name, variant)
pairs for one file; a variant name resolves to ZooEntry(file, variant), which the loader
(zoo/loader.py) hands to the spec loader. This module is the one place names are resolved:
the CLI, the API and `secompile.load_spec` all go through `resolve_spec`.
"""
from __future__ import annotations

import fnmatch
import functools
import os
import pathlib
import re
from typing import NamedTuple

from ..lang.errors import Mark, Problem, SpecError, did_you_mean

# The shipped zoo: secompile/specs (a checkout's `specs/` is a symlink to it).
ZOO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "specs")
_NAME_LINE = re.compile(r"^name:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)
_BARE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


class ZooEntry(NamedTuple):
    """What a zoo name stands for: a spec file, and the variant of it (None: the file as is)."""

    file: str
    variant: str | None = None


def spec_stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def spec_files(directory) -> list[str]:
    """The top-level `*.yaml` specs of a directory (block-template folders are not specs)."""
    directory = os.fspath(directory)
    return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                  if f.endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(directory, f)))


def _variants(path: str) -> list[str]:
    """The variant names of a family file (`variants:`), [] for a plain spec."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if "\nvariants:" not in text:
        return []
    import yaml
    try:
        variants = (yaml.safe_load(text) or {}).get("variants")
    except (yaml.YAMLError, AttributeError):
        return []      # the spec loader reports it
    return [str(v) for v in variants] if isinstance(variants, dict) else []


def _names_in(path: str) -> list[tuple[str, str | None]]:
    """The zoo names one file defines, as (name, variant): its stem and its `name:`, and one
    (variant name, variant) pair per variant of a family file."""
    names: list[tuple[str, str | None]] = [(spec_stem(path), None)]
    with open(path, encoding="utf-8") as fh:
        m = _NAME_LINE.search(fh.read())
    if m:
        names.append((m.group(1), None))
    return names + [(v, v) for v in _variants(path)]


def members(directory=None) -> list[tuple[str, ZooEntry]]:
    """The networks of a zoo folder, sorted by name: each spec file as (stem, ZooEntry(file)),
    a family file as its variants (variant, ZooEntry(file, variant)) instead."""
    directory = os.fspath(directory or ZOO_DIR)
    out = []
    for f in spec_files(directory) if os.path.isdir(directory) else []:
        variants = _variants(f)
        out += [(v, ZooEntry(f, v)) for v in variants] or [(spec_stem(f), ZooEntry(f))]
    return sorted(out)


@functools.lru_cache(maxsize=4)
def _zoo_index(directory: str) -> dict[str, ZooEntry]:
    """{name: ZooEntry} for every spec of the zoo. A file stem wins over another spec's
    `name:` (and variants)."""
    files = spec_files(directory) if os.path.isdir(directory) else []
    index = {spec_stem(f): ZooEntry(f) for f in files}
    for f in files:
        for name, variant in _names_in(f):
            index.setdefault(name, ZooEntry(f, variant))
    return index


def list_models(pattern: str | None = None) -> list[str]:
    """The shipped zoo's network names (file stems; a family file's variants), sorted;
    `pattern` is a glob ('se_resnet*')."""
    return [n for n, _ in members(ZOO_DIR) if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def lookup(name: str) -> ZooEntry | None:
    """The shipped spec (file, variant) of a zoo name, or None."""
    if name and os.path.basename(name) == name and name not in (".", ".."):
        # a file stem wins in the index: found without reading every family file (startup)
        for ext in (".yml", ".yaml"):    # the index's order: x.yml is listed after x.yaml
            if os.path.isfile(path := os.path.join(ZOO_DIR, name + ext)):
                return ZooEntry(path)
    return _zoo_index(ZOO_DIR).get(name)


def model_path(name: str) -> str | None:
    """The shipped spec file of a zoo name (file stem or the spec's `name:`), or None."""
    entry = lookup(name)
    return entry.file if entry is not None else None


def resolve(source):
    """A spec source with a zoo name replaced by its ZooEntry. A path that exists wins over a
    name; a bare word (no folder, no .yaml) that is neither gets did-you-mean over the zoo
    (SpecError) where a zoo name is close, and is read as a (missing) path otherwise. Anything
    else (YAML text, dicts, Specs, other paths) is returned unchanged."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    text = os.fspath(source)
    if "\n" in text:
        return source
    if os.path.isfile(text):
        return pathlib.Path(text)        # a file, whatever its name ends with
    if os.path.exists(text):
        return source
    found = lookup(text)
    if found is not None:
        return found
    if _BARE_NAME.fullmatch(text) and not text.endswith((".yaml", ".yml")):
        hint = did_you_mean(text, list(_zoo_index(ZOO_DIR)))
        if hint:
            message = f"no such file, and no zoo model of that name{hint}; " \
                      "`secompile zoo` lists the zoo"
            raise SpecError([Problem(Mark(text, 1, 1), "<file>", message)])
        return pathlib.Path(text)        # a path after all: "cannot read: No such file ..."
    return source


def resolve_spec(source):
    """resolve(), with a zoo name as its file path (what a file-taking caller wants); a variant
    stays a ZooEntry, which only the loader understands."""
    found = resolve(source)
    if isinstance(found, ZooEntry) and found.variant is None:
        return found.file
    return found


__all__ = ["ZOO_DIR", "ZooEntry", "spec_stem", "spec_files", "members", "list_models", "lookup",
           "model_path", "resolve", "resolve_spec"]
