"""The issue-22 ops and modules in generated specs (`specs(v3=True)`), each drawn with its model:

- layers: `softmax` (over the channels, or over the positions of a feature map), `layernorm`,
  `layer_scale`, `gelu`, `split_sum` (parts dividing C), `attn_pool` (GC's context: a 1x1 conv
  to one channel and a softmax over positions as its weights; -> (C, 1, 1), where the size may
  change), a residual with `merge: partial_add` (ReXNet: the branch widens, the shortcut adds to
  its first channels), and the attention templates `global_context` and `split_attention` as
  layers;
- SE rules naming `global_context` (fuse_add / fuse_scale, reduction, act), whose parameters
  `module_params` predicts.

Off by default (a flag of its own, as v2), so the derandomised examples of the other properties
stay what they were.
"""
from __future__ import annotations

from .oracle import make_divisible


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layer(g, shape, mode: str, env):
    """-> the arguments of a generator.Built (item, shape[, kind, branch_c, short_c]) for one
    drawn layer that fits `shape` in `mode`."""
    kinds = ["softmax", "layernorm", "layer_scale", "gelu"]
    if len(shape) == 3:
        kinds += ["softmax_positions", "split_sum", "partial_add", "global_context",
                  "split_attention"] + (["attn_pool"] if mode == "free" else [])
    kind = g.pick(kinds)
    c = shape[0]
    if kind == "softmax":
        # written {softmax: {}}: the schema refuses `softmax` bare and {softmax: null}
        return (g.pick([{"softmax": {}}, {"softmax": {"axis": "channels"}}]), shape)
    if kind == "softmax_positions":
        return ({"softmax": {"axis": "positions"}}, shape)
    if kind == "layernorm":
        return (g.pick([{"layernorm": None}, {"layernorm": {"eps": g.pick([1e-6, 1e-5])}}]),
                     shape)
    if kind == "layer_scale":
        return ({"layer_scale": {"init": g.pick([1e-5, 1.0, 0.5])}}, shape)
    if kind == "gelu":
        return (g.pick(["gelu", {"act": "gelu"}]), shape)
    if kind == "split_sum":
        parts = g.pick(_divisors(c))
        return ({"split_sum": {"parts": g.lit(parts, env)}}, (c // parts,) + shape[1:])
    if kind == "attn_pool":
        weights = [{"conv2d": {"out": 1}}, {"softmax": {"axis": "positions"}}]
        return ({"attn_pool": {"weights": weights}}, (c, 1, 1))
    if kind == "partial_add":
        out = g.pick(sorted({c, c + 1, 2 * c, min(g.c.max_width, c + 4)} - {0}))
        branch = [{"conv": {"out": out, "kernel": g.pick([1, 3])}},
                  {"conv": {"out": out, "kernel": 1, "act": "none"}}]
        item = {"residual": {"branch": branch, "merge": "partial_add"}}
        return (item, (out,) + shape[1:], "residual", out, c)
    if kind == "global_context":
        return ({"block": {"template": "global_context", **gc_options(g)}}, shape)
    # split attention: one grouped 3x3 conv over radix x cardinality groups, radix softmax
    options = [(r, k) for r in (1, 2, 4) for k in (1, 2) if c % (r * k) == 0]
    radix, card = g.pick(options)
    out = g.pick([o for o in (card, 2 * card, 4 * card, 8 * card) if o <= max(g.c.max_width, card)])
    given = {"template": "split_attention", "out": g.lit(out, env), "radix": radix}
    if card > 1 or g.flip():
        given["cardinality"] = card
    return ({"block": given}, (out,) + shape[1:])


def gc_options(g) -> dict:
    opts = {}
    fusion = g.pick(["add", "scale", "both"])
    if fusion != "add":
        opts["fuse_scale"] = True
    if fusion == "scale":
        opts["fuse_add"] = False
    if g.flip():
        opts["reduction"] = g.pick([1, 2, 4, 8])
    if g.flip():
        opts["act"] = g.pick(["relu", "gelu", "silu"])
    return opts


def module_options(g, rule: dict, chans: list) -> None:
    """An SE rule inserting global context (any channel count: the width is at least 1)."""
    rule["module"] = "global_context"
    rule.update(gc_options(g))


def module_params(rule: dict, c: int) -> int:
    """global_context on C channels: conv_attn C -> 1 (bias), one conv_mlp (C -> w with bias,
    LayerNorm(w), w -> C with bias) per fusion; w = make_divisible(C / r, 1, round_limit=0)."""
    w = make_divisible(c / rule.get("reduction", 8), 1, round_limit=0.0)
    fusions = int(rule.get("fuse_add", True)) + int(rule.get("fuse_scale", False))
    return (c + 1) + fusions * ((c * w + w) + 2 * w + (w * c + c))


__all__ = ["layer", "module_options", "module_params", "gc_options"]
