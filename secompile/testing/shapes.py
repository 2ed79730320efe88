"""`check_shapes(spec)`: the IR's shapes are the shapes torch computes, at every node.

The analytic counts (MACs, parameters, activation memory) are computed from the IR's shapes, so
an IR shape that differs from what the lowered network computes makes every number wrong while
the forward still runs (an attention module that reshaped the tensor it was spliced on did just
that). This checks, for one spec:

- the IR verifier (`Graph.check`: every shape and weight re-derived from the op registry);
- in train and in eval mode, the output shape of every IR node as torch computes it
  (`trace_shapes`, the generated probe) equals the IR's shape of that node, and so does the
  element count of every module's output (forward hooks on all modules named by a node path).

Needs torch. Use it in your own property tests: `@given(specs()) def test(s): check_shapes(s)`.
"""
from __future__ import annotations

import math


class ShapeMismatch(AssertionError):
    """torch computed another shape than the IR records (listed per node)."""


def check_shapes(spec, *, batch: int = 2, seed: int = 0, modes=("train", "eval"),
                 **compile_kwargs) -> dict:
    """Verify the IR of `spec` and compare every node's shape with torch's, in each mode.
    -> {mode: number of nodes compared}; raises IRError or ShapeMismatch."""
    import torch

    import secompile
    from secompile.backends.torch.codegen import trace_shapes

    secompile.build_ir(spec, **compile_kwargs).check()
    model = secompile.compile(spec, seed=seed, **compile_kwargs)
    g = model.graph          # the graph it was lowered from (SE scale + add fused)
    g.check()
    x = torch.randn(batch, *g.input_shape, generator=torch.Generator().manual_seed(seed))
    compared = {}
    for mode in modes:
        model.train(mode == "train")
        hooked: dict = {}
        handles = [m.register_forward_hook(_recorder(name, hooked))
                   for name, m in model.named_modules() if name in g]
        try:
            with torch.no_grad():
                traced = trace_shapes(model, x)
                model(x)
        finally:
            for h in handles:
                h.remove()
        # a module may run on a view of its node's value (ECA's Conv1d on (N, 1, C)): a hook
        # compares element counts, the probe the exact shape
        wrong = [f"{p}: IR {g.shape(p)}, torch {got}" for p, got in sorted(traced.items())
                 if tuple(got) != tuple(g.shape(p))]
        wrong += [f"{p}: IR {g.shape(p)}, torch module output {got}"
                  for p, got in sorted(hooked.items()) if math.prod(got) != math.prod(g.shape(p))]
        missing = sorted(set(g.order) - {"input"} - set(traced))
        if wrong or missing:
            raise ShapeMismatch(f"{g.name} ({mode}): " + "; ".join(
                wrong[:10] + ([f"not traced: {missing[:10]}"] if missing else [])))
        compared[mode] = len(traced) + len(hooked)
    return compared


def _recorder(name: str, into: dict):
    def hook(module, inputs, output):
        if hasattr(output, "shape"):
            into[name] = tuple(output.shape[1:])
    return hook


__all__ = ["check_shapes", "ShapeMismatch"]
