"""`--plot`: parameters against multiply-adds, the Pareto front marked (matplotlib, imported
only when a plot is asked for; svg/png/pdf by the file's extension; deterministic SVG)."""
from __future__ import annotations

import os

from ..lang.errors import Mark, Problem, SpecError
from ..lang.overrides import format_value


def _unit(values) -> tuple[float, str]:
    from ..analysis.numbers import si_unit
    return si_unit(max((abs(v) for v in values), default=0))


def plot(rows: list[dict], path: str, title: str | None = None) -> str:
    """params vs MACs, each point named by its values, the Pareto front marked and labelled;
    coloured by val top-1 where --metrics gave one (svg/png/pdf by the file's extension)."""
    try:
        import matplotlib
    except ImportError:
        raise SpecError([Problem(Mark("--plot", 1, 1), "<plot>",
                                 "plotting needs matplotlib (pip install matplotlib, or pip "
                                 "install 'secompile[plot]')")]) from None
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    from ..outputs import atomic_write
    plt.rcParams["svg.hashsalt"] = "secompile"      # deterministic SVG ids
    ok = [r for r in rows if r["ok"]]
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    (pd, pu), (md, mu) = _unit([r["params"] for r in ok]), _unit([r["macs"] for r in ok])

    def xy(r):
        return r["params"] / pd, r["macs"] / md

    def short(r):   # the values only: the keys are in the title
        return ", ".join(format_value(r["overrides"][k]) for k in keys if k in r["overrides"])

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    acc = [r.get("acc") for r in ok]
    xs, ys = [xy(r)[0] for r in ok], [xy(r)[1] for r in ok]
    if any(a is not None for a in acc):
        sc = ax.scatter(xs, ys,
                        c=[100 * a if a is not None else float("nan") for a in acc], cmap="viridis",
                        s=40, zorder=2, plotnonfinite=True, label="variants")
        fig.colorbar(sc, ax=ax, label="val top-1 (%)")
    else:
        ax.scatter(xs, ys, s=32, color="#7a8ca3", zorder=2, label="variants")
    front = sorted((r for r in ok if r.get("pareto")), key=lambda r: (r["params"], r["macs"]))
    if len(ok) <= 16:     # few points: name them all; the front's names are drawn in colour
        for r in ok:
            if not r.get("pareto"):
                ax.annotate(short(r), xy(r), textcoords="offset points", xytext=(7, -3), fontsize=7,
                            color="#555555")
    if front:
        ax.plot([xy(r)[0] for r in front], [xy(r)[1] for r in front], "-o", color="#d9480f",
                mfc="none", ms=11,
                lw=1.2, zorder=3, label="Pareto front")
        for i, r in enumerate(front):
            text = short(r) + (f" ({100 * r['acc']:.1f}%)" if r.get("acc") is not None else "")
            ax.annotate(text, xy(r), textcoords="offset points",
                        xytext=(8, 8 if i % 2 == 0 else -14),
                        fontsize=7.5, color="#d9480f", fontweight="bold")
    ax.margins(x=0.25, y=0.15)
    ax.set_xlabel(f"parameters ({pu})" if pu else "parameters")
    ax.set_ylabel(f"multiply-adds ({mu})" if mu else "multiply-adds")
    name = rows[0]["spec"] if rows else "sweep"
    ax.set_title(title or f"{name}: {', '.join(keys)}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "svg"
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())


__all__ = ["plot"]
