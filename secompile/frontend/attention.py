"""Attention modules for passes/insert_se: an SE rule's `module:` is a block template.

The shipped modules (the paper's `se`, `effective_se`, `eca`, `cbam`, ...) live in
specs/blocks/attention.yaml; a spec's own templates (defined or included) take precedence, so a
user writes a module the way they write any block. `attention_modules(spec)` is what
api.build_ir hands to insert_se (passes never import the front end).

Inside a module, `in_channels` is the width of the recalibrated tensor and the per-block names
(`block_in`, `block_index`, ...) are those of the enclosing stage-level block. The rule's keys
other than where/exclude/position/module are the template's parameters; a bad one is reported
at the rule.
"""
from __future__ import annotations

from ..ir.graph import Composite, Graph
from ..lang.document import Spec
from ..lang.errors import SpecError, format_path
from .binding import Abort, Ctx, Param
from .expand import Expander
from .replay import Replays
from .templates import shipped_templates


class AttentionModules:
    """The templates an SE rule may name; builds one on an IR graph (insert_se.AttentionModules)."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.shipped = shipped_templates()
        self.replays = Replays()   # one pass's module bodies: 16 SE modules are a few distinct
        self.templates = {**self.shipped, **spec.templates}
        self._block_order: dict = {}

    def __contains__(self, name: str) -> bool:
        return name in self.templates

    def names(self) -> list[str]:
        return sorted(self.templates)

    def block_env(self, g: Graph, block: Composite | None) -> dict:
        if block is None:
            return {}
        if len(self._block_order) != len(g.blocks):
            self._block_order = {p: i for i, p in enumerate(g.blocks)}
        return {"block_index": block.index, "stage_index": block.stage,
                "stage_blocks": len(g.stages[block.stage].blocks),
                "net_block_index": self._block_order[block.path], "net_blocks": len(g.blocks),
                "block_in": g.shape(block.input)[0]}

    def build(self, g: Graph, name: str, u: str, scope: str, params: dict, rule_path: tuple,
              block: Composite | None) -> tuple[str, list[str], dict]:
        fe = Expander(self.spec, graph=g)
        fe._shipped, fe.replays = self.shipped, self.replays
        fe.anchor, fe.added = u, []
        fe.block_env = self.block_env(g, block)
        env = {**fe.net_params(), "in_channels": Param(g.shape(u)[0], None, ())}
        env.update({k: Param(v, None, ()) for k, v in fe.block_env.items()})
        ctx = Ctx(self.spec.smap, env, f"{format_path(rule_path)} at {scope}")
        tmpl = self.templates[name]
        try:
            out = fe.instantiate(ctx, tmpl, params, rule_path, scope, u, ctx.where).output
        except Abort:
            out = None
        if fe.problems or out is None:
            raise SpecError(fe.problems)
        return out, fe.added, {k: p.value for k, p in fe.bound.items()}


def se_rules(spec: Spec, rules: list | None = None) -> list:
    """The SE rules in force, for insert_se: a rule whose `when:` (true, false or a $-expression
    over the network parameters) is false becomes None, which the pass leaves out (the other
    rules keep their index, so problems still point at `se[i]`); `when` itself is dropped."""
    rules = (spec.data.get("se") or []) if rules is None else rules
    if not any(isinstance(r, dict) and "when" in r for r in rules):
        return rules
    fe = Expander(spec)
    ctx = Ctx(spec.smap, fe.net_params(), "")
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or "when" not in rule:
            out.append(rule)
            continue
        try:
            on = fe.condition(ctx, rule["when"], ("se", i, "when"))
        except Abort:
            on = False
        out.append({k: v for k, v in rule.items() if k != "when"} if on else None)
    if fe.problems:
        raise SpecError(fe.problems)
    return out


def attention_modules(spec: Spec) -> AttentionModules:
    return AttentionModules(spec)
