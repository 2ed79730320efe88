"""Property tests of the compiler's invariants on generated specs (issue 6); see docs/testing.md.

SECOMPILE_HYPOTHESIS_PROFILE=thorough selects 2,000 examples per property (profiles.py).
"""
import os

import profiles  # noqa: F401  (registers the hypothesis profiles)
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def pytest_report_header(config):
    return f"secompile property tests: hypothesis profile '{profiles.NAME}' " \
           f"({profiles.PROFILE.max_examples} examples per property; set {profiles.ENV})"
