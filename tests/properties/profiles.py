"""Hypothesis profiles of the property tests, selected by SECOMPILE_HYPOTHESIS_PROFILE.

    ci        (default) 20 examples per property, derandomised, no example database: the same
              examples on every run, fast enough for every test run.
    thorough  2,000 examples per property, random, failures kept in .hypothesis/ (git-ignored)
              to be replayed first next time.

SECOMPILE_HYPOTHESIS_MAX_EXAMPLES=N overrides the profile's example count (`scaled` properties
take their fraction of N).

The tests apply PROFILE explicitly (`@PROFILE`), so a profile loaded elsewhere in the session
does not change them.
"""
import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

ENV = "SECOMPILE_HYPOTHESIS_PROFILE"
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.large_base_example]

settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("thorough", max_examples=2000, deadline=None, derandomize=False,
                          database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
                          suppress_health_check=_QUIET, print_blob=True)

NAME = os.environ.get(ENV, "ci")
PROFILE = settings.get_profile(NAME)
if os.environ.get("SECOMPILE_HYPOTHESIS_MAX_EXAMPLES"):     # a shorter (or longer) run of a profile
    PROFILE = settings(PROFILE, max_examples=int(os.environ["SECOMPILE_HYPOTHESIS_MAX_EXAMPLES"]))


def scaled(fraction: float) -> settings:
    """PROFILE with a fraction of its examples (for the slowest properties)."""
    return settings(PROFILE, max_examples=max(10, int(PROFILE.max_examples * fraction)))
