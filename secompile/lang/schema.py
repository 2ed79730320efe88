"""The JSON Schema of the spec language (v1) and its validation with located messages.

The schema checks structure and types; semantic checks (shapes, groups, selectors)
happen while the IR is built. `secompile schema` prints SCHEMA as JSON, and the same
document is shipped as `schema.json` for editors (yaml-language-server). A valid document is
accepted by quickcheck.py without importing jsonschema; jsonschema words every problem.

Over 400 lines: two thirds are the schema itself (data), kept whole so it reads as the grammar.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import Problem, did_you_mean
from .loader import SourceMap
from .quickcheck import accepts

EXPR = {"type": "string", "pattern": r"\$", "x-expect": "a $-expression"}
INT = {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/expr"}],
       "x-expect": "an integer or a $-expression"}
NUM = {"anyOf": [{"type": "number"}, {"$ref": "#/$defs/expr"}],
       "x-expect": "a number or a $-expression"}
BOOL = {"anyOf": [{"type": "boolean"}, {"$ref": "#/$defs/expr"}],
        "x-expect": "true, false or a $-expression"}
PAIR = {"anyOf": [{"$ref": "#/$defs/int"},
                  {"type": "array", "items": {"$ref": "#/$defs/int"},
                   "minItems": 2, "maxItems": 2}],
        "x-expect": "an integer, a pair [h, w] or a $-expression"}
# Generated from the op registry (secompile/ir/ops.py) by `python -m secompile.ir.schema_gen`:
# this layer sits below the IR and does not import it.
OP_ENUMS = json.loads((Path(__file__).with_name("op_enums.json")).read_text())
ACTS = OP_ENUMS["activations"] + ["none"]


def _obj(props: dict, required=(), extra=False, **kw) -> dict:
    d = {"type": "object", "properties": props, "additionalProperties": extra, **kw}
    if required:
        d["required"] = list(required)
    return d


def _enum_or_expr(values, what):
    return {"anyOf": [{"enum": values}, {"$ref": "#/$defs/expr"}],
            "x-expect": f"{what} ({', '.join(map(str, values))}) or a $-expression"}


CONV = _obj({
    "out": {"$ref": "#/$defs/int", "description": "output channels"},
    "kernel": {"$ref": "#/$defs/pair"},
    "stride": {"$ref": "#/$defs/pair"},
    "padding": {"anyOf": [{"$ref": "#/$defs/pair"}, {"enum": ["same", "valid"]}],
                "x-expect": "an integer, a pair, 'same', 'valid' or a $-expression",
                "description": "'same' (default: kernel // 2 on each side) or 'valid' (0)"},
    "dilation": {"$ref": "#/$defs/pair"},
    "groups": {"$ref": "#/$defs/int"},
    "bias": {"$ref": "#/$defs/bool", "description": "default: true when norm is none"},
    "norm": _enum_or_expr(["bn", "none"], "a norm"),
    "act": _enum_or_expr(ACTS, "an activation"),
}, required=["out"],
            description="convolution + BatchNorm + activation (relu unless act says otherwise)")

POOL = _obj({"kernel": {"$ref": "#/$defs/pair"}, "stride": {"$ref": "#/$defs/pair"},
             "padding": {"$ref": "#/$defs/pair"}, "ceil_mode": {"$ref": "#/$defs/bool"},
             "count_include_pad": {"$ref": "#/$defs/bool"}}, required=["kernel"])
EMPTY = {"anyOf": [_obj({}), {"type": "null"}], "x-expect": "{} (no attributes)"}

# Op layers: kind -> attribute schema. Block composites are added below.
OP_LAYERS = {
    "conv": CONV,
    "bn": {"anyOf": [_obj({"eps": {"type": "number"}, "momentum": {"type": "number"}}),
                     {"type": "null"}]},
    "maxpool": POOL,
    "avgpool": POOL,
    "global_avgpool": EMPTY,
    "global_maxpool": EMPTY,
    "flatten": EMPTY,
    "linear": _obj({"out": {"$ref": "#/$defs/int"}, "bias": {"$ref": "#/$defs/bool"}},
                   required=["out"]),
    "dropout": _obj({"p": {"$ref": "#/$defs/num"}}),
    "channel_shuffle": _obj({"groups": {"$ref": "#/$defs/int"}}, required=["groups"]),
    "identity": EMPTY,
    **{a: EMPTY for a in ACTS if a != "none"},
    # attention building blocks (ECA, CBAM, Selective Kernel)
    "channel_conv": _obj({"kernel": {"$ref": "#/$defs/int"}, "padding": {"$ref": "#/$defs/int"}},
                         required=["kernel"], description="ECA: Conv1d(1, 1, kernel) across the "
                         "pooled channels, padding (kernel - 1) // 2 unless given"),
    "dual_pool": EMPTY,      # (C, H, W) -> (C, 2, 1): [mean ; max] over H, W
    "spatial_sum": EMPTY,    # (C, h, w) -> (C, 1, 1)
    "channel_pool": EMPTY,   # (C, H, W) -> (2, H, W): [mean ; max] over C
    "channel_slice": _obj({"start": {"$ref": "#/$defs/int"}, "size": {"$ref": "#/$defs/int"}},
                          required=["start", "size"], description="channels [start, start + size)"),
    "drop_path": _obj({"p": {"$ref": "#/$defs/num"}}, required=["p"],
                      description="per-sample stochastic depth (training only)"),
    # global context, split attention, layer scale (issue 22)
    "softmax": _obj({"axis": _enum_or_expr(OP_ENUMS["softmax_axes"], "an axis")},
                    description="softmax over the channels or over the H x W positions"),
    "layernorm": {"anyOf": [_obj({"eps": {"$ref": "#/$defs/num"}}), {"type": "null"}],
                  "x-expect": "{eps: E} or nothing",
                  "description": "LayerNorm over the channels at each position (LayerNorm2d)"},
    "attn_pool": _obj({"weights": {"$ref": "#/$defs/layers"}}, required=["weights"],
                      description="sum over positions of x * w, w = the layers on x: (1, H, W)"),
    "layer_scale": {"anyOf": [_obj({"init": {"$ref": "#/$defs/num"}}), {"type": "null"}],
                    "x-expect": "{init: V} or nothing",
                    "description": "learned per-channel scale (gamma starts at init)"},
    "split_sum": _obj({"parts": {"$ref": "#/$defs/int"}}, required=["parts"],
                      description="(P * C, H, W) -> (C, H, W): the sum of the P channel splits"),
    # raw single-node layers of attention templates: language v2
    "conv2d": _obj({k: v for k, v in CONV["properties"].items() if k not in ("norm", "act")},
                   required=["out"],
                   description="one bare convolution (no BN, no activation; bias default true)"),
    "act": _enum_or_expr(OP_ENUMS["activations"], "an activation"),
    "global_pool": {"anyOf": [_obj({"mode": _enum_or_expr(OP_ENUMS["pool_modes"], "a pool mode"),
                                    "keepdim": {"$ref": "#/$defs/bool"}}), {"type": "null"}],
                    "x-expect": "{mode: avg|max, keepdim: true|false}",
                    "description": "global pooling to (C, 1, 1) (keepdim false: to a vector)"},
}
SIMPLE_KINDS = sorted(k for k, v in OP_LAYERS.items() if v is EMPTY or k == "bn")

RESIDUAL = _obj({
    "branch": {"allOf": [{"$ref": "#/$defs/layers"}, {"minItems": 1}],
               "description": "at least one layer ([identity] for x + x)"},
    "shortcut": {"anyOf": [{"enum": ["auto", "identity"]}, {"$ref": "#/$defs/layers"},
                           _obj({"when": {"enum": ["auto", "always"]},
                                 "layers": {"$ref": "#/$defs/layers"}},
                                required=["layers"])],
                 "x-expect": "'auto', 'identity', a list of layers or {when, layers}"},
    "skip": {"anyOf": [{"const": "auto"}, {"$ref": "#/$defs/bool"}],
             "x-expect": "'auto', true, false or a $-expression",
             "description": "an identity skip only where the branch keeps the shape (auto); "
                            "no merge without it"},
    "merge": _enum_or_expr(["add", "concat", "partial_add"], "a merge"),
    "scale": {"$ref": "#/$defs/num",
              "description": "residual scaling: out = shortcut + scale * branch"},
    "post": {"$ref": "#/$defs/layers"},
}, required=["branch"])

PARALLEL = _obj({
    "branches": {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/layers"}, "minItems": 1},
                           {"type": "object", "additionalProperties": {"$ref": "#/$defs/layers"},
                            "minProperties": 1}],
                 "x-expect": "a list of layer lists or a mapping name -> layer list"},
    "merge": {"anyOf": [{"enum": ["concat", "add"]}, {"$ref": "#/$defs/expr"},
                        {"type": "object", "properties": {"select": {"type": "string"}},
                         "required": ["select"], "additionalProperties": True}],
              "x-expect": "a merge (concat, add), a $-expression or {select: TEMPLATE, ...}",
              "description": "{select: T, ...T's parameters}: Selective Kernel merge, T on the "
                             "branches' sum gives the logits"},
    "post": {"$ref": "#/$defs/layers"},
}, required=["branches"])

BLOCK_INSTANCE = {"type": "object", "properties": {"template": {"type": "string"}},
                  "required": ["template"], "additionalProperties": True,
                  "description": "an instance of a block template: template name "
                                 "and its parameters"}

LAYER = {"anyOf": [{"enum": SIMPLE_KINDS},
                   _obj({**OP_LAYERS, "residual": {"$ref": "#/$defs/residual"},
                         "parallel": {"$ref": "#/$defs/parallel"},
                         "block": {"$ref": "#/$defs/block"},
                         "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                         "when": {"$ref": "#/$defs/bool",
                                  "description": "false removes the layer"}},
                        minProperties=1)],
         "x-expect": "a layer: a mapping {kind: attributes} or a bare kind name"}

SELECTOR = _obj({
    "stages": {"anyOf": [{"const": "all"}, {"type": "integer"},
                         {"type": "array", "items": {"type": "integer"}}],
               "x-expect": "'all', an index or a list of indices"},
    "blocks": {"anyOf": [{"const": "all"}, {"type": "integer"},
                         {"type": "array", "items": {"type": "integer"}},
                         {"type": "string"}],
               "x-expect": "'all', an index, a list of indices or a template-name glob"},
    "path": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
             "x-expect": "a path glob or a list of them"},
    "name": {"type": "string", "description": "glob over block/stage names"},
})

RULE_KEYS = ("where", "exclude", "position", "module", "when")   # the rest: module parameters
_SE_RULE_PROPS = {
    "when": {"$ref": "#/$defs/bool", "description": "false leaves the rule out (a $-expression "
                                                    "over the network parameters)"},
    "where": {"$ref": "#/$defs/selector"},
    "exclude": {"$ref": "#/$defs/selector"},
    "position": {"anyOf": [{"enum": ["standard", "pre", "post", "identity", "after", "none"]},
                           _obj({"after": {"type": "string"}}, required=["after"])],
                 "x-expect": "standard, pre, post, identity, after, none or {after: PATH}"},
    "module": {"type": "string", "description": "the attention template to insert (default se); "
                                                "the rule's other keys are its parameters"},
    # the parameters of the default module `se` (specs/blocks/attention.yaml)
    "reduction": {"anyOf": [{"type": "integer", "minimum": 1}, {"$ref": "#/$defs/expr"}],
                  "x-expect": "a positive integer or a $-expression"},
    "channels": {"anyOf": [{"type": "integer", "minimum": 1}, {"$ref": "#/$defs/expr"}],
                 "x-expect": "a positive integer or a $-expression",
                 "description": "reduced channels, overrides reduction"},
    "divisor": {"$ref": "#/$defs/int",
                "description": "round the width with make_divisible (1: floor)"},
    "round_limit": {"$ref": "#/$defs/num"},
    "act": _enum_or_expr(OP_ENUMS["activations"], "an activation"),
    "squeeze": {"enum": OP_ENUMS["pool_modes"]},
    "gate": {"enum": ["sigmoid", "hard_sigmoid"]},
    "bias": {"type": "boolean"},
}
# With `module:` the other keys are that template's parameters (checked against it while the
# module is inserted, located at the rule); without it, the default se's keys only.
SE_RULE = {"type": "object", "properties": _SE_RULE_PROPS, "required": ["where"],
           "if": {"required": ["module"]},
           "then": {"properties": {k: _SE_RULE_PROPS[k] for k in RULE_KEYS}},
           "else": _obj({k: True for k in _SE_RULE_PROPS})}

_SCALARS = ["integer", "number", "string", "boolean"]
TEMPLATE = _obj({
    "description": {"type": "string"},
    "params": {"type": "object", "additionalProperties": {"type": _SCALARS},
               "description": "name -> default (a $-expression over earlier parameters and "
                              "in_channels derives it) or a type name for a required one"},
    "vars": {"type": "object", "additionalProperties": {"type": _SCALARS},
             "description": "derived names, evaluated in order after the parameters"},
    "gate": {"$ref": "#/$defs/layers",
             "description": "out = x * f(x), f the layers; node <scope>.scale"},
    "context": {"$ref": "#/$defs/layers",
                "description": "attention modules: computed once on x; gate/select/add read it"},
    "add": {"$ref": "#/$defs/layers",
            "description": "attention modules: out + g(context), broadcast; node <scope>.add"},
    "select": _obj({"parts": {"$ref": "#/$defs/int"}, "groups": {"$ref": "#/$defs/int"},
                    "layers": {"$ref": "#/$defs/layers"}}, required=["layers"],
                   description="split attention: softmax over the parts of the logits (the "
                               "layers), the weighted sum of x's parts; node <scope>.select"),
    "layers": {"$ref": "#/$defs/layers"},
    "residual": {"$ref": "#/$defs/residual"},
    "parallel": {"$ref": "#/$defs/parallel"},
})

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
STAGE = {"type": "object", "additionalProperties": True,
         "properties": {"block": {"type": "string"},
                        "repeat": {"anyOf": [{"type": "integer", "minimum": 1},
                                             {"$ref": "#/$defs/expr"}],
                                   "x-expect": "a positive integer or a $-expression"},
                        "name": {"type": "string", "pattern": IDENT},
                        "layers": {"$ref": "#/$defs/layers"},
                        "blocks": {"type": "array", "minItems": 1,
                                   "items": {"type": "object", "additionalProperties": True},
                                   "x-expect": "a list of per-block settings (mappings)",
                                   "description": "per-block settings: entry j overrides the "
                                                  "stage's template parameters for block j"},
                        "foreach": {"$ref": "#/$defs/expr",
                                    "description": "a list-valued $-expression: one stage per "
                                                   "entry, the entry bound to the name in `as`"},
                        "as": {"type": "string", "pattern": IDENT},
                        "when": {"$ref": "#/$defs/bool",
                                 "description": "false leaves the stage out"}},
         "description": "either {block, repeat, stride, ...template params} or {layers: [...]}"}

# Network parameters: name -> default; the default's type is the parameter's type.
PARAMS = {"type": "object", "propertyNames": {"pattern": IDENT},
          "additionalProperties": {"type": ["integer", "number", "string", "boolean"]},
          "description": "network parameters: name -> default, visible to every expression "
                         "as $name; set with --set params.NAME=V or compile(params=...)"}
VARIANT = _obj({"params": {"type": "object", "propertyNames": {"pattern": IDENT},
                           "additionalProperties": {"type": ["integer", "number", "string",
                                                             "boolean"]}},
                "input": _obj({"size": {"anyOf": [{"type": "integer", "minimum": 1},
                                                  {"type": "array",
                                                   "items": {"type": "integer", "minimum": 1},
                                                   "minItems": 2, "maxItems": 2}],
                                        "x-expect": "a positive integer or a pair [h, w]"}}),
                "description": {"type": "string"}},
               description="a named size of the family: its parameters and input size")

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://secompile.dev/schema/spec-v1.json",
    "title": "secompile network spec (v1)",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "stages"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "version": {"const": 1},
        "include": {"type": "array", "items": {"type": "string"}},
        "input": _obj({"channels": {"type": "integer", "minimum": 1},
                       "size": {"anyOf": [{"type": "integer", "minimum": 1},
                                          {"type": "array",
                                           "items": {"type": "integer", "minimum": 1},
                                           "minItems": 2, "maxItems": 2}],
                                "x-expect": "a positive integer or a pair [h, w]"}},
                      required=["channels", "size"]),
        "blocks": {"type": "object", "additionalProperties": {"$ref": "#/$defs/template"}},
        "stem": {"$ref": "#/$defs/layers"},
        "stages": {"type": "array", "items": {"$ref": "#/$defs/stage"}, "minItems": 1},
        "head": {"$ref": "#/$defs/layers"},
        "se": {"type": "array", "items": {"$ref": "#/$defs/se_rule"}},
        "params": PARAMS,
        "variants": {"type": "object", "propertyNames": {"pattern": IDENT},
                     "additionalProperties": VARIANT,
                     "description": "name -> {params, input}: each a zoo name"},
    },
    "$defs": {
        "expr": EXPR, "int": INT, "num": NUM, "bool": BOOL, "pair": PAIR,
        "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}},
        "layer": LAYER, "residual": RESIDUAL, "parallel": PARALLEL, "block": BLOCK_INSTANCE,
        "template": TEMPLATE, "stage": STAGE, "selector": SELECTOR, "se_rule": SE_RULE,
    },
}

# An included file holds templates (and may include more).
INCLUDE_SCHEMA = {**SCHEMA, "required": [], "title": "secompile block-template file",
                  "properties": {k: SCHEMA["properties"][k]
                                 for k in ("include", "blocks", "description", "version")}}

# The jsonschema validator of a schema, built on first need: its import is ~70 ms of a ~250 ms
# `secompile count`, and a valid document never needs it (quickcheck.accepts answers yes).
_COMPILED: dict[int, tuple[dict, object]] = {}      # id(schema) -> (schema, validator)


def _compiled(schema: dict):
    if (hit := _COMPILED.get(id(schema))) is not None and hit[0] is schema:
        return hit[1]
    import jsonschema

    # JSON Schema counts 2.0 as an integer; a spec does not (`repeat: 2.0` would reach range() as
    # a float, `size: 32.0` would give float shapes). Integral values from $-expressions are
    # still ints. (quickcheck.py follows the same rule.)
    validator = jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
            "integer", lambda checker, x: isinstance(x, int) and not isinstance(x, bool)))(schema)
    _COMPILED[id(schema)] = (schema, validator)
    return validator


# Layer kinds this program registered from Python (ir/plugins.py): kind -> attribute schema.
# Only this process's validation sees them; SCHEMA (`secompile schema`, schema.json) does not.
_PLUGIN_LAYERS: dict[str, dict] = {}
_PLUGIN_SCHEMAS: dict[bool, dict] = {}
_GENERATION = [0]   # changes with every registration: caches of validation results key on it


def generation() -> int:
    """A number that changes whenever the accepted layer kinds change (plug-ins)."""
    return _GENERATION[0]


def layer_kinds() -> set[str]:
    """Every layer kind the language accepts here (built in and registered)."""
    return set(OP_LAYERS) | set(_PLUGIN_LAYERS) | {"residual", "parallel", "block"}


def register_layer(kind: str, attrs_schema: dict) -> None:
    _PLUGIN_LAYERS[kind] = attrs_schema
    _PLUGIN_SCHEMAS.clear()
    _GENERATION[0] += 1


def unregister_layer(kind: str) -> None:
    _PLUGIN_LAYERS.pop(kind, None)
    _PLUGIN_SCHEMAS.clear()
    _GENERATION[0] += 1


def _schema(include: bool) -> dict:
    """The schema in force: SCHEMA (or INCLUDE_SCHEMA), with this program's plug-in layers."""
    base = INCLUDE_SCHEMA if include else SCHEMA
    if not _PLUGIN_LAYERS:
        return base
    if include not in _PLUGIN_SCHEMAS:
        layer = LAYER["anyOf"][1]
        bare = sorted(k for k, v in _PLUGIN_LAYERS.items() if "anyOf" in v)   # no required attrs
        extended = {"anyOf": [{"enum": SIMPLE_KINDS + bare},
                              {**layer, "properties": {**layer["properties"], **_PLUGIN_LAYERS}}],
                    "x-expect": LAYER["x-expect"]}
        _PLUGIN_SCHEMAS[include] = {**base, "$defs": {**base["$defs"], "layer": extended}}
    return _PLUGIN_SCHEMAS[include]


def _describe(value) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _choices(schema) -> list:
    """The string constants a value could have been (for 'did you mean')."""
    out = []
    for sub in [schema] + list(schema.get("anyOf", ())):
        out += [v for v in list(sub.get("enum", ())) + ([sub["const"]] if "const" in sub else [])
                if isinstance(v, str)]
    return out


def _leaves(err) -> list:
    """For anyOf errors, the errors of the branch that explains the problem best (all of them:
    a layer with a misspelt key and a wrong value reports both)."""
    if err.validator in ("anyOf", "oneOf") and err.context:
        # A branch of the right JSON type that failed deeper is the informative one.
        # Errors saying "wrong type for this branch" only tell that another branch was meant.
        relevant = [e for e in err.context
                    if len(e.absolute_path) > len(err.absolute_path)
                    or e.validator not in ("type", "enum", "const", "pattern",
                                           "anyOf", "oneOf", "$ref")]
        if relevant:
            best = max(relevant, key=lambda e: len(e.absolute_path))
            branch = [e for e in relevant
                      if e.relative_schema_path[0] == best.relative_schema_path[0]]
            return [leaf for e in branch for leaf in _leaves(e)]
    return [err]


def _messages(err, smap: SourceMap) -> list[tuple[tuple, Problem, bool]]:
    """-> [(raw spec path, located problem, whether it is an unknown key)]: one per unknown key."""
    out = []
    for leaf in _leaves(err):
        path = tuple(leaf.absolute_path)
        if leaf.validator == "additionalProperties":
            allowed = list(leaf.schema.get("properties", {}))
            out += [(path + (key,), smap.problem(path + (key,), f"unknown key '{key}'"
                                                 f"{did_you_mean(key, allowed)}", key=True), True)
                    for key in leaf.instance if key not in allowed]
        else:
            out.append((path, _message(leaf, smap, path), False))
    return out


def _message(err, smap: SourceMap, path: tuple) -> Problem:
    v, inst = err.validator, err.instance
    expect = err.schema.get("x-expect") if isinstance(err.schema, dict) else None
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return smap.problem(path, f"missing required key '{missing}'")
    if expect:
        hint = did_you_mean(inst, _choices(err.schema)) if isinstance(inst, str) else ""
        return smap.problem(path, f"expected {expect}, got {_describe(inst)}{hint}")
    if v == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return smap.problem(path, f"expected {want}, got {_describe(inst)}")
    if v == "enum":
        return smap.problem(path,
                            f"{inst!r} is not one of {', '.join(map(str, err.validator_value))}"
                            f"{did_you_mean(inst, err.validator_value)}")
    if v == "const":
        return smap.problem(path, f"expected {err.validator_value!r}, got {_describe(inst)}")
    if v == "minimum":
        return smap.problem(path, f"must be >= {err.validator_value}, got {inst}")
    if v == "minItems":
        return smap.problem(path, f"needs at least {err.validator_value} item(s)")
    if v == "maxItems":
        return smap.problem(path, f"takes at most {err.validator_value} items")
    if v == "minProperties":
        return smap.problem(path, "must not be empty")
    if v == "pattern":
        return smap.problem(path, f"{inst!r} is not a valid name (letters, digits and _, not "
                                  f"starting with a digit)")
    return smap.problem(path, err.message)


def validate(data, smap: SourceMap, include: bool = False) -> list[Problem]:
    """All schema problems of a loaded document, located (every unknown key of a mapping)."""
    return [p for _, p, _ in located(data, smap, include)]


def located(data, smap: SourceMap, include: bool = False) -> list[tuple[tuple, Problem, bool]]:
    """All schema problems with their raw spec paths: [(path, problem, is an unknown key)]."""
    schema = _schema(include)
    if accepts(data, schema):
        return []
    return [m for e in _compiled(schema).iter_errors(data) for m in _messages(e, smap)]
