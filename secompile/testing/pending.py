"""Compiler bugs reported but not fixed yet, which the generator steers around meanwhile.

Each name is a request (props-N) with a reproducer, a proposed fix and an xfail(strict)
regression test in tests/properties/test_regressions.py. When the fix lands the regression
test passes (so its strict xfail fails): take the name out of PENDING, and out of whatever
checks it here, and `specs()` generates those cases again.

Fixed so far: props-1 (auto shortcut stride), props-2 (two SE blocks on one tensor).
"""
from __future__ import annotations

PENDING: set[str] = {
    "props-3",   # layer names that are nn.Module attributes crash lower(); drawn only with names='all'
}
