"""The model zoo table: every spec of a directory with its analytic cost and SE overhead.

    rows = zoo_table("specs")                  # one dict per spec, counted from the IR (no torch)
    print(reports.zoo_markdown(rows))          # docs/zoo.md is exactly this text

`secompile zoo [DIR] [--json|--markdown]` prints the same table. An SE spec `se_X.yaml` is
paired with the plain spec `X.yaml` of the same directory; its overhead is the relative
increase of multiply-adds and parameters over that plain network.

The comparison with the SE paper (Table 2) and with the authors' Caffe prototxt files is
generated from the rows as well, so the committed docs/zoo.md always shows the counts of
the committed specs; the constants below are the published numbers being compared against.
The prose of docs/zoo.md is templates/zoo.md.in; secompile.reports renders the tables.
"""
from __future__ import annotations

import fnmatch
import functools
import os
import pathlib
import re

from .analysis.counts import report
from .api import prepare
from .lang.errors import Mark, Problem, SpecError, did_you_mean

# The shipped zoo: secompile/specs (a checkout's `specs/` is a symlink to it).
ZOO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs")
_NAME_LINE = re.compile(r"^name:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)

# The SE paper, Table 2: GFLOPs (one multiply-add = one FLOP) at 224 x 224 (299 for
# Inception-ResNet-v2): spec file stem -> (network as the paper names it, G multiply-adds).
PAPER_TABLE2 = {
    "resnet50": ("ResNet-50", 3.86), "se_resnet50": ("SE-ResNet-50", 3.87),
    "resnet101": ("ResNet-101", 7.58), "se_resnet101": ("SE-ResNet-101", 7.60),
    "resnet152": ("ResNet-152", 11.30), "se_resnet152": ("SE-ResNet-152", 11.32),
    "resnext50": ("ResNeXt-50 (32x4d)", 4.24), "se_resnext50": ("SE-ResNeXt-50 (32x4d)", 4.25),
    "resnext101_32x4d": ("ResNeXt-101 (32x4d)", 7.99),
    "se_resnext101_32x4d": ("SE-ResNeXt-101 (32x4d)", 8.00),
    "vgg16_bn": ("VGG-16 (BN)", 15.47), "se_vgg16_bn": ("SE-VGG-16 (BN)", 15.48),
    "bn_inception": ("BN-Inception", 2.03), "se_bn_inception": ("SE-BN-Inception", 2.04),
    "inception_resnet_v2": ("Inception-ResNet-v2", 11.75),
    "se_inception_resnet_v2": ("SE-Inception-ResNet-v2", 11.76),
}

# ../shared/reference/caffe/README.md: the authors' prototxt files counted under Caffe's rules
# (conv + fc multiply-adds; params = conv weights and biases, Scale gamma/beta, fc).
CAFFE_REFERENCE = {
    "se_bn_inception": ("SE-BN-Inception.prototxt", 2_033_239_424, 11_931_622),
    "se_resnet50": ("SE-ResNet-50.prototxt", 3_860_488_192, 28_088_024),
    "se_resnet101": ("SE-ResNet-101.prototxt", 7_574_937_600, 49_326_872),
    "se_resnet152": ("SE-ResNet-152.prototxt", 11_288_993_792, 66_821_848),
    "se_resnext50": ("SE-ResNeXt-50.prototxt", 4_232_994_816, 27_559_896),
    "se_resnext101_32x4d": ("SE-ResNeXt-101.prototxt", 7_974_739_968, 48_955_416),
    "senet154": ("SENet-154.prototxt", 20_688_363_520, 115_088_984),
}
# Parameters a README row counts that the network does not have. None since the README was
# corrected: it once gave SE-BN-Inception a weight per channel of its ten two-input SE `Scale`
# layers (6,624 in all), which own no weights.
CAFFE_README_EXTRA_PARAMS: dict = {}


def spec_stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def spec_files(directory) -> list[str]:
    """The top-level `*.yaml` specs of a directory (block-template folders are not specs)."""
    directory = os.fspath(directory)
    return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                  if f.endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(directory, f)))


# -- names: a zoo name works wherever a spec path does --------------------------------------
@functools.lru_cache(maxsize=4)
def _zoo_index(directory: str) -> dict:
    """{name: file} for every spec of the zoo: its file stem and its `name:` (when they differ,
    e.g. se_resnext50.yaml is se_resnext50_32x4d). A stem wins over another spec's `name:`."""
    files = spec_files(directory) if os.path.isdir(directory) else []
    index = {spec_stem(f): f for f in files}
    for f in files:
        with open(f, encoding="utf-8") as fh:
            m = _NAME_LINE.search(fh.read())
        if m:
            index.setdefault(m.group(1), f)
    return index


@functools.lru_cache(maxsize=4)
def _variant_index(directory: str) -> dict:
    """{variant name: family file} for the family files (specs with `variants:`) of the zoo."""
    import yaml
    index = {}
    for f in spec_files(directory) if os.path.isdir(directory) else []:
        with open(f, encoding="utf-8") as fh:
            text = fh.read()
        if "\nvariants:" not in text:
            continue
        variants = (yaml.safe_load(text) or {}).get("variants")
        for name in variants if isinstance(variants, dict) else ():
            index.setdefault(str(name), f)
    return index


def _names(directory: str) -> list[str]:
    """The models of a zoo folder: each spec's file stem, a family file's variants instead."""
    variants = _variant_index(directory)
    families = set(variants.values())
    return sorted([spec_stem(f) for f in spec_files(directory) if f not in families]
                  + list(variants))


def list_models(pattern: str | None = None) -> list[str]:
    """The shipped zoo's model names (file stems; a family file's variants), sorted; `pattern`
    is a glob ('se_resnet*')."""
    return [n for n in _names(ZOO_DIR) if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def model_path(name: str) -> str | None:
    """The shipped spec file of a zoo name (file stem, the spec's `name:` or a variant of a
    family file), or None."""
    return _zoo_index(ZOO_DIR).get(name) or _variant_index(ZOO_DIR).get(name)


def load_variant(name: str, directory: str = ZOO_DIR):
    """A variant of a family file as a Spec (its params and input size applied), or None."""
    path = _variant_index(os.fspath(directory)).get(name)
    if path is None:
        return None
    from .lang.document import load_spec
    return load_spec(path, variant=name)


_BARE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def resolve_spec(source):
    """A spec source with zoo names replaced by their shipped file. A path that exists wins over
    a name; a bare word (no folder, no .yaml) that is neither gets did-you-mean over the zoo
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
    member = load_variant(text)
    if member is not None:
        return member                    # a family's variant: the Spec
    found = model_path(text)
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


def _family_key(stem: str) -> tuple:
    base = stem[3:] if stem.startswith("se_") else stem
    return (base, stem.startswith("se_"))


def zoo_table(directory=ZOO_DIR) -> list[dict]:
    """One row per spec of `directory`, plain networks before their SE variant.

    Row keys: name, file, input (C, H, W), output, macs, conv_linear_macs, params, se_blocks,
    plain (file of the paired plain spec or None), se_macs_pct, se_params_pct (overhead over
    the plain spec in %, None without one), error (None, or the spec's problems as text).
    """
    files = spec_files(directory)
    variants = _variant_index(os.fspath(directory))
    members = [(path, None) for path in files if path not in variants.values()] + \
        [(path, name) for name, path in variants.items()]
    rows: dict[str, dict] = {}
    for path, variant in members:
        stem = variant or spec_stem(path)
        row = {"name": stem, "file": os.path.basename(path), "input": None,
               "output": None, "macs": None,
               "conv_linear_macs": None, "params": None, "se_blocks": None, "plain": None,
               "se_macs_pct": None, "se_params_pct": None, "error": None}
        try:
            source = path if variant is None else load_variant(variant, directory)
            _, g, counts = prepare(source, max_params=None, max_macs=None)   # nothing allocated
            rep = report(g, counts)
        except SpecError as e:
            row["error"] = "\n".join(e.messages)
        else:
            row.update(name=rep["name"], input=tuple(rep["input"]), output=tuple(rep["output"]),
                       macs=rep["total"]["macs"], conv_linear_macs=rep["total"]["conv_linear_macs"],
                       params=rep["total"]["params"], se_blocks=rep["se"]["blocks"])
        rows[stem] = row
    for stem, row in rows.items():
        plain = rows.get(stem[3:]) if stem.startswith("se_") else None
        if plain is None:
            continue
        row["plain"] = plain["file"]
        if row["error"] is None and plain["error"] is None:
            row["se_macs_pct"] = 100.0 * (row["macs"] - plain["macs"]) / plain["macs"]
            row["se_params_pct"] = 100.0 * (row["params"] - plain["params"]) / plain["params"]
    return [rows[s] for s in sorted(rows, key=_family_key)]


__all__ = ["zoo_table", "list_models", "model_path", "resolve_spec", "ZOO_DIR", "spec_files",
           "spec_stem", "PAPER_TABLE2", "CAFFE_REFERENCE", "CAFFE_README_EXTRA_PARAMS"]
