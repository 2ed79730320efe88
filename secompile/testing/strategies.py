"""Public hypothesis strategies over secompile specs.

    from secompile.testing import specs, invalid_specs, mutations

    @given(specs(max_params=50_000, se=True))
    def test_compiles(spec): secompile.compile(spec)

See docs/testing.md.
"""
from __future__ import annotations

from hypothesis import strategies as st

from .families import family_rewrite
from .generator import BLOCK_KINDS, Constraints, networks
from .invalid import InvalidSpec, invalid_specs
from .mutations import mutations
from .plugin_ops import check_ops


def specs(*, max_params: int | None = None, max_stages: int = 3, max_repeat: int = 2,
          max_nesting: int = 2, input_size: tuple = (8, 40), input_channels: tuple = (1, 4),
          max_width: int = 32, block_kinds=BLOCK_KINDS, se: bool | None = None,
          head: bool | None = None, include_dir: str | None = None, names: str = "safe",
          attention: bool = False, v2: bool = False, v3: bool = False,
          ops=(), families: bool = False) -> st.SearchStrategy:
    """Valid specs: plain dicts ready for `yaml.safe_dump` and `secompile.compile()`.

    - max_params: upper bound on the network's parameters (checked with secompile's analytic
      count; networks over it are filtered out, so keep it above a few thousand).
    - max_stages, max_repeat: stages and blocks per stage; max_nesting: residual/parallel/block
      composites inside one another.
    - input_size (lo, hi) for each side, input_channels (lo, hi); max_width: channel counts drawn
      (a DenseNet stage may grow past it).
    - block_kinds: any of basic, bottleneck, resnext, mixed (Inception-style parallel), preact,
      dense (concat residual), shuffle, nested (templates inside templates), random (one-off
      template with $-expressions), layers (a plain layer stage).
    - se: True (at least one SE rule), False (none), None (either).
    - head: True (always a head), False (never), None (either).
    - include_dir: a folder holding blocks/resnet.yaml (the shipped `specs/`): the spec then
      includes that file by absolute path for `basic` and `bottleneck` instead of defining them
      under `blocks:`. Other templates are always defined inline, so every spec stands alone.
    - names: 'safe', or 'all' to also name layers after torch.nn.Module attributes
      ('training', 'forward', 'to', ...).
    - attention: also draw the attention layers (channel_conv, dual_pool, spatial_sum,
      channel_pool, channel_slice, drop_path) inside layer lists.
    - v2: also draw language-v2 stages (`mbconv`: vars, derived params, make_divisible, `when`,
      `skip: auto`, drop_path over per-block names, attention modules and gate templates as
      layers; `sk`: the Selective Kernel select merge) and SE rules naming attention modules
      (se options, effective_se, eca, cbam, gate templates of the spec). Off by default so the
      ci profile's derandomised examples of the other properties stay what they were.
    - v3: also draw the issue-22 ops and modules (softmax, layernorm, layer_scale, gelu,
      split_sum, attn_pool, partial_add residuals, global_context and split_attention as layers)
      and SE rules naming global_context (v3.py). Off by default, as v2.
    - ops: plug-in ops this program registered (`secompile.register_op`) to draw as layers:
      names, or a mapping name -> {attribute: strategy} for attributes the declarations
      cannot draw (a free string) or should draw from fewer values (plugin_ops.py).
    - families: write the drawn network with the family constructs (`families.family_rewrite`:
      network parameters, `repeat` expressions, `blocks:` lists, `$block_index`, `foreach:` over
      `regnet_stages`, stage `when:`, `variants:`), the same network either way. Off by default
      for the same reason.
    """
    cons = Constraints(max_params=max_params, max_stages=max_stages, max_repeat=max_repeat,
                       max_nesting=max_nesting, input_size=tuple(input_size),
                       input_channels=tuple(input_channels), max_width=max_width,
                       block_kinds=tuple(block_kinds), se=se, head=head, include_dir=include_dir,
                       names=names, attention=attention, v2=v2, v3=v3,
                       ops=check_ops(ops))
    strategy = networks(cons).map(lambda net: net.spec)
    if families:
        strategy = strategy.flatmap(family_rewrite)
    if max_params is not None:
        strategy = strategy.filter(lambda spec: params_of(spec) <= max_params)
    return strategy


def networks_with_model(**constraints) -> st.SearchStrategy:
    """Like `specs`, but yields the generator's `Net` (spec, modelled blocks, named scopes)."""
    return networks(Constraints(**constraints))


def params_of(spec: dict) -> int:
    from ..analysis.counts import Counts
    from ..api import build_ir
    return Counts(build_ir(spec)).total.params


__all__ = ["specs", "invalid_specs", "mutations", "InvalidSpec", "networks_with_model", "params_of"]
