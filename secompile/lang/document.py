"""The parsed spec: validated data, its source map, and the block templates it can use.

`load_spec` accepts a path, YAML text, a dict or a Spec, follows `include:` (relative
to the including file), validates every document against the schema and reports all
problems at once. After schema problems its SpecError carries the parts that validated
(`error.partial`, a Spec with `Partial` set): the loader above (secompile/zoo/loader.py) runs
the front end and the SE rules on them, so one run reports every phase's problems.
"""
from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass, field

import yaml

from .errors import Mark, Problem, SpecError, format_path
from .family import apply_variant, param_problems
from .loader import SourceMap, load_yaml_file, load_yaml_text
from .schema import generation as schema_generation
from .schema import located, validate

MAX_INCLUDE_DEPTH = 16
# Includes not found next to the including file are looked up in the shipped zoo folder
# (secompile/specs), so a spec anywhere can `include: [blocks/resnet.yaml]`.
SHIPPED_SPECS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "specs")


@dataclass(frozen=True)
class Template:
    """A block template: typed parameters in, a small graph (layers/residual/parallel) out."""

    name: str
    # name -> default value, or a type name ('int', 'float', 'str', 'bool') if required
    params: dict
    body: dict            # the template mapping as written
    smap: SourceMap       # of the file that defines it
    path: tuple           # ('blocks', name) in that file

    REQUIRED_TYPES = {"int": int, "float": float, "str": str, "bool": bool}

    def required(self) -> list[str]:
        return [k for k, v in self.params.items() if isinstance(v, str)
                and v in self.REQUIRED_TYPES]

    @functools.cached_property
    def required_names(self) -> frozenset:
        """required(), as a set computed once (every instance binds against it)."""
        return frozenset(self.required())


@dataclass(frozen=True)
class Partial:
    """What the schema refused in a spec that is checked further all the same (every problem in
    one run): the front end builds the parts that validated and skips these."""

    broken: frozenset      # parts refused: ('stem',), ('stages', 2), ('se', 0), ('blocks', 'mb')
    flawed: frozenset      # parts with any schema problem (also those whose only problem is a
                           # misspelt key: built without that key, their own later problems hidden)
    templates_lost: bool   # `include` or `blocks` refused, an included file refused, or an unknown
                           # top-level key (a misspelt `include`?): a template not found may exist
    file: str

    def skips(self, *part) -> bool:
        return part in self.broken or part[:1] in self.broken

    def may_define(self, template) -> bool:
        """Whether a template that is not found may be one the schema refused."""
        return self.templates_lost or self.skips("blocks", template)

    def hides(self, problem: Problem) -> bool:
        """A later problem inside a part that has a schema problem may only follow from it."""
        if problem.mark.file != self.file:
            return False
        return any(problem.path == p or problem.path.startswith((p + ".", p + "["))
                   for p in map(format_path, self.flawed))


def _part(path: tuple) -> tuple:
    return tuple(path[:2]) if path[:1] in (("stages",), ("se",), ("blocks",)) else tuple(path[:1])


@dataclass
class Spec:
    name: str
    data: dict                      # the validated top-level document
    smap: SourceMap
    templates: dict = field(default_factory=dict)   # name -> Template
    base_dir: str = "."
    overrides: tuple = ()           # spec.overrides.Override applied by load_spec(overrides=...)
    partial: Partial | None = None  # set only on SpecError.partial, after schema problems
    declared: dict | None = None    # the network parameters the file declares: name -> default
    variant: str | None = None      # the family member this spec is (load_spec(variant=...))

    @property
    def params(self) -> dict:
        """The network parameters' values (defaults, then the variant's, then overrides)."""
        p = self.data.get("params")
        return dict(p) if isinstance(p, dict) else {}

    def override_dict(self) -> dict:
        """The applied overrides as {KEY: value}, in order (for reports and metadata)."""
        return {o.key: o.value for o in self.overrides}

    @property
    def file(self) -> str:
        return self.smap.file

    @property
    def input_shape(self) -> tuple:
        inp = self.data.get("input", {"channels": 3, "size": 224})
        size = inp["size"]
        h, w = (size, size) if isinstance(size, int) else size
        return (inp["channels"], h, w)


def _to_plain(obj):
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (str, int)) else k: _to_plain(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _load_source(source, base_dir):
    """-> (data, smap, base_dir)."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and source.strip().endswith((".yaml", ".yml"))):
        path = os.fspath(source)
        data, smap = load_yaml_file(path)
        return data, smap, os.path.dirname(os.path.abspath(path))
    if isinstance(source, str):
        data, smap = load_yaml_text(source, "<string>")
        return data, smap, base_dir or os.getcwd()
    if isinstance(source, dict):
        # Dump and re-load so that problems still get a line and column (of the dumped YAML).
        text = yaml.safe_dump(_to_plain(source), sort_keys=False, default_flow_style=None)
        data, smap = load_yaml_text(text, "<dict>")
        return data, smap, base_dir or os.getcwd()
    raise TypeError(f"a spec is a path, YAML text, a dict or a Spec, not {type(source).__name__}")


def load_spec(source, base_dir: str | None = None, *, overrides=None,
              variant: str | None = None) -> Spec:
    """Load, include and validate a spec. Raises SpecError with every problem found.
    `overrides` ({KEY: value}, 'KEY=VALUE' strings or spec.overrides.Override objects) are
    applied to the data before validation; a Spec given with overrides is re-validated.
    `variant` names an entry of the family file's `variants:` (lang/family.py): its parameters
    and input size are applied first, and the spec takes its name."""
    if isinstance(source, Spec) and not overrides and variant is None:
        return source
    applied: tuple = ()
    if isinstance(source, Spec):
        data, smap, base, applied = source.data, source.smap, source.base_dir, source.overrides
        declared, variant = source.declared, variant or source.variant
    else:
        data, smap, base = _load_source(source, base_dir)
        declared = dict(data["params"]) if isinstance(data, dict) and isinstance(
            data.get("params"), dict) else None
        if variant is not None:
            data, smap = apply_variant(data, smap, variant)
    if overrides:   # spec/overrides.py: a copy of data and smap, re-marked at each override
        from .overrides import apply_overrides, as_overrides
        new = as_overrides(overrides)
        data, smap = apply_overrides(data, smap, new)
        applied = tuple(applied) + tuple(new)
    if not isinstance(data, dict):
        raise SpecError([smap.problem((), "a spec is a mapping with at least 'name' and 'stages'")])
    found = located(data, smap) + param_problems(data, smap, declared)
    problems = [p for _, p, _ in found]
    templates: dict = {}
    origin: dict = {}
    stack = [os.path.abspath(smap.file)] if not smap.file.startswith("<") else []
    _collect_includes(data, smap, base, templates, origin, problems, stack)
    included_failed = len(problems) > len(found)
    _add_templates(data, smap, templates, origin, problems, own=True)
    if problems:
        raise _all_problems(problems, found, included_failed, data, smap, templates, base, applied,
                            declared)
    return Spec(name=data["name"], data=data, smap=smap, templates=templates, base_dir=base,
                overrides=applied, declared=declared, variant=variant)


def _all_problems(problems, found, included_failed, data, smap, templates, base,
                  applied, declared=None) -> SpecError:
    """The schema's problems, with the parts that validated (`SpecError.partial`) for the later
    checks. A misspelt key is left out of its part (which is then built without it); a part
    with any other schema problem is skipped."""
    if not isinstance(data.get("stages"), list):
        return SpecError(problems)
    data = copy.deepcopy(data)
    for path, _, unknown_key in found:
        if unknown_key:
            parent = data
            for k in path[:-1]:
                parent = parent[k]
            parent.pop(path[-1], None)
    for path, _, unknown_key in found:   # a refused parameter value: built with its default
        if len(path) == 2 and path[0] == "params" and not unknown_key and path[1] in (
                declared or {}):
            data["params"][path[1]] = declared[path[1]]
    broken = {_part(path) for path, _, _ in located(data, smap)}
    flawed = frozenset(broken | {_part(path) for path, _, _ in found})
    templates_lost = included_failed or bool({("include",), ("blocks",)} & broken) or any(
        unknown_key and len(path) == 1 for path, _, unknown_key in found)
    partial = Partial(frozenset(broken), flawed, templates_lost, smap.file)
    own = {}
    _add_templates(data, smap, own, {}, [], own=True)
    templates = {**{k: t for k, t in templates.items() if t.smap is not smap},   # included
                 **{k: t for k, t in own.items() if not partial.skips("blocks", k)}}
    name = data.get("name") if isinstance(data.get("name"), str) else ""
    spec = Spec(name=name, data=data, smap=smap, templates=templates, base_dir=base,
                overrides=applied, partial=partial, declared=declared)
    return SpecError(problems, partial=spec)


def _add_templates(data, smap, templates, origin, problems, own=False):
    blocks = data.get("blocks")
    # else: a schema problem
    for name, body in (blocks.items() if isinstance(blocks, dict) else ()):
        if not isinstance(body, dict):
            continue
        if name in templates and not own and origin[name] != smap.file:
            problems.append(smap.problem(("blocks", name), f"template '{name}' is also defined in "
                                                          f"{origin[name]}", key=True))
            continue
        params = body.get("params")
        params = params if isinstance(params, dict) else {}   # else: a schema problem
        templates[name] = Template(name, dict(params), body, smap, ("blocks", name))
        origin[name] = smap.file


_INCLUDE_CACHE: dict = {}


def _load_include(path: str):
    """Load and validate an included file; cached per process while the file is unchanged
    (template files are shared by many specs and never mutated)."""
    try:
        st = os.stat(path)
        # the schema's generation: a plug-in layer (ir/plugins.py) changes what validates
        key = (os.path.abspath(path), os.path.relpath(path), st.st_mtime_ns, st.st_size,
               schema_generation())
    except OSError:
        key = None
    if key in _INCLUDE_CACHE:
        return _INCLUDE_CACHE[key]
    try:
        sub, smap = load_yaml_file(path)
    except SpecError as e:
        return None, None, list(e.problems)
    if not isinstance(sub, dict):
        result = (None, smap, [Problem(Mark(smap.file, 1, 1), "<root>",
                                       "an included file is a mapping with 'blocks' "
                                       "(and 'include')")])
    else:
        result = (sub, smap, validate(sub, smap, include=True))
    if key is not None:
        if len(_INCLUDE_CACHE) > 256:
            _INCLUDE_CACHE.clear()
        _INCLUDE_CACHE[key] = result
    return result


def _collect_includes(data, smap, base, templates, origin, problems, stack):
    incs = data.get("include")
    # a string is a schema problem
    for i, inc in enumerate(incs if isinstance(incs, list) else ()):
        if not isinstance(inc, str):
            continue
        path = inc if os.path.isabs(inc) else os.path.join(base, inc)
        shipped = os.path.join(SHIPPED_SPECS, inc)
        if not os.path.isabs(inc) and not os.path.isfile(path) and os.path.isfile(shipped):
            path = shipped
        apath = os.path.abspath(path)
        if apath in stack:
            chain = " -> ".join(os.path.basename(p) for p in stack + [apath])
            problems.append(smap.problem(("include", i), f"include cycle: {chain}"))
            continue
        if len(stack) >= MAX_INCLUDE_DEPTH:
            problems.append(smap.problem(("include", i),
                                         f"includes nested deeper than {MAX_INCLUDE_DEPTH}"))
            continue
        if not os.path.isfile(apath):
            problems.append(smap.problem(("include", i), f"included file '{inc}' not found "
                                                         f"(looked in {os.path.relpath(base)})"))
            continue
        sub, sub_smap, sub_problems = _load_include(path)
        problems.extend(sub_problems)
        if sub_problems:
            continue
        _collect_includes(sub, sub_smap, os.path.dirname(apath), templates, origin,
                          problems, stack + [apath])
        _add_templates(sub, sub_smap, templates, origin, problems)
