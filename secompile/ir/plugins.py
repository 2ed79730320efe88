"""Plug-in ops: a program adds an IR op from Python, and its specs use it as a layer by name.

    import secompile
    secompile.register_op(
        "coord_attn", attrs={"reduction": 32, "min_channels": 8},
        shape=lambda a, ins: ins[0],                                  # -> output shape (C, H, W)
        weights=lambda a, ins: {"conv1.weight": (m, c, 1, 1), ...},  # state_dict names -> shapes
        macs=lambda a, ins, out: ...,
        torch=lambda a, ins: CoordAttention(...),                     # an nn.Module factory
        onnx=None, graphviz=("se", "coordinate attention"))

Registration is the program's own act (a spec never loads code): the op enters the registry
(`ops.OPS`, so counting, the verifier and the weight checks see it as a built-in one), its layer
kind enters this process's spec schema (`lang.schema.register_layer`; the shipped schema.json
is untouched) and the front end builds it with `layer_builder`. Backends look up the emitters
here; one that is missing is refused at export with the op's name (`require`). docs/extending.md.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..lang import schema as spec_schema
from . import ops

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_RESERVED = {"residual", "parallel", "block", "name", "when", "template"}


class PluginError(ValueError):
    """A registration refused, or a plug-in op a backend cannot lower (no emitter)."""


@dataclass(frozen=True)
class Attr:
    """One attribute of a plug-in op: its type (int, float, bool or str), default (`REQUIRED`
    when the spec must give it), allowed values and bounds."""

    type: type
    default: Any = ops.REQUIRED
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self):
        if self.type not in _TYPES:
            raise PluginError(f"attribute type {self.type!r}: use int, float, bool or str")

    def problem(self, value) -> str | None:
        """Why `value` is not acceptable, or None."""
        t = self.type
        ok = isinstance(value, t) and not (t is not bool and isinstance(value, bool))
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            return f"expected {_TYPES[t]}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"expected one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.minimum is not None and value < self.minimum:
            return f"must be >= {self.minimum}, got {value!r}"
        if self.maximum is not None and value > self.maximum:
            return f"must be <= {self.maximum}, got {value!r}"
        return None

    def json_schema(self) -> dict:
        """The attribute's schema in the spec language ($-expressions allowed, as everywhere)."""
        if self.choices is not None:
            return {"anyOf": [{"enum": list(self.choices)}, {"$ref": "#/$defs/expr"}],
                    "x-expect": f"one of {', '.join(map(str, self.choices))} or a $-expression"}
        ref = {int: "int", float: "num", bool: "bool"}.get(self.type)
        return {"$ref": f"#/$defs/{ref}"} if ref else {"type": "string"}


@dataclass(frozen=True)
class Buffer:
    """A tensor of the op's state that is not a parameter (BatchNorm's running statistics);
    `inference=False` for training-only counters (num_batches_tracked)."""

    shape: tuple
    inference: bool = True


def _attr(name: str, decl) -> Attr:
    if isinstance(decl, Attr):
        return decl
    if isinstance(decl, type):            # a type alone: the spec must give the value
        return Attr(decl)
    if type(decl) in _TYPES:              # a default: its type is the attribute's type
        return Attr(type(decl), decl)
    raise PluginError(f"attribute {name!r}: give a default (32, 0.5, True, 'avg'), a type "
                      f"(int, float, bool, str) or an Attr, not {decl!r}")


@dataclass(frozen=True)
class PluginOpDef(ops.OpDef):
    """A registered op: its tensors come from the `weights` rule, name -> shape or Buffer."""

    tensor_rule: Callable[[dict, list], dict] | None = None

    def _declared(self, a: dict, ins: list) -> dict:
        return dict(self.tensor_rule(a, ins)) if self.tensor_rule else {}

    def tensors(self, a: dict, ins: list, inference: bool = False) -> dict[str, tuple]:
        return {k: tuple(v.shape if isinstance(v, Buffer) else v)
                for k, v in self._declared(a, ins).items()
                if not (inference and isinstance(v, Buffer) and not v.inference)}

    def params(self, a: dict, ins: list) -> int:
        return sum(ops._prod(v) for v in self._declared(a, ins).values()
                   if not isinstance(v, Buffer))


@dataclass(frozen=True)
class Plugin:
    """Everything registered for one op."""

    name: str
    attrs: dict                                   # name -> Attr
    opdef: PluginOpDef
    torch: Callable                               # (attrs, input shapes) -> nn.Module
    onnx: Callable | None                         # (OnnxEmit) -> the output tensor's name
    graphviz: tuple                               # (colour family, title or (attrs, ins) -> str)
    owner: str                                    # the module that registered it
    layer: str = ""                               # the spec's layer kind

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if _REGISTRY.get(self.name) is self:
            unregister_op(self.name)


_REGISTRY: dict[str, Plugin] = {}


def register_op(name: str, *, attrs: dict | None = None,
                shape: Callable[[dict, list], tuple],
                weights: Callable[[dict, list], dict] | None = None,
                macs: Callable[[dict, list, tuple], int] | None = None,
                torch: Callable,
                onnx: Callable | None = None,
                graphviz: tuple | str | None = None,
                layer: str | None = None, fresh: bool = False,
                replace: bool = False) -> Plugin:
    """Add op `name` to this program's registry and layer kind `layer` (default: the name) to
    its spec language. Returns the registration, a context manager that unregisters on exit.

    - attrs: name -> a default (its type is the attribute's), a type (required) or an `Attr`.
    - shape(attrs, input_shapes) -> output shape; raise `ops.OpError` for inputs it refuses
      (reported at the spec's layer).
    - weights(attrs, input_shapes) -> {state_dict name: shape, or `Buffer(shape)`}: the torch
      module's tensors, relative to the node; parameters count, buffers do not.
    - macs(attrs, input_shapes, output_shape) -> multiply-adds (default 0).
    - torch(attrs, input_shapes) -> an nn.Module whose forward takes the node's input.
    - onnx(e) -> the tensor holding the value (e: backends.onnx.lowering.OnnxEmit); optional.
    - graphviz: (colour family, title) where the title is a string or (attrs, ins) -> str, or
      just the title; optional (default: a plain node titled by the name).
    - fresh: the torch module always returns a new tensor (never its input or a view of it).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise PluginError(f"op name {name!r}: lower-case letters, digits and _")
    layer = name if layer is None else layer
    if not isinstance(layer, str) or not _NAME.match(layer):
        raise PluginError(f"layer name {layer!r}: lower-case letters, digits and _")
    old = _REGISTRY.get(name)
    if old is None and name in ops.OPS:
        raise PluginError(f"op {name!r} is a built-in op; choose another name")
    if old is not None and not replace:
        raise PluginError(f"op {name!r} is already registered (by {old.owner}); pass "
                          "replace=True to replace it")
    taken = spec_schema.layer_kinds() - ({old.layer} if old is not None else set())
    if layer in taken or layer in _RESERVED:
        raise PluginError(f"layer kind {layer!r} exists in the spec language; pass layer=... "
                          "to name the op's layer")
    if not callable(shape) or not callable(torch):
        raise PluginError(f"op {name!r}: shape and torch are required callables")
    declared = {k: _attr(k, v) for k, v in (attrs or {}).items()}
    look = graphviz if isinstance(graphviz, tuple) else ("plain", graphviz or name)
    caller = inspect.currentframe().f_back
    owner = caller.f_globals.get("__name__", "?") if caller is not None else "?"
    opdef = PluginOpDef(name, shape, attrs={k: a.default for k, a in declared.items()},
                        macs=macs or (lambda a, ins, out: 0), fresh=fresh, tensor_rule=weights)
    plugin = Plugin(name, declared, opdef, torch, onnx, look, owner, layer)
    if old is not None:
        unregister_op(name)
    _REGISTRY[name] = plugin
    ops.OPS[name] = opdef
    spec_schema.register_layer(layer, _layer_schema(declared))
    return plugin


def unregister_op(name: str) -> None:
    """Remove a registered op (tests; a program that swaps implementations)."""
    plugin = _REGISTRY.pop(name, None)
    if plugin is None:
        raise PluginError(f"op {name!r} is not a registered plug-in op")
    ops.OPS.pop(name, None)
    spec_schema.unregister_layer(plugin.layer)


def registered() -> dict[str, Plugin]:
    """name -> registration, in registration order."""
    return dict(_REGISTRY)


def get(op: str) -> Plugin | None:
    return _REGISTRY.get(op)


def by_layer(kind: str) -> Plugin | None:
    return next((p for p in _REGISTRY.values() if p.layer == kind), None)


def require(op: str, backend: str, emitter) -> Any:
    """The plug-in's emitter for `backend`, or a PluginError saying how to give one."""
    plugin = _REGISTRY.get(op)
    if plugin is None:
        raise PluginError(f"op {op!r} is neither built in nor registered")
    if emitter is None:
        raise PluginError(f"op {op!r} (registered by {plugin.owner}) has no {backend} emitter; "
                          f"pass {backend.lower()}=... to register_op")
    return emitter


def _layer_schema(attrs: dict) -> dict:
    body = {"type": "object", "additionalProperties": False,
            "properties": {k: a.json_schema() for k, a in attrs.items()}}
    required = [k for k, a in attrs.items() if a.default is ops.REQUIRED]
    if required:
        body["required"] = required
        return body
    return {"anyOf": [body, {"type": "null"}], "x-expect": "a mapping of attributes or nothing"}


__all__ = ["register_op", "unregister_op", "registered", "Attr", "Buffer", "PluginError",
           "Plugin"]
