"""What the graph knows about its scopes, recorded when the front end or a pass builds them.

Later stages (counts, diff, diagrams, weights, the verifier) read these records instead of
guessing from node paths: which scopes are template instances and with which parameters,
which are attention modules (SE, ECA, CBAM, SK, ...) and which tensor each one recalibrates.

- `Scope`: one template instance (a stage-level block, a `block:` layer, a module an SE rule
  inserted): the template, its bound names, the node feeding it and the node giving its result.
- `Composite` (a residual / parallel / layer-sequence scope, with the nodes passes need) and
  `Stage`: the structure of the network the SE rules select from.
- `AttentionModule`: one attention module, outermost only (CBAM's channel and spatial gates are
  one CBAM module), whether an SE rule inserted it (`rule` is that rule's spec path) or the spec
  wrote it as a layer (`rule` None).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Composite:
    """A residual / parallel / layer-sequence scope, with the nodes passes need."""

    path: str
    kind: str                       # 'residual' | 'parallel' | 'layers'
    input: str                      # node feeding the scope
    output: str                     # node producing its result
    template: str | None = None
    stage: int | None = None        # set for stage-level blocks
    index: int | None = None        # block index within its stage
    name: str | None = None         # stage name (blocks) for selectors
    branch_out: str | None = None   # residual: last node of the residual branch
    shortcut_out: str | None = None  # residual: shortcut result (== input when identity)
    merge: str | None = None        # residual/parallel: the merge node
    mark: object = None             # errors.Mark of the spec item that made it
    spec_path: str = ""             # its spec path, for messages


@dataclass
class Stage:
    path: str
    name: str
    blocks: list = field(default_factory=list)   # block paths


@dataclass(frozen=True)
class Scope:
    path: str
    kind: str                 # 'block' (a stage-level block) | 'template' | 'attention'
    template: str
    entry: str                # the node feeding the scope
    exit: str                 # the node giving its result
    params: dict = field(default_factory=dict, compare=False)   # bound names: plain values


@dataclass(frozen=True)
class AttentionModule:
    scope: str
    module: str               # the template that built it: 'se', 'eca', 'cbam', a spec's own
    kind: str                 # its family: se, eca, cbam, sk, ... (ATTENTION_KINDS)
    fusion: str               # how its result meets the tensor: 'mul' (a gate), 'select' (SK)
    input: str                # the tensor it recalibrates
    output: str               # the recalibrated tensor (same shape as `input`)
    param_count: int
    rule: tuple | None        # spec path of the SE rule that inserted it; None: a layer
    position: str | None = None   # where the rule put it: standard, pre, post, identity, after
    target: str | None = None     # the block, scope or node the rule named
    width: int | None = None      # the bottleneck width (the template's `width`), if it has one

    def facts(self, params: dict) -> dict:
        """The flat record `Graph.se` has always given (params: its scope's bound names)."""
        return {"position": self.position, "target": self.target, "input": self.input,
                "channels": params.get("in_channels"), "reduced": self.width,
                "reduction": params.get("reduction"), "squeeze": params.get("squeeze"),
                "gate": params.get("gate"), "bias": params.get("bias"), "module": self.module,
                "kind": self.kind}


# The family of each shipped attention module (specs/blocks/attention.yaml); a spec's own
# module is its own family (its template name).
ATTENTION_KINDS = {"se": "se", "effective_se": "se", "eca": "eca", "cbam": "cbam",
                   "cbam_channel": "cbam", "cbam_spatial": "cbam", "sk_attention": "sk"}


def attention_kind(module: str) -> str:
    return ATTENTION_KINDS.get(module, module)


# The fields of each record that name a node: Graph keeps them true as passes rewrite it.
NODE_FIELDS = {Composite: ("input", "output", "merge", "branch_out", "shortcut_out"),
               Scope: ("entry", "exit"), AttentionModule: ("input", "output")}
# The field naming the node that gives a record's result (a cut scope now ends elsewhere).
RESULT_FIELD = {Composite: "output", Scope: "exit", AttentionModule: "output"}


def named_nodes(record) -> dict:
    """field -> node, for each field of `record` naming a node (None fields left out)."""
    return {f: getattr(record, f) for f in NODE_FIELDS[type(record)]
            if getattr(record, f) is not None}


def inside(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope + ".")


def prefixes(path: str, proper: bool = True) -> list[str]:
    """The scopes a path lies in: 'a.b.c' -> ['a', 'a.b'] (and 'a.b.c' unless proper)."""
    # each prefix extends the one before: no list of parts joined again for each (every node
    # is walked so when added, verified and counted)
    segments = iter(path.split("."))
    prefix = next(segments)
    out = [prefix]
    for seg in segments:
        prefix = f"{prefix}.{seg}"
        out.append(prefix)
    if proper:
        del out[-1]
    return out


class ScopeChains:
    """`prefixes(path)` of many paths, as tuples, each scope's chain built once: the nodes of a
    scope share their prefixes (a graph walk asks for them per node, three walks per count)."""

    __slots__ = ("_chains",)

    def __init__(self):
        self._chains: dict[str, tuple] = {}   # scope -> its proper prefixes and itself

    def __call__(self, path: str) -> tuple:
        cut = path.rfind(".")
        if cut == -1:
            return ()
        parent = path[:cut]
        chain = self._chains.get(parent)
        if chain is None:
            chain = self._chains[parent] = self(parent) + (parent,)
        return chain


__all__ = ["Composite", "Stage", "Scope", "AttentionModule", "NODE_FIELDS", "RESULT_FIELD",
           "named_nodes", "ATTENTION_KINDS", "attention_kind", "inside", "prefixes", "ScopeChains"]
