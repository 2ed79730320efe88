"""Stages: the spec's `stages:` list -> the stages the network has, then each one's blocks.

    - {block: mbconv, repeat: "ceil(2 * $depth)", out: "make_divisible(24 * $width, 8)"}
    - {block: mbconv, out: 24, blocks: [{expand: 4, stride: 2}, {expand: 3}]}   # per block
    - {foreach: "regnet_stages($w0, $wa, $wm, $depth, $group_w)", as: s, name: s,
       block: regnet_bottleneck, repeat: $s.depth, out: $s.width, group_width: $s.group_width}

`stage_entries` runs first: it evaluates every `repeat` (the block count must be known before
anything is built: the size guard and `net_blocks`) and expands each `foreach:` into one stage
per entry of its list, the entry bound to the name in `as` (default `stage`). A generated stage
is written at the generator's line, so its problems are reported there with the entry named
(`(in stages[0][entry 2])`). `stage` then builds one stage: block j gets the stage's parameters
updated with `blocks[j]` (which may also name another template with `block:`), in an environment
that holds the network parameters, the foreach entry and the per-block names (`$block_index`,
...); the stage's `stride` applies to block 0 unless a `blocks` entry gives its own. A stage
whose `when:` is false is left out (the stages after it move up: one file for several
architectures of a family, e.g. MobileNetV3 large and small).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Composite, Stage
from ..lang.errors import did_you_mean, format_path
from .binding import Abort, Ctx, Param

MAX_GENERATED_STAGES = 64        # stages one `foreach:` may produce
STAGE_KEYS = ("block", "repeat", "name", "blocks", "when")   # not template parameters


@dataclass
class StageEntry:
    st: dict | None       # the stage as written (None: refused or unevaluable; not built)
    path: tuple           # where it is written: ('stages', i)
    ctx: Ctx              # the network parameters (+ the foreach entry)
    repeat: int | None    # evaluated block count
    name: str | None = None
    label: str = ""       # 'stages[0][entry 2]' for a generated stage, else 'stages[0]'


class Stages:
    """Mixed into the Expander (needs `spec`, `graph`, `value`, `problem`, `instance`, ...)."""

    def stage_entries(self, root: Ctx) -> list[StageEntry]:
        out = []
        for i, st in enumerate(self.spec.data["stages"]):
            path = ("stages", i)
            name = st.get("name") if isinstance(st, dict) else None
            if self._skips("stages", i) or not isinstance(st, dict):
                out.append(StageEntry(None, path, root, None, name))
            elif "foreach" in st:
                out += self.generated(root, st, path)
            else:
                out.append(self.entry(root, st, path, name, format_path(path)))
        return [e for e in out if e is not None]

    def generated(self, root: Ctx, st: dict, path) -> list[StageEntry]:
        """One stage per entry of the `foreach:` list."""
        fpath = path + ("foreach",)
        try:
            items = self.resolve(root, st["foreach"], fpath)
        except Abort:
            return [StageEntry(None, path, root, None)]
        if not isinstance(items, list) or not items:
            self.problem(root, fpath, f"foreach: expected a non-empty list, got {items!r}")
            return [StageEntry(None, path, root, None)]
        if len(items) > MAX_GENERATED_STAGES:
            self.problem(root, fpath, f"foreach: {len(items)} stages; the limit is "
                                      f"{MAX_GENERATED_STAGES}")
            return [StageEntry(None, path, root, None)]
        name_as = st.get("as", "stage")
        body = {k: v for k, v in st.items() if k not in ("foreach", "as")}
        out = []
        for k, item in enumerate(items):
            label = f"{format_path(path)}[entry {k}]"
            ctx = Ctx(root.smap, {**root.env, name_as: Param(item, root.smap, fpath)},
                      root.where, root.depth, entry=label)
            name = f"{body['name']}{k + 1}" if isinstance(body.get("name"), str) else None
            before = len(self.problems)
            out.append(self.entry(ctx, body, path, name, label))
            if len(self.problems) > before:   # the same line fails for the next entries too
                break
        return [e for e in out if e is not None]

    def entry(self, ctx: Ctx, st: dict, path, name, label) -> StageEntry | None:
        """The stage as it will be built; None where its `when:` is false (no such stage)."""
        if "when" in st:
            try:
                if not self.condition(ctx, st["when"], path + ("when",)):
                    return None
            except Abort:
                return StageEntry(None, path, ctx, None, name, label)
        blocks = st.get("blocks")
        n = len(blocks) if isinstance(blocks, list) and "block" in st else 1
        if "repeat" not in st or "layers" in st:
            return StageEntry(st, path, ctx, n, name, label)
        try:
            repeat = self.resolve(ctx, st["repeat"], path + ("repeat",), int)
        except Abort:
            return StageEntry(None, path, ctx, None, name, label)
        if repeat < 1:
            self.problem(ctx, path + ("repeat",), f"repeat must be a positive integer, "
                                                  f"got {repeat}")
            return StageEntry(None, path, ctx, None, name, label)
        if isinstance(blocks, list) and len(blocks) > repeat:
            self.problem(ctx, path + ("blocks",), f"{len(blocks)} per-block entries for "
                                                  f"{repeat} blocks (repeat: {repeat})")
            return StageEntry(None, path, ctx, None, name, label)
        return StageEntry(st, path, ctx, repeat, name, label)

    def stage(self, root: Ctx, i: int, e: StageEntry, x: str) -> str:
        g, path, st = self.graph, e.path, e.st
        scope = f"stages.{i}"
        name = e.name or f"stage{i}"
        stage = Stage(scope, name)
        g.stages.append(stage)
        if "layers" in st:
            extra = [k for k in st if k not in ("layers", "name", "when")]
            if extra:
                self.problem(root, path + (extra[0],),
                             f"a layer stage takes only 'layers' and 'name', "
                             f"not '{extra[0]}'", key=True)
            if self.lost:
                return x
            g.add_unit(scope)
            env = {**root.env,
                   **{k: Param(v, None, ()) for k, v in self.enter_block(i, 0, 1, x).items()}}
            ctx = Ctx(root.smap, env, e.label, root.depth, root.entry)
            try:
                out = self.items(ctx, st["layers"], path + ("layers",), scope, x)
            except Abort:
                return x
            c = Composite(scope, "layers", x, out, stage=i, index=0, name=name,
                          mark=root.smap.mark(path), spec_path=format_path(path))
            g.blocks[scope] = c
            stage.blocks.append(scope)
            return out
        if "block" not in st:
            close = [k for k in st if did_you_mean(k, ("block", "layers"))]
            if close:   # a misspelt 'block' would otherwise read as a template parameter
                self.problem(root, path + (close[0],),
                             f"unknown key '{close[0]}'"
                             f"{did_you_mean(close[0], ('block', 'layers'))}", key=True)
            else:
                self.problem(root, path, "a stage needs 'block' (a template name) or 'layers'")
            return x
        params = {k: v for k, v in st.items() if k not in STAGE_KEYS}
        per_block = st.get("blocks") if isinstance(st.get("blocks"), list) else []
        for j in range(e.repeat):
            own = per_block[j] if j < len(per_block) and isinstance(per_block[j], dict) else {}
            tname = own.get("block", st["block"])
            tpath = path + (("blocks", j, "block") if "block" in own else ("block",))
            tmpl = self.spec.templates.get(tname)
            if tmpl is None:
                self.missing_template(root, tpath, tname, self.spec.templates)
                return x
            given = dict(params)
            if j > 0 and "stride" in given:
                given["stride"] = 1   # a stage's stride applies to its first block
            own_params = {k: v for k, v in own.items() if k != "block"}
            given.update(own_params)
            paths = {k: path + ("blocks", j, k) for k in own_params}
            env = self.enter_block(i, j, e.repeat, x)
            ctx = Ctx(root.smap, {**root.env, **{k: Param(v, None, ()) for k, v in env.items()}},
                      root.where, root.depth, root.entry)
            if self.lost:   # the input shape is unknown: check what needs none (the parameters)
                try:
                    self.bind(ctx, tmpl, given, path, x, True, paths=paths)
                except Abort:
                    pass
                return x
            scope_j = f"{scope}.blocks.{j}"
            g.add_unit(scope_j)
            before = len(self.problems)
            try:
                x = self.instance(ctx, tmpl, given, path, scope_j, x,
                                  where=f"{e.label}.blocks[{j}]", stage=(i, j, name),
                                  paths=paths)
            except Abort:
                pass
            stage.blocks.append(scope_j)
            if len(self.problems) > before or self.lost:
                break   # the shape after this block is unknown
        return x
