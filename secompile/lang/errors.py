"""Spec errors: every problem carries file, line, column and spec path.

A `SpecError` holds all problems found, so a user fixes a spec in one round trip.
The CLI prints them one per line as `FILE:LINE:COL: spec.path: message` and exits 2.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

Path = tuple  # spec path: keys (str) and list indices (int)


@dataclass(frozen=True, order=True)
class Mark:
    file: str
    line: int  # 1-based
    col: int  # 1-based


def format_path(path: Sequence) -> str:
    """('stages', 2, 'cardinality') -> 'stages[2].cardinality'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


@dataclass(frozen=True)
class Problem:
    mark: Mark
    path: str
    message: str

    def __str__(self) -> str:
        return f"{_oneline(self.mark.file)}:{self.mark.line}:{self.mark.col}: " \
               f"{_oneline(self.path)}: {_oneline(self.message)}"


# Messages echo user text (names, keys, values): its line breaks and control characters are
# escaped so that every problem stays one FILE:LINE:COL line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _oneline(text: str) -> str:
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class SpecError(Exception):
    """One or more problems with a spec (user error: exit code 2).

    `partial`: after schema problems, the spec's parts that validated (a lang.document.Spec with
    `partial` set), for the checks of the layers above (secompile/zoo/loader.py); else None."""

    def __init__(self, problems: Iterable[Problem], *, partial=None):
        self.problems = sorted(set(problems), key=lambda p: (p.mark, p.path, p.message))
        self.partial = partial
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def messages(self) -> list[str]:
        return [str(p) for p in self.problems]


class LimitError(SpecError):
    """A spec over a resource limit (size, depth, parameter or MAC budget)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(set(map(str, choices))), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
