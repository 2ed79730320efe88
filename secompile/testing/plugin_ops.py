"""Generated layers of plug-in ops (`specs(ops=[...])`): an op a program registered with
`secompile.register_op` drawn like a built-in layer, its attributes from their declarations.

Each attribute is left out (its default) or drawn: from its `choices`, or for numbers between
its bounds (an unbounded side: around the default), or from a strategy the caller gives
(`specs(ops={"coord_attn": {"reduction": st.sampled_from([2, 4])}})`). The op's own shape rule
says where it fits: a draw whose input it refuses, or whose output would change what the
generator must keep (the spatial size in a `shaped` list, a vector in a `vector` one), is
dropped for another layer.
"""
from __future__ import annotations

from hypothesis import strategies as st

from ..ir import ops, plugins


def check_ops(names) -> dict:
    """{name: {attribute: strategy}} from specs()'s `ops` (names, or a mapping to strategies)."""
    table = dict(names) if isinstance(names, dict) else {n: {} for n in names}
    for name, given in table.items():
        plugin = plugins.get(name)
        if plugin is None:
            raise ValueError(f"ops: {name!r} is not a registered plug-in op "
                             f"(registered: {', '.join(plugins.registered()) or 'none'})")
        unknown = set(given) - set(plugin.attrs)
        if unknown:
            raise ValueError(f"ops: {name} has no attributes {sorted(unknown)}")
    return table


def _strategy(decl: plugins.Attr):
    if decl.choices is not None:
        return st.sampled_from(list(decl.choices))
    if decl.type is bool:
        return st.booleans()
    if decl.type in (int, float):
        d = decl.default if decl.default is not ops.REQUIRED else 1
        lo = decl.minimum if decl.minimum is not None else min(0, d) - 4
        hi = decl.maximum if decl.maximum is not None else max(2 * d, lo + 8)
        if decl.type is int:
            return st.integers(int(lo), int(hi))
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    return None   # a free string: only its default, or the caller's strategy


def plugin_layer(draw, table: dict, shape: tuple, mode: str):
    """-> (the layer as written, its output shape), or None where the drawn op does not fit."""
    name = draw(st.sampled_from(sorted(table)))
    plugin = plugins.get(name)
    attrs, full = {}, {}
    for key, decl in plugin.attrs.items():
        strat = table[name].get(key) or _strategy(decl)
        required = decl.default is ops.REQUIRED
        if strat is None or (not required and draw(st.booleans())):
            if required:
                return None
            full[key] = decl.default
            continue
        full[key] = attrs[key] = draw(strat)
    try:
        out = ops.infer(name, full, [tuple(shape)])
    except ops.OpError:
        return None
    if len(out) != len(shape) or (mode != "free" and tuple(out[1:]) != tuple(shape[1:])):
        return None
    item = {plugin.layer: attrs} if attrs or plugin.attrs else plugin.layer
    if not attrs and draw(st.booleans()):
        item = {plugin.layer: None}
    return item, tuple(out)


__all__ = ["check_ops", "plugin_layer"]
