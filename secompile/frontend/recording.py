"""The records the front end leaves on the graph as it builds (ir/records.py): every template
instance as a `Scope`, every attention module written as a layer as an `AttentionModule`.

An attention module is an instance of a shipped attention template (specs/blocks/attention.yaml)
or of any `gate` template (out = x * f(x) recalibrates x by definition). One whose result keeps
the shape of its input (SE, ECA, CBAM) is recorded when its instance is built; one that gives
something else (SK's logits) is recorded by the construct that fuses its result with the input
(the select merge: `record_fused`).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.records import AttentionModule, Scope, attention_kind
from ..lang.document import Template


def record_instance(g: Graph, tmpl: Template, shipped: bool, scope: str, entry: str, exit_: str,
                    env: dict, mark: int, block: bool) -> None:
    """After template `tmpl` was built at `scope` (nodes added since `mark`) from `entry`."""
    params = {k: p.value for k, p in env.items()}
    attention = (shipped or "gate" in tmpl.body) and g.shape(exit_) == g.shape(entry)
    # recorded as the attention module it is (Graph.add_attention would replace the record)
    kind = "attention" if attention else "block" if block else "template"
    g.add_scope(Scope(scope, kind, tmpl.name, entry, exit_, params))
    if not attention:
        return
    g.add_attention(AttentionModule(
        scope, tmpl.name, attention_kind(tmpl.name), g.op(exit_), entry, exit_,
        g.param_count(g.nodes_since(mark)), None, width=_width(params)))


def record_fused(g: Graph, scope: str, entry: str, fused: str) -> None:
    """The template instance at `scope`, built on `entry`, is an attention module whose result
    node `fused` (a select merge) combines with its input."""
    rec = g.scopes.get(scope)
    if rec is None:
        return
    nodes = [p for p in g.order if p.startswith(scope + ".")]
    g.add_attention(AttentionModule(
        scope, rec.template, attention_kind(rec.template), g.op(fused), entry, fused,
        g.param_count(nodes), None, width=_width(rec.params)))


def _width(params: dict) -> int | None:
    w = params.get("width")
    return w if isinstance(w, int) and not isinstance(w, bool) else None


__all__ = ["record_instance", "record_fused"]
