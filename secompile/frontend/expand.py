"""expand: Spec -> IR graph, the front end's driver. Walks stages, layer lists and templates.

Shapes are inferred as nodes are added, so every semantic problem (groups that do not
divide channels, sizes shrinking below 1, unknown templates or parameters) is found
here and reported at the spec location that caused it. Expansion goes on after a
problem where it can, so one run reports them all: a stage that fails (or that the schema
refused) leaves the shapes after it unknown, so the stages after it are only checked for what
needs no shape (template names, parameter names and types) and the head is skipped.

Where things are: layer kinds are built in `layers.py` (a dict kind -> builder), values are
bound and problems blamed in `binding.py`, templates instantiated in `templates.py`.
"""
from __future__ import annotations

from ..ir import ops
from ..ir.graph import Composite, Graph, Stage
from ..ir.verify import verified
from ..lang.document import Spec
from ..lang.errors import LimitError, SpecError, did_you_mean, format_path
from .binding import Abort, Binding, Ctx, Param
from .layers import COMPOSITES, layer_builder
from .replay import INPUT, Replays
from .stages import Stages
from .templates import MAX_NESTING, Templates

MAX_BLOCKS = 20_000     # blocks in one network; refused before any node is built
MAX_IR_NODES = 100_000  # IR nodes before SE insertion: ~3 s to build (the zoo's largest has ~800)

__all__ = ["expand", "expand_partial", "Expander", "MAX_BLOCKS", "MAX_IR_NODES", "MAX_NESTING"]


class Expander(Binding, Stages, Templates):
    """One expansion: the graph being built and the problems found so far (reported all at once)."""

    def __init__(self, spec: Spec, graph: Graph | None = None):
        self.spec = spec
        self.problems = []
        self.partial = spec.partial      # what the schema refused (None: it refused nothing)
        self.lost = self._skips("input")  # True once the shape flowing through is unknown
        if graph is None:
            graph = Graph(spec.name, (3, 224, 224) if self.lost else spec.input_shape)
        self.graph = graph
        self.block_env: dict = {}     # per-block names of the stage-level block being expanded
        self.anchor: str | None = None   # set: new nodes are placed after it (SE modules, passes/)
        self.added: list[str] = []       # nodes added in anchor mode
        self.bound: dict = {}            # the environment of the template instantiated last
        self._shipped: dict | None = None   # the shipped templates, read once (Templates.shipped)
        self.replays = Replays()         # template bodies built, for instances that match them

    def _skips(self, *part) -> bool:
        return self.partial is not None and self.partial.skips(*part)

    def missing_template(self, ctx, path, name, known) -> None:
        """An unknown template is a problem, unless the schema refused where it may be defined."""
        if self.partial is not None and self.partial.may_define(name):
            self.lost = True
        else:
            hint = did_you_mean(name, known)
            self.problem(ctx, path, f"unknown block template '{name}'{hint}")

    # -- nodes -----------------------------------------------------------------------
    def node(self, ctx, path, ipath, op, attrs, inputs, blame: Param | None = None):
        # not len(): that sorts after an insert
        # templates of templates multiply: 3 KB can ask for 10**7 nodes
        if self.graph.g.number_of_nodes() >= MAX_IR_NODES:
            where = f" (in {ctx.where})" if ctx.where else ""
            raise LimitError([ctx.smap.problem(path, f"the network grows past {MAX_IR_NODES} "
                                                     f"nodes at {ipath}; refusing it{where}")])
        try:
            return self._add(ipath, op, attrs, inputs)
        except ops.OpError as e:
            if blame is not None:
                self.blame(ctx, blame, f"{e} at {ipath}")
            else:
                self.problem(ctx, path, f"{e} at {ipath}")
            raise Abort from None

    def _add(self, ipath, op, attrs, inputs) -> str:
        if self.anchor is None:
            return self.graph.add(ipath, op, attrs, inputs)
        self.anchor = self.graph.add(ipath, op, attrs, inputs, after=self.anchor)
        self.added.append(self.anchor)
        return self.anchor

    def replay(self, body: tuple, scope: str, x: str) -> Composite | None:
        """Add a body kept by `Replays` under `scope`, reading `x` -> its composite; None
        (nothing added) where a node could be refused: the instance is then built as usual,
        which finds and locates the problem."""
        records, kind, fields = body
        g, prefix = self.graph, scope + "."
        # the body's nodes did not clash among themselves where it was built; they clash with
        # none here if no node lies at, above or below the scope (a node at its path would)
        if g.g.number_of_nodes() + len(records) > MAX_IR_NODES or g.taken(scope) is not None:
            return None

        def node(relative):
            return x if relative == INPUT else prefix + relative
        for suffix, op, attrs, inputs in records:
            self._add(prefix + suffix, op, dict(attrs), [node(i) for i in inputs])
        return Composite(scope, kind, x, **{f: node(r) for f, r in fields.items()})

    # -- whole network ---------------------------------------------------------------
    def run(self) -> Graph:
        g, _ = self.build()
        if self.problems:
            raise SpecError(self.problems)
        return g

    def build(self) -> tuple[Graph, set]:
        """Expand every part that can be. -> (graph, indices of the stages not fully built);
        the problems found are in self.problems."""
        spec, g = self.spec, self.graph
        root = Ctx(spec.smap, self.net_params(), "")
        entries = self.stage_entries(root)   # foreach expanded, repeats evaluated
        self._guard_size(entries)
        x = g.add("input", "input", {"shape": g.input_shape}, [])
        if self._skips("stem"):
            self.lost = True
        elif spec.data.get("stem") and not self.lost:
            x = self._step(lambda: self.unit(root, "stem", ("stem",), spec.data["stem"], x))
        unknown = set()
        self.net_blocks = sum(e.repeat or 1 for e in entries)
        self.net_block_index = 0
        for i, e in enumerate(entries):
            if e.st is None:
                g.stages.append(Stage(f"stages.{i}", e.name or f"stage{i}"))
                self.lost = True
            else:
                x = self._step(lambda: self.stage(e.ctx, i, e, x))
            if self.lost:
                unknown.add(i)
        self.block_env = {}
        if spec.data.get("head") and not self.lost and not self._skips("head"):
            x = self.unit(root, "head", ("head",), spec.data["head"], x)
        g.output = x
        return g, unknown

    def net_params(self) -> dict:
        """The network parameters as names every expression sees (blamed at `params.NAME`)."""
        return {k: Param(v, self.spec.smap, ("params", k)) for k, v in self.spec.params.items()}

    def _step(self, expand):
        """Expand one part; a problem in it leaves the shape after it unknown."""
        before = len(self.problems)
        out = expand()
        self.lost = self.lost or len(self.problems) > before
        return out

    def _guard_size(self, entries):
        total = sum(e.repeat or 1 for e in entries)
        if total > MAX_BLOCKS:
            big = max(entries, key=lambda e: e.repeat or 1)
            raise LimitError([self.spec.smap.problem(big.path + ("repeat",),
                                                     f"the stages repeat {total} blocks in all; "
                                                     f"the limit is {MAX_BLOCKS} "
                                                     "(refused before building anything)")])
        for e in entries:   # templates of templates, repeated: a lower bound of the nodes
            st = e.st if isinstance(e.st, dict) else {}
            each = (self.min_nodes([{"block": {"template": st["block"]}}], MAX_IR_NODES)
                    if isinstance(st.get("block"), str) else 0)
            if each * (e.repeat or 1) > MAX_IR_NODES:
                what = (f"block template '{st['block']}' builds" if (e.repeat or 1) == 1 else
                        f"{e.repeat} blocks of template '{st['block']}' (at least {each} nodes "
                        "each) build")
                raise LimitError([self.spec.smap.problem(
                    e.path + ("block",), f"{what} more than {MAX_IR_NODES} nodes; refusing "
                    "it (before building anything)")])

    def unit(self, ctx, scope, path, items, x):
        self.graph.add_unit(scope)
        try:
            return self.items(ctx, items, path, scope, x)
        except Abort:
            return x

    def enter_block(self, stage: int, index: int, stage_blocks: int, x: str) -> dict:
        """The per-block names templates and `when:` see inside one stage-level block."""
        self.block_env = {"block_index": index, "stage_index": stage, "stage_blocks": stage_blocks,
                          "net_block_index": self.net_block_index, "net_blocks": self.net_blocks,
                          "block_in": self.graph.shape(x)[0]}
        self.net_block_index += 1
        return self.block_env

    # -- layer lists -----------------------------------------------------------------
    def items(self, ctx: Ctx, items: list, path, scope: str, x: str) -> str:
        names = set()
        for i, item in enumerate(items):
            name = item.get("name", str(i)) if isinstance(item, dict) else str(i)
            if name in names:
                self.problem(ctx, tuple(path) + (i, "name"),
                             f"duplicate layer name '{name}' in this list")
                raise Abort
            names.add(name)
            x = self.item(ctx, item, tuple(path) + (i,), f"{scope}.{name}", x)
        return x

    def item(self, ctx: Ctx, item, path, p: str, x: str) -> str:
        if isinstance(item, str):
            kind, attrs = item, {}
        else:
            kinds = [k for k in item if k not in ("name", "when")]
            if len(kinds) != 1:
                self.problem(ctx, path,
                             "a layer has exactly one kind, got " + (", ".join(kinds) or "none"))
                raise Abort
            kind = kinds[0]
            attrs = item[kind] or {}
            if "when" in item and not self.condition(ctx, item["when"], tuple(path) + ("when",)):
                return x   # a false condition removes the layer
        apath = tuple(path) + ((kind,) if not isinstance(item, str) else ())
        if kind in COMPOSITES:   # a level of nesting, as a template instance is
            comp = COMPOSITES[kind](self, self.deeper(ctx, apath), attrs, apath, p, x)
            if comp.kind != "layers":   # a residual without its skip (skip: auto): a plain sequence
                self.graph.composites[p] = comp
            return comp.output
        if kind == "block":
            tmpl = self.template(attrs.get("template"))
            if tmpl is None:
                self.missing_template(ctx, apath + ("template",), attrs.get("template"),
                                       self.template_names())
                raise Abort
            given = {k: v for k, v in attrs.items() if k != "template"}
            return self.instance(ctx, tmpl, given, apath, p, x,
                                 where=f"{ctx.where or format_path(path)}")
        build = layer_builder(kind)   # built in, or a plug-in this program registered
        if build is None:   # an op layer whose builder is not in this build (issue 12: v2ops)
            self.problem(ctx, apath, f"layer kind '{kind}' has no builder in this version of "
                                     "secompile")
            raise Abort
        return build(self, ctx, attrs, apath, p, x)


    def condition(self, ctx: Ctx, raw, path) -> bool:
        val = self.resolve(ctx, raw, path)
        if not isinstance(val, bool):
            self.problem(ctx, path, f"when: expected true or false, got {val!r}")
            raise Abort
        return val


@verified
def expand(spec: Spec) -> Graph:
    """Spec -> IR graph with shapes. Raises SpecError listing every problem."""
    return Expander(spec).run()


def expand_partial(spec: Spec) -> tuple[Graph, set, list]:
    """Spec -> (the graph of every part that could be built, indices of the stages that were
    not fully built, the problems found). Raises only LimitError."""
    e = Expander(spec)
    g, unknown = e.build()
    return g, unknown, e.problems
