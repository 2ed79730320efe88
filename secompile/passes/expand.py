"""expand: Spec -> IR graph. Instantiates block templates, repeats and defaults.

Shapes are inferred as nodes are added, so every semantic problem (groups that do not
divide channels, sizes shrinking below 1, unknown templates or parameters) is found
here and reported at the spec location that caused it. Expansion goes on after a
problem where it can, so one run reports them all.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import ops
from ..ir.graph import Composite, Graph, Stage
from ..spec import expr
from ..spec.errors import LimitError, Problem, SpecError, did_you_mean, format_path
from ..spec.loader import SourceMap
from ..spec.document import Spec, Template

MAX_BLOCKS = 20_000     # blocks in one network; refused before any node is built
MAX_NESTING = 32        # template instances inside template instances
MAX_IR_NODES = 100_000  # IR nodes before SE insertion: ~3 s to build (the zoo's largest has ~800)


class _Abort(Exception):
    """Stops expanding one item after its problem has been recorded."""


@dataclass(frozen=True)
class Param:
    value: object
    smap: SourceMap
    path: tuple          # where the value was written (blame location)


@dataclass(frozen=True)
class Ctx:
    smap: SourceMap      # the file the items being expanded come from
    env: dict            # parameter name -> Param
    where: str           # the instance being expanded, for messages ('stages[2].blocks[0]')
    depth: int = 0


class Expander:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.problems: list[Problem] = []
        self.graph = Graph(spec.name, spec.input_shape)

    # -- problems --------------------------------------------------------------------
    def problem(self, ctx: Ctx, path, message: str, key: bool = False) -> None:
        suffix = f" (in {ctx.where})" if ctx.smap is not self.spec.smap and ctx.where else ""
        self.problems.append(ctx.smap.problem(path, message + suffix, key=key))

    # -- values ----------------------------------------------------------------------
    def value(self, ctx: Ctx, raw, path, want=None):
        """Resolve an attribute (literal or $-expression) -> (value, blame Param)."""
        blame = Param(raw, ctx.smap, tuple(path))
        if expr.is_expr(raw):
            try:
                val = expr.evaluate(raw, {k: p.value for k, p in ctx.env.items()})
            except expr.ExprError as e:
                self.problem(ctx, path, str(e))
                raise _Abort from None
            used = [n for n in expr.names(raw) if n in ctx.env] or [
                n for n in ctx.env if n in raw.replace("$", " ").split()]
            if len(used) == 1 and ctx.env[used[0]].smap is not None:
                blame = ctx.env[used[0]]
        else:
            val = raw
        if want is int and (isinstance(val, float) and val.is_integer()):
            val = int(val)
        if want is not None and not (isinstance(val, want) and not (want is int and isinstance(val, bool))):
            self.problem(ctx, path, f"expected {want.__name__}, got {val!r}")
            raise _Abort
        return val, blame

    def pair(self, ctx, raw, path):
        if isinstance(raw, list):
            return tuple(self.value(ctx, r, path + (i,), int)[0] for i, r in enumerate(raw))
        v = self.value(ctx, raw, path, int)[0]
        return (v, v)

    def blame(self, ctx: Ctx, blame: Param, message: str) -> None:
        """Report at the blamed value: a stage parameter in the user's spec, or a template line."""
        where = f" (in {ctx.where})" if ctx.where and blame.smap is not self.spec.smap else ""
        self.problems.append(blame.smap.problem(blame.path, message + where))

    # -- nodes -----------------------------------------------------------------------
    def node(self, ctx, path, ipath, op, attrs, inputs, blame: Param | None = None):
        if len(self.graph) >= MAX_IR_NODES:   # templates of templates multiply: 3 KB can ask for 10**7 nodes
            where = f" (in {ctx.where})" if ctx.where else ""
            raise LimitError([ctx.smap.problem(path, f"the network grows past {MAX_IR_NODES} nodes at {ipath}; "
                                                     f"refusing it{where}")])
        try:
            return self.graph.add(ipath, op, attrs, inputs)
        except ops.OpError as e:
            if blame is not None:
                self.blame(ctx, blame, f"{e} at {ipath}")
            else:
                self.problem(ctx, path, f"{e} at {ipath}")
            raise _Abort from None

    # -- whole network ---------------------------------------------------------------
    def run(self) -> Graph:
        spec, g = self.spec, self.graph
        root = Ctx(spec.smap, {}, "")
        self._guard_size()
        x = g.add("input", "input", {"shape": spec.input_shape}, [])
        if spec.data.get("stem"):
            x = self.unit(root, "stem", ("stem",), spec.data["stem"], x)
        for i, st in enumerate(spec.data["stages"]):
            x = self.stage(root, i, st, x)
        if spec.data.get("head"):
            x = self.unit(root, "head", ("head",), spec.data["head"], x)
        g.output = x
        if self.problems:
            raise SpecError(self.problems)
        return g

    def _guard_size(self):
        total = sum(st.get("repeat", 1) for st in self.spec.data["stages"] if isinstance(st.get("repeat", 1), int))
        if total > MAX_BLOCKS:
            i = max(range(len(self.spec.data["stages"])), key=lambda k: self.spec.data["stages"][k].get("repeat", 1))
            raise LimitError([self.spec.smap.problem(("stages", i, "repeat"),
                                                     f"the stages repeat {total} blocks in all; the limit is "
                                                     f"{MAX_BLOCKS} (refused before building anything)")])

    def unit(self, ctx, scope, path, items, x):
        self.graph.add_unit(scope)
        try:
            return self.items(ctx, items, path, scope, x)
        except _Abort:
            return x

    def stage(self, root: Ctx, i: int, st: dict, x: str) -> str:
        g, path = self.graph, ("stages", i)
        scope = f"stages.{i}"
        name = st.get("name", f"stage{i}")
        stage = Stage(scope, name)
        g.stages.append(stage)
        if "layers" in st:
            extra = [k for k in st if k not in ("layers", "name")]
            if extra:
                self.problem(root, path + (extra[0],), f"a layer stage takes only 'layers' and 'name', "
                                                       f"not '{extra[0]}'", key=True)
            g.add_unit(scope)
            try:
                out = self.items(Ctx(root.smap, {}, format_path(path)), st["layers"], path + ("layers",), scope, x)
            except _Abort:
                return x
            c = Composite(scope, "layers", x, out, stage=i, index=0, name=name,
                          mark=root.smap.mark(path), spec_path=format_path(path))
            g.blocks[scope] = c
            stage.blocks.append(scope)
            return out
        if "block" not in st:
            close = [k for k in st if did_you_mean(k, ("block", "layers"))]
            if close:   # a misspelt 'block' would otherwise read as a template parameter
                self.problem(root, path + (close[0],), f"unknown key '{close[0]}'"
                                                      f"{did_you_mean(close[0], ('block', 'layers'))}", key=True)
            else:
                self.problem(root, path, "a stage needs 'block' (a template name) or 'layers'")
            return x
        tmpl = self.spec.templates.get(st["block"])
        if tmpl is None:
            self.problem(root, path + ("block",), f"unknown block template '{st['block']}'"
                                                  f"{did_you_mean(st['block'], self.spec.templates)}")
            return x
        params = {k: v for k, v in st.items() if k not in ("block", "repeat", "name")}
        for j in range(st.get("repeat", 1)):
            scope_j = f"{scope}.blocks.{j}"
            given = dict(params)
            if j > 0 and "stride" in given:
                given["stride"] = 1   # a stage's stride applies to its first block
            g.add_unit(scope_j)
            before = len(self.problems)
            try:
                x = self.instance(root, tmpl, given, path, scope_j, x, where=f"{format_path(path)}.blocks[{j}]",
                                  stage=(i, j, name))
            except _Abort:
                pass
            stage.blocks.append(scope_j)
            if len(self.problems) > before and j > 0:
                break   # later repeats would repeat the same problems
        return x

    # -- templates -------------------------------------------------------------------
    def instance(self, ctx: Ctx, tmpl: Template, given: dict, path, scope, x, where, stage=None) -> str:
        if ctx.depth >= MAX_NESTING:
            self.problem(ctx, path, f"block templates nested deeper than {MAX_NESTING} (recursive template?)")
            raise _Abort
        env = {"in_channels": Param(self.graph.shape(x)[0], None, ())}
        for k, default in tmpl.params.items():
            if k not in tmpl.required():
                env[k] = Param(default, tmpl.smap, tmpl.path + ("params", k))
        ok = True
        for k, raw in given.items():
            if k not in tmpl.params:
                known = list(tmpl.params) + (["repeat", "name"] if stage is not None else [])
                self.problem(ctx, tuple(path) + (k,), f"unknown parameter '{k}' of block template "
                                                      f"'{tmpl.name}'{did_you_mean(k, known)}", key=True)
                ok = False
                continue
            try:
                val, _ = self.value(ctx, raw, tuple(path) + (k,))
            except _Abort:
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
            raise _Abort
        inner = Ctx(tmpl.smap, env, where, ctx.depth + 1)
        body, bpath = tmpl.body, tmpl.path
        kinds = [k for k in ("layers", "residual", "parallel") if k in body]
        if len(kinds) != 1:
            self.problem(inner, bpath, "a block template has exactly one of layers, residual, parallel")
            raise _Abort
        kind = kinds[0]
        if kind == "layers":
            out = self.items(inner, body["layers"], bpath + ("layers",), scope, x)
            comp = Composite(scope, "layers", x, out)
        elif kind == "residual":
            comp = self.residual(inner, body["residual"], bpath + ("residual",), scope, x)
        else:
            comp = self.parallel(inner, body["parallel"], bpath + ("parallel",), scope, x)
        comp.template = tmpl.name
        comp.mark, comp.spec_path = ctx.smap.mark(path), where
        if stage is not None:
            comp.stage, comp.index, comp.name = stage
            self.graph.blocks[scope] = comp
        if comp.kind != "layers":
            self.graph.composites[scope] = comp
        return comp.output

    # -- layer lists -----------------------------------------------------------------
    def items(self, ctx: Ctx, items: list, path, scope: str, x: str) -> str:
        names = set()
        for i, item in enumerate(items):
            name = item.get("name", str(i)) if isinstance(item, dict) else str(i)
            if name in names:
                self.problem(ctx, tuple(path) + (i, "name"), f"duplicate layer name '{name}' in this list")
                raise _Abort
            names.add(name)
            x = self.item(ctx, item, tuple(path) + (i,), f"{scope}.{name}", x)
        return x

    def item(self, ctx: Ctx, item, path, p: str, x: str) -> str:
        if isinstance(item, str):
            kind, attrs = item, {}
        else:
            kinds = [k for k in item if k != "name"]
            if len(kinds) != 1:
                self.problem(ctx, path, "a layer has exactly one kind, got " + (", ".join(kinds) or "none"))
                raise _Abort
            kind = kinds[0]
            attrs = item[kind] or {}
        apath = tuple(path) + ((kind,) if not isinstance(item, str) else ())
        if kind == "residual":
            comp = self.residual(ctx, attrs, apath, p, x)
            self.graph.composites[p] = comp
            return comp.output
        if kind == "parallel":
            comp = self.parallel(ctx, attrs, apath, p, x)
            self.graph.composites[p] = comp
            return comp.output
        if kind == "block":
            tmpl = self.spec.templates.get(attrs.get("template"))
            if tmpl is None:
                self.problem(ctx, apath + ("template",), f"unknown block template '{attrs.get('template')}'"
                                                         f"{did_you_mean(attrs.get('template'), self.spec.templates)}")
                raise _Abort
            given = {k: v for k, v in attrs.items() if k != "template"}
            return self.instance(ctx, tmpl, given, apath, p, x, where=f"{ctx.where or format_path(path)}")
        return self.op_layer(ctx, kind, attrs, apath, p, x)

    def op_layer(self, ctx, kind, a, path, p, x) -> str:
        v = lambda key, default=None, want=None: (self.value(ctx, a[key], path + (key,), want)[0]  # noqa: E731
                                                  if key in a else default)
        if kind == "conv":
            return self.conv(ctx, a, path, p, x)
        if kind == "bn":
            a = a or {}
            return self.node(ctx, path, p, "batchnorm", {"eps": a.get("eps", 1e-5),
                                                         "momentum": a.get("momentum", 0.1)}, [x])
        if kind in ops.ACTIVATIONS:
            return self.node(ctx, path, p, "act", {"kind": kind}, [x])
        if kind in ("maxpool", "avgpool"):
            k = self.pair(ctx, a["kernel"], path + ("kernel",))
            attrs = {"kernel": k,
                     "stride": self.pair(ctx, a["stride"], path + ("stride",)) if "stride" in a else k,
                     "padding": self.pair(ctx, a["padding"], path + ("padding",)) if "padding" in a else (0, 0),
                     "ceil_mode": bool(v("ceil_mode", False))}
            if kind == "avgpool":
                attrs["count_include_pad"] = bool(v("count_include_pad", True))
            self.positive(ctx, path, attrs, ("kernel", "stride"))
            return self.node(ctx, path, p, kind + "2d", attrs, [x])
        if kind in ("global_avgpool", "global_maxpool"):
            return self.node(ctx, path, p, "global_pool", {"mode": kind[7:10], "keepdim": False}, [x])
        if kind == "flatten":
            return self.node(ctx, path, p, "flatten", {}, [x])
        if kind == "linear":
            out = v("out", want=int)
            self.positive(ctx, path, {"out": out}, ("out",))
            return self.node(ctx, path, p, "linear", {"out": out, "bias": bool(v("bias", True))}, [x])
        if kind == "dropout":
            pr = v("p", 0.5)
            if not isinstance(pr, (int, float)) or not 0 <= pr < 1:
                self.problem(ctx, path + ("p",), f"dropout p must be in [0, 1), got {pr!r}")
                raise _Abort
            return self.node(ctx, path, p, "dropout", {"p": float(pr)}, [x])
        if kind == "channel_shuffle":
            gr, blame = self.value(ctx, a["groups"], path + ("groups",), int)
            self.positive(ctx, path, {"groups": gr}, ("groups",))
            return self.node(ctx, path, p, "channel_shuffle", {"groups": gr}, [x], blame=blame)
        if kind == "identity":
            return self.node(ctx, path, p, "identity", {}, [x])
        raise AssertionError(f"layer kind {kind} passed the schema but has no expansion")

    def positive(self, ctx, path, attrs, keys):
        for k in keys:
            val = attrs[k]
            for n in (val if isinstance(val, tuple) else (val,)):
                if not isinstance(n, int) or n < 1:
                    self.problem(ctx, path + (k,), f"{k} must be a positive integer, got {n!r}")
                    raise _Abort

    def conv(self, ctx, a, path, p, x) -> str:
        out, out_blame = self.value(ctx, a["out"], path + ("out",), int)
        k = self.pair(ctx, a.get("kernel", 1), path + ("kernel",))
        stride = self.pair(ctx, a.get("stride", 1), path + ("stride",))
        dil = self.pair(ctx, a.get("dilation", 1), path + ("dilation",))
        pad_raw = self.value(ctx, a.get("padding", "same"), path + ("padding",))[0] \
            if not isinstance(a.get("padding"), list) else None
        if pad_raw == "same":
            pad = (ops.same_padding(k[0], dil[0]), ops.same_padding(k[1], dil[1]))
        elif pad_raw == "valid":
            pad = (0, 0)
        else:
            pad = self.pair(ctx, a["padding"], path + ("padding",))
        groups, g_blame = self.value(ctx, a.get("groups", 1), path + ("groups",), int)
        norm = self.value(ctx, a.get("norm", "bn"), path + ("norm",))[0]
        act = self.value(ctx, a.get("act", "relu"), path + ("act",))[0]
        bias = self.value(ctx, a["bias"], path + ("bias",), bool)[0] if "bias" in a else norm == "none"
        attrs = {"out": out, "kernel": k, "stride": stride, "padding": pad, "dilation": dil,
                 "groups": groups, "bias": bias}
        self.positive(ctx, path, attrs, ("out", "kernel", "stride", "dilation", "groups"))
        if min(pad) < 0:
            self.problem(ctx, path + ("padding",), f"padding must be >= 0, got {pad}")
            raise _Abort
        if norm not in ("bn", "none"):
            self.problem(ctx, path + ("norm",), f"norm must be bn or none, got {norm!r}")
            raise _Abort
        if act != "none" and act not in ops.ACTIVATIONS:
            self.problem(ctx, path + ("act",), f"unknown activation {act!r}{did_you_mean(act, ops.ACTIVATIONS)}")
            raise _Abort
        cin = self.graph.shape(x)[0]
        unit = self.graph.unit_of(p)
        rel = p[len(unit) + 1:] if unit and p != unit else p
        for what, n in (("input", cin), ("output", out)):
            if n % groups:
                self.blame(ctx, g_blame, f"{groups} does not divide the {n} {what} channels of {rel}")
                raise _Abort
        y = self.node(ctx, path, f"{p}.conv", "conv2d", attrs, [x])
        if norm == "bn":
            y = self.node(ctx, path, f"{p}.bn", "batchnorm", {"eps": 1e-5, "momentum": 0.1}, [y])
        if act != "none":
            y = self.node(ctx, path, f"{p}.act", "act", {"kind": act}, [y])
        return y

    # -- composites ------------------------------------------------------------------
    def residual(self, ctx, a, path, p, x) -> Composite:
        g = self.graph
        branch = self.items(ctx, a["branch"], path + ("branch",), f"{p}.branch", x)
        merge = self.value(ctx, a.get("merge", "add"), path + ("merge",))[0]
        if merge not in ("add", "concat"):
            self.problem(ctx, path + ("merge",), f"merge must be add or concat, got {merge!r}")
            raise _Abort
        sc = a.get("shortcut", "auto")
        when, layers = ("auto", None) if sc == "auto" else ("never", None) if sc == "identity" else \
            ("always", sc) if isinstance(sc, list) else (sc.get("when", "auto"), sc["layers"])
        xs, bs = g.shape(x), g.shape(branch)
        agree = xs == bs if merge == "add" else xs[1:] == bs[1:]
        short = x
        if when == "always" or (when == "auto" and not agree):
            if layers is not None:
                lp = path + ("shortcut",) + (("layers",) if isinstance(sc, dict) else ())
                short = self.items(ctx, layers, lp, f"{p}.shortcut", x)
            else:
                short = self.projection(ctx, path, p, x, branch)
        scale = self.value(ctx, a.get("scale", 1.0), path + ("scale",))[0]
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            self.problem(ctx, path + ("scale",), f"scale must be a number, got {scale!r}")
            raise _Abort
        if merge == "add":
            m = self.node(ctx, path, f"{p}.add", "add", {"scales": (1.0, float(scale))}, [short, branch])
        else:
            m = self.node(ctx, path, f"{p}.concat", "concat", {}, [short, branch])
        out = self.items(ctx, a.get("post") or [], path + ("post",), f"{p}.post", m)
        return Composite(p, "residual", x, out, branch_out=branch, shortcut_out=short, merge=m)

    def projection(self, ctx, path, p, x, branch) -> str:
        """The `auto` shortcut when shapes differ: 1x1 conv (stride from the sizes) + BN."""
        (_, hi, wi), (co, ho, wo) = self.graph.shape(x), self.graph.shape(branch)
        sh, sw = -(-hi // ho), -(-wi // wo)   # the stride s with ceil(n / s) == out, if any
        if ops.conv_out(hi, 1, sh, 0) != ho or ops.conv_out(wi, 1, sw, 0) != wo:
            self.problem(ctx, path + ("shortcut",), f"auto shortcut cannot map {hi}x{wi} to {ho}x{wo} with a "
                                                    "strided 1x1 conv; give the shortcut layers explicitly")
            raise _Abort
        conv = {"out": co, "kernel": (1, 1), "stride": (sh, sw), "padding": (0, 0), "dilation": (1, 1),
                "groups": 1, "bias": False}
        y = self.node(ctx, path, f"{p}.shortcut.0.conv", "conv2d", conv, [x])
        return self.node(ctx, path, f"{p}.shortcut.0.bn", "batchnorm", {"eps": 1e-5, "momentum": 0.1}, [y])

    def parallel(self, ctx, a, path, p, x) -> Composite:
        br = a["branches"]
        named = br.items() if isinstance(br, dict) else ((f"branch{i}", b) for i, b in enumerate(br))
        outs = []
        for i, (name, items) in enumerate(named):
            key = name if isinstance(br, dict) else i
            if not name or "." in name:
                self.problem(ctx, path + ("branches", key), f"branch name {name!r}: names are non-empty and have no "
                                                            "'.' (it separates the parts of node paths)", key=True)
                raise _Abort
            outs.append(self.items(ctx, items, path + ("branches", key), f"{p}.{name}", x))
        merge = self.value(ctx, a.get("merge", "concat"), path + ("merge",))[0]
        if merge not in ("add", "concat"):
            self.problem(ctx, path + ("merge",), f"merge must be concat or add, got {merge!r}")
            raise _Abort
        if merge == "concat":
            m = self.node(ctx, path, f"{p}.concat", "concat", {}, outs) if len(outs) > 1 else outs[0]
        else:
            m = self.node(ctx, path, f"{p}.add", "add", {"scales": (1.0,) * len(outs)}, outs) \
                if len(outs) > 1 else outs[0]
        out = self.items(ctx, a.get("post") or [], path + ("post",), f"{p}.post", m)
        return Composite(p, "parallel", x, out, merge=m)


def expand(spec: Spec) -> Graph:
    """Spec -> IR graph with shapes. Raises SpecError listing every problem."""
    return Expander(spec).run()
