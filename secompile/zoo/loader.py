"""The one spec loader below the API: zoo names, then the spec language, then every later check.

    spec = load_spec("se_resnet50")                      # a zoo name, path, YAML text, dict, Spec
    spec = load_spec("net.yaml", overrides={"input.size": 320})

`secompile.lang.load_spec` validates the language alone. When the schema refuses part of a
spec, its SpecError carries the parts that did validate (`error.partial`); this loader runs
the front end and the SE rules on them, so one run reports every phase's problems. The checks
sit here, above the front end, rather than as a hook the language layer calls up into.
"""
from __future__ import annotations

from ..frontend import attention_modules, se_rules
from ..frontend.expand import expand_partial
from ..ir.graph import Graph
from ..lang import document
from ..lang.document import Spec
from ..lang.errors import LimitError, Problem, SpecError
from ..passes.insert_se import check as check_se
from .names import ZooEntry, resolve


def load_spec(source, base_dir: str | None = None, *, overrides=None,
              variant: str | None = None) -> Spec:
    """Load, include and validate a spec (a zoo name too). Raises SpecError with every problem
    found: the schema's, and the front end's and SE rules' in the parts the schema accepted."""
    found = resolve(source)
    kwargs = {} if variant is None else {"variant": variant}   # a family file's member
    if isinstance(found, ZooEntry):
        if found.variant is not None:   # family files (zoo/names.py `_names_in`)
            kwargs["variant"] = found.variant
        found = found.file
    try:
        return document.load_spec(found, base_dir, overrides=overrides, **kwargs)
    except SpecError as e:
        if e.partial is None:
            raise
        raise _with_later_problems(e) from None


def _with_later_problems(e: SpecError) -> SpecError:
    """The schema's problems and those the front end and SE rules find in the parts that
    validated (a problem inside a part with a schema problem may only follow from it)."""
    spec, error, later = e.partial, SpecError, []
    try:
        later = later_problems(spec)
    except LimitError as limit:
        later, error = limit.problems, LimitError
    return error(list(e.problems) + [p for p in later if not spec.partial.hides(p)])


def later_problems(spec: Spec) -> list[Problem]:
    """Every problem the front end and the SE rules find in `spec` (its validated parts)."""
    g, unknown, problems = expand_partial(spec)
    return problems + se_problems(spec, g, unknown)


def se_problems(spec: Spec, g: Graph, unknown) -> list[Problem]:
    """The SE rules' problems on the graph the front end built (partial specs: the rules and
    templates the schema refused are skipped)."""
    rules = spec.data.get("se")
    if not isinstance(rules, list) or (spec.partial and spec.partial.skips("se")):
        return []
    partial, modules = spec.partial, attention_modules(spec)

    def refused(i, rule) -> bool:   # the rule, or the template its module names, was refused
        if partial is None:
            return False
        name = rule.get("module", "se") if isinstance(rule, dict) else None
        return partial.skips("se", i) or (name not in modules and partial.may_define(name))
    try:   # a rule whose `when:` is false is left out
        rules = se_rules(spec, [None if refused(i, r) else r for i, r in enumerate(rules)])
    except SpecError as e:
        return list(e.problems)
    return check_se(g, rules, spec.smap, unknown, modules=modules)


__all__ = ["load_spec", "later_problems", "se_problems"]
