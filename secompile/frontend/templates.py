"""Template instantiation: a block template + the parameters a stage (or `block:` layer, or SE
rule) gives it -> the template's body expanded in an environment of bound parameters.

The environment, in order: `in_channels`, the per-block names of the enclosing stage-level block
(`block_index`, `stage_index`, `stage_blocks`, `net_block_index`, `net_blocks`, `block_in`), the
parameters (a given value, else the default; a default may be an expression over earlier
parameters and the names before them), then the template's `vars:` (expressions evaluated in
order). A given parameter is checked against the template's declaration (unknown name, wrong
type, missing required one); its blame location follows it into the body, so a bad value
computed from a stage parameter is reported at that parameter.
"""
from __future__ import annotations

import os

from ..ir import ops
from ..ir.graph import Composite
from ..lang import expr
from ..lang.document import SHIPPED_SPECS, Template
from ..lang.document import _load_include as load_include
from ..lang.errors import SpecError, did_you_mean
from .binding import Abort, Ctx, Param
from .layers import COMPOSITES
from .recording import record_instance

# Template instances and composites (residual, parallel, ...) inside one another. Each level
# costs ~8 Python frames; past ~120 levels the expansion would die of RecursionError.
MAX_NESTING = 32
BODIES = ("layers", "residual", "parallel", "gate")
# An attention module's body (docs/spec-language.md): `gate` (x * f), `select` (split attention's
# weighted sum of the splits of x) and/or `add` (+ g), f and g read x or the shared `context`.
ATTENTION = ("gate", "select", "add")
SHIPPED = os.path.join(SHIPPED_SPECS, "blocks", "attention.yaml")   # installed with the package


def shipped_templates() -> dict:
    """name -> Template of secompile/specs/blocks/attention.yaml ({} where it is not there): the
    attention modules every spec can name without including the file."""
    path = os.path.normpath(SHIPPED)
    if not os.path.isfile(path):
        return {}
    data, smap, problems = load_include(path)
    if problems:
        raise SpecError(problems)
    if id(data) not in _SHIPPED:   # load_include caches the file while it is unchanged
        _SHIPPED.clear()
        _SHIPPED[id(data)] = {name: Template(name, dict(body.get("params") or {}), body, smap,
                                             ("blocks", name))
                              for name, body in (data.get("blocks") or {}).items()}
    return _SHIPPED[id(data)]


_SHIPPED: dict = {}


class Templates:
    """Mixed into the Expander (needs `graph`, `problem`, `value`, `items`, `block_env`)."""

    def shipped(self) -> dict:
        """shipped_templates(), read once per expansion (it checks the file each time)."""
        found = self._shipped
        if found is None:
            found = self._shipped = shipped_templates()
        return found

    def template(self, name) -> Template | None:
        """A template by name: the spec's own (defined or included), else a shipped attention
        module (specs/blocks/attention.yaml)."""
        if not isinstance(name, str):
            return None
        found = self.spec.templates.get(name)
        return found if found is not None else self.shipped().get(name)

    def template_names(self) -> list[str]:
        own = self.spec.templates
        return list(own) + [n for n in self.shipped() if n not in own]

    def instance(self, ctx: Ctx, tmpl: Template, given: dict, path, scope, x, where,
                 stage=None, paths=None) -> str:
        return self.instantiate(ctx, tmpl, given, path, scope, x, where, stage, paths).output

    def instantiate(self, ctx: Ctx, tmpl: Template, given: dict, path, scope, x, where,
                    stage=None, paths=None) -> Composite:
        self.check_depth(ctx, path)
        env = self.bind(ctx, tmpl, given, path, x, stage is not None, where, paths)
        mark = self.graph.node_count()
        inner = Ctx(tmpl.smap, env, where, ctx.depth + 1)
        body, bpath = tmpl.body, tmpl.path
        kinds = [k for k in BODIES if k in body and k not in ATTENTION]
        if any(k in body for k in ATTENTION):
            kinds.append("gate")
        if len(kinds) != 1:
            self.problem(inner, bpath, f"a block template has exactly one of {', '.join(BODIES)}")
            raise Abort
        kind = kinds[0]
        comp = self._body(inner, tmpl, kind, scope, x, mark)
        self.bound = env   # after the body: an outer instance overwrites its inner ones
        comp.template = tmpl.name
        comp.mark, comp.spec_path = ctx.smap.mark(path), where
        if stage is not None:
            comp.stage, comp.index, comp.name = stage
            self.graph.blocks[scope] = comp
        if comp.kind not in ("layers", "gate"):
            self.graph.composites[scope] = comp
        record_instance(self.graph, tmpl, tmpl is self.shipped().get(tmpl.name), scope, x,
                        comp.output, env, mark, stage is not None)
        return comp

    def _body(self, inner: Ctx, tmpl: Template, kind: str, scope: str, x: str,
              mark: int) -> Composite:
        """The template's body at `scope`: the nodes of one built before with the same values
        and input shape where there is one (frontend/replay.py), else built (and kept)."""
        key = self.replays.key(tmpl, inner.env, self.graph.shape(x))
        kept = self.replays.get(key) if key is not None else None
        comp = self.replay(kept, scope, x) if kept is not None else None
        if comp is not None:
            return comp
        problems = len(self.problems)
        body, bpath = tmpl.body, tmpl.path
        if kind == "layers":
            out = self.items(inner, body["layers"], bpath + ("layers",), scope, x)
            comp = Composite(scope, "layers", x, out)
        elif kind == "gate":
            comp = self.attention(inner, body, bpath, scope, x)
        else:
            comp = COMPOSITES[kind](self, inner, body[kind], bpath + (kind,), scope, x)
        if key is not None and kept is None and len(self.problems) == problems:
            self.replays.keep(key, self.graph, comp, self.graph.nodes_since(mark))
        return comp

    def min_nodes(self, items, cap: int, _open=None) -> int:
        """A lower bound of the IR nodes a layer list builds, counted without building it (stops
        past `cap`): every unconditional layer builds a node, a `block:` layer with a literal
        template name at least that template's bound. Templates of templates multiply, so a
        3 KB spec can ask for 10**7 nodes: expand refuses it before building any (fuzz-154)."""
        _open = {} if _open is None else _open   # template name -> its bound (None: open)
        total = 0
        for item in items if isinstance(items, list) else ():
            if total > cap:
                break
            if isinstance(item, str):
                total += 1
                continue
            if not isinstance(item, dict) or "when" in item:
                continue
            kinds = [k for k in item if k != "name"]
            attrs = item[kinds[0]] if len(kinds) == 1 else None
            if kinds == ["block"] and isinstance(attrs, dict):
                total += self._template_min(attrs.get("template"), cap, _open)
            elif len(kinds) == 1 and kinds[0] in COMPOSITES and isinstance(attrs, dict):
                branches = attrs.get("branches")
                lists = [attrs.get(k) for k in ("branch", "post", "layers")] + list(
                    branches.values() if isinstance(branches, dict) else
                    branches if isinstance(branches, list) else ())
                total += sum(self.min_nodes(v, cap, _open) for v in lists)
            elif kinds == ["conv"] and isinstance(attrs, dict):
                # conv + bn + act unless literally switched off (an expression may switch them off)
                total += 1 + (attrs.get("norm", "bn") == "bn") + (attrs.get("act", "relu")
                                                                   in ops.ACTIVATIONS)
            elif len(kinds) == 1:
                total += 1
        return min(total, cap + 1)

    def _template_min(self, name, cap: int, _open: dict) -> int:
        tmpl = self.template(name)
        if tmpl is None or name in _open:   # unknown, or a cycle (refused where it nests)
            return _open.get(name) or 0
        _open[name] = None
        body = tmpl.body
        n = sum(self.min_nodes(body.get(k), cap, _open) for k in ("layers", "gate"))
        for kind in COMPOSITES:
            if isinstance(body.get(kind), dict):
                n += self.min_nodes([{kind: body[kind]}], cap, _open)
        _open[name] = n = min(n + ("gate" in body), cap + 1)
        return n

    def deeper(self, ctx: Ctx, path) -> Ctx:
        """The context one nesting level down; a located problem past MAX_NESTING levels."""
        self.check_depth(ctx, path)
        return ctx.down()

    def check_depth(self, ctx: Ctx, path) -> None:
        """A located problem (Abort) where going one level below `ctx` passes MAX_NESTING."""
        if ctx.depth >= MAX_NESTING:
            self.problem(ctx, path, f"template nesting deeper than {MAX_NESTING} levels "
                                    "(a template that instantiates itself?)")
            raise Abort

    def attention(self, ctx: Ctx, body: dict, path, scope: str, x: str) -> Composite:
        """c = context(x) (x without one); out = x * f(c) (`gate`, node `<scope>.scale`, f
        broadcast over the axes it reduced) or split_select(x, f(c)) (`select`, `<scope>.select`),
        then out + g(c) (`add`, `<scope>.add`, broadcast: GC's fuse_add). Layers of the three
        lists share the scope, so their names differ."""
        for key, node in (("context", None), ("gate", "scale"), ("select", "select"),
                          ("add", "add")):   # a layer named like a node the body adds
            items = body.get(key)
            items = items.get("layers") if key == "select" and isinstance(items, dict) else items
            for i, item in enumerate(items if isinstance(items, list) else ()):
                name = item.get("name") if isinstance(item, dict) else None
                if name in ("scale", "select", "add") and (node == name or key == "context"):
                    where = path + ((key, "layers") if key == "select" else (key,))
                    self.problem(ctx, where + (i, "name"), f"an attention body's layer cannot "
                                 f"be named '{name}': {scope}.{name} is the body's result; "
                                 "rename the layer")
                    raise Abort
        if "gate" in body and "select" in body:
            self.problem(ctx, path + ("select",), "give either gate or select, not both", key=True)
            raise Abort
        c = self.items(ctx, body["context"], path + ("context",), scope, x) \
            if "context" in body else x
        out = x
        f = self.items(ctx, body["gate"], path + ("gate",), scope, c) if "gate" in body else c
        if f != c:   # a list whose layers are all switched off (`when: false`) is no gate
            out = self.node(ctx, path + ("gate",), f"{scope}.scale", "mul", {}, [x, f])
        elif "select" in body:
            sel, spath = body["select"], path + ("select",)
            parts, blame = self.value(ctx, sel.get("parts", 2), spath + ("parts",), int)
            groups = self.resolve(ctx, sel.get("groups", 1), spath + ("groups",), int)
            self.positive(ctx, spath, {"parts": parts, "groups": groups}, ("parts", "groups"))
            f = self.items(ctx, sel["layers"], spath + ("layers",), scope, c)
            out = self.node(ctx, spath, f"{scope}.select", "split_select",
                            {"parts": parts, "groups": groups}, [x, f], blame=blame)
        g = self.items(ctx, body["add"], path + ("add",), scope, c) if "add" in body else c
        if g != c:
            out = self.node(ctx, path + ("add",), f"{scope}.add", "add", {"scales": (1.0, 1.0)},
                            [out, g])
        return Composite(scope, "layers", x, out)

    def bind(self, ctx: Ctx, tmpl: Template, given: dict, path, x, in_stage: bool,
             where: str = "", paths: dict | None = None) -> dict:
        """The template's environment: the network parameters, in_channels, per-block names,
        parameters, vars. `paths`: where a given parameter is written when not at path + (k,)
        (a stage's per-block settings)."""
        paths = paths or {}
        env = dict(self.net_params())
        env["in_channels"] = Param(self.graph.shape(x)[0], None, ())
        env.update({k: Param(v, None, ()) for k, v in self.block_env.items()})
        ok = True
        for k in given:
            if k not in tmpl.params:
                known = list(tmpl.params) + (["repeat", "name", "blocks"] if in_stage else [])
                self.problem(ctx, paths.get(k, tuple(path) + (k,)),
                             f"unknown parameter '{k}' of block template "
                             f"'{tmpl.name}'{did_you_mean(k, known)}", key=True)
                ok = False
        own = Ctx(tmpl.smap, env, where, ctx.depth)
        for k, default in tmpl.params.items():
            if k not in given:
                if k in tmpl.required_names:
                    self.problem(ctx, path, f"block template '{tmpl.name}' needs parameter '{k}'")
                    ok = False
                elif expr.is_expr(default):   # derived: an expression over what is bound so far
                    try:
                        val, blame = self.value(own, default, tmpl.path + ("params", k))
                    except Abort:
                        ok = False
                        continue
                    env[k] = Param(val, blame.smap, blame.path)
                else:
                    env[k] = Param(default, tmpl.smap, tmpl.path + ("params", k))
                continue
            ok = self._bind_given(ctx, tmpl, k, given[k], paths.get(k, tuple(path) + (k,)),
                                  env) and ok
        if not ok:
            raise Abort
        vars_ = tmpl.body.get("vars")
        for k, raw in (vars_.items() if isinstance(vars_, dict) else ()):
            val, blame = self.value(own, raw, tmpl.path + ("vars", k))
            env[k] = Param(val, blame.smap, blame.path)
        return env

    def _bind_given(self, ctx, tmpl, k, raw, kpath, env) -> bool:
        try:
            val = self.resolve(ctx, raw, kpath)
        except Abort:
            return False
        default = tmpl.params[k]
        want = Template.REQUIRED_TYPES.get(default) if k in tmpl.required_names else \
            None if expr.is_expr(default) else type(default)
        if want is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if want is int and isinstance(val, float) and val.is_integer():
            val = int(val)
        wrong = want is not None and (not isinstance(val, want)
                                      or (want is int and isinstance(val, bool)))
        if wrong:
            typed = want is str and k not in tmpl.required_names
            hint = did_you_mean(default, Template.REQUIRED_TYPES) if typed else ""
            if hint:   # `params: {out: integer}` declares a string default, not a type
                hint = f"; the template's default {default!r} is a string{hint}"
            self.problem(ctx, kpath, f"parameter '{k}' of '{tmpl.name}' expects "
                                                  f"{want.__name__}, got {val!r}{hint}")
            return False
        env[k] = Param(val, ctx.smap, kpath)
        used = expr.names(raw) if expr.is_expr(raw) else ()
        if len(used) == 1 and getattr(ctx.env.get(next(iter(used))), "smap", None) is not None:
            env[k] = Param(val, ctx.env[next(iter(used))].smap, ctx.env[next(iter(used))].path)
        return True
