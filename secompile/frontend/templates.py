"""Template instantiation: a block template + the parameters a stage (or `block:` layer) gives it
-> the template's body expanded in an environment of bound parameters.

A given parameter is checked against the template's declaration (unknown name, wrong type,
missing required one); its blame location follows it into the body, so a bad value computed
from a stage parameter is reported at that parameter.
"""
from __future__ import annotations

from ..ir.graph import Composite
from ..spec import expr
from ..spec.document import Template
from ..spec.errors import did_you_mean
from .binding import Abort, Ctx, Param
from .layers import COMPOSITES

MAX_NESTING = 32        # template instances inside template instances


class Templates:
    """Mixed into the Expander (needs `graph`, `problem`, `value`, `items`)."""

    def instance(self, ctx: Ctx, tmpl: Template, given: dict, path, scope, x, where, stage=None) -> str:
        if ctx.depth >= MAX_NESTING:
            self.problem(ctx, path, f"block templates nested deeper than {MAX_NESTING} (recursive template?)")
            raise Abort
        env = self.bind(ctx, tmpl, given, path, x, stage is not None)
        inner = Ctx(tmpl.smap, env, where, ctx.depth + 1)
        body, bpath = tmpl.body, tmpl.path
        kinds = [k for k in ("layers", "residual", "parallel") if k in body]
        if len(kinds) != 1:
            self.problem(inner, bpath, "a block template has exactly one of layers, residual, parallel")
            raise Abort
        kind = kinds[0]
        if kind == "layers":
            out = self.items(inner, body["layers"], bpath + ("layers",), scope, x)
            comp = Composite(scope, "layers", x, out)
        else:
            comp = COMPOSITES[kind](self, inner, body[kind], bpath + (kind,), scope, x)
        comp.template = tmpl.name
        comp.mark, comp.spec_path = ctx.smap.mark(path), where
        if stage is not None:
            comp.stage, comp.index, comp.name = stage
            self.graph.blocks[scope] = comp
        if comp.kind != "layers":
            self.graph.composites[scope] = comp
        return comp.output

    def bind(self, ctx: Ctx, tmpl: Template, given: dict, path, x, in_stage: bool) -> dict:
        """The template's environment: in_channels, defaults, then the given values (checked)."""
        env = {"in_channels": Param(self.graph.shape(x)[0], None, ())}
        for k, default in tmpl.params.items():
            if k not in tmpl.required():
                env[k] = Param(default, tmpl.smap, tmpl.path + ("params", k))
        ok = True
        for k, raw in given.items():
            if k not in tmpl.params:
                known = list(tmpl.params) + (["repeat", "name"] if in_stage else [])
                self.problem(ctx, tuple(path) + (k,), f"unknown parameter '{k}' of block template "
                                                      f"'{tmpl.name}'{did_you_mean(k, known)}", key=True)
                ok = False
                continue
            try:
                val, _ = self.value(ctx, raw, tuple(path) + (k,))
            except Abort:
                ok = False
                continue
            want = Template.REQUIRED_TYPES.get(tmpl.params[k]) if k in tmpl.required() else type(tmpl.params[k])
            if want is float and isinstance(val, int) and not isinstance(val, bool):
                val = float(val)
            if want is int and isinstance(val, float) and val.is_integer():
                val = int(val)
            if want is not None and (not isinstance(val, want) or (want is int and isinstance(val, bool))):
                default = tmpl.params[k]
                hint = did_you_mean(default, Template.REQUIRED_TYPES) if want is str and k not in tmpl.required() else ""
                if hint:   # `params: {out: integer}` declares a string default, not a type
                    hint = f"; the template's default {default!r} is a string{hint}"
                self.problem(ctx, tuple(path) + (k,), f"parameter '{k}' of '{tmpl.name}' expects "
                                                      f"{want.__name__}, got {val!r}{hint}")
                ok = False
                continue
            env[k] = Param(val, ctx.smap, tuple(path) + (k,))
            used = expr.names(raw) if expr.is_expr(raw) else ()
            if len(used) == 1 and getattr(ctx.env.get(next(iter(used))), "smap", None) is not None:
                env[k] = Param(val, ctx.env[next(iter(used))].smap, ctx.env[next(iter(used))].path)
        for k in tmpl.required():
            if k not in given:
                self.problem(ctx, path, f"block template '{tmpl.name}' needs parameter '{k}'")
                ok = False
        if not ok:
            raise Abort
        return env
