"""The zoo layer, below the API: names of the shipped networks (`names.py`), the one spec loader
that resolves them (`loader.py`), and the published numbers the zoo is compared against
(`reference.py`). The zoo table itself (counting every spec) is `secompile.reports.zoo_table`.
"""
from .loader import load_spec
from .names import (
    ZOO_DIR,
    ZooEntry,
    list_models,
    lookup,
    model_path,
    resolve,
    resolve_spec,
    spec_files,
    spec_stem,
)
from .reference import CAFFE_README_EXTRA_PARAMS, CAFFE_REFERENCE, PAPER_TABLE2

__all__ = ["load_spec", "ZOO_DIR", "ZooEntry", "list_models", "lookup", "model_path", "resolve",
           "resolve_spec", "spec_files", "spec_stem", "PAPER_TABLE2", "CAFFE_REFERENCE",
           "CAFFE_README_EXTRA_PARAMS"]
