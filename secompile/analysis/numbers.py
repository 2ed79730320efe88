"""Counts as people read them: 4_232_994_816 -> '4.23G'. The one SI formatter (diagrams, sweep
tables and plot axes use it), below every layer that prints a count."""
from __future__ import annotations

SI = ((1e9, "G"), (1e6, "M"), (1e3, "k"))


def si_unit(n) -> tuple[float, str]:
    """The divisor and prefix for `n`: (1e9, 'G'), ..., (1.0, '') below a thousand."""
    return next(((d, u) for d, u in SI if abs(n) >= d), (1.0, ""))


def si(n, digits: int = 3, trim: bool = True) -> str:
    """`digits` significant digits and an SI prefix: 4_232_994_816 -> '4.23G' (trim drops
    trailing zeros: 1_000_000 -> '1M', else '1.00M'); counts under a thousand stay exact."""
    div, unit = si_unit(n)
    if not unit:
        return str(int(n)) if trim else str(n)
    v = n / div
    text = f"{v:.{max(0, digits - len(str(int(abs(v)))))}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + unit


__all__ = ["si", "si_unit", "SI"]
