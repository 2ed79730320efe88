"""The properties over language-v2 specs (`specs(v2=True)`: vars, derived parameters,
make_divisible, `when`, `skip: auto`, drop_path over per-block names, gate templates, attention
modules as layers and as SE rules, the Selective Kernel select merge): shapes, params == numel,
conv/linear MACs == FlopCounterMode, ONNX == torch, SE idempotence and removal, YAML round trip,
the generator's block model, and the oracle's parameter count of each attention module."""
import pytest
import yaml
from helpers import counts, strip_se
from hypothesis import given
from hypothesis import strategies as st
from profiles import scaled
from test_attention import check

import secompile
from secompile.frontend import attention_modules
from secompile.passes import insert_se
from secompile.testing import mutations, specs
from secompile.testing.strategies import networks_with_model
from secompile.testing.v2 import gate_template, predicted_module_params

pytest.importorskip("onnxruntime")
SMALL = dict(v2=True, max_width=16, input_size=(6, 16))


@scaled(0.5)
@given(specs(**SMALL))
def test_v2_compile_shapes_params_macs_and_onnx(spec):
    check(spec)


@scaled(0.5)
@given(networks_with_model(**SMALL))
def test_v2_generator_model_agrees_with_the_ir(net):
    g = secompile.build_ir(net.spec, se=False)
    for b in net.blocks:
        comp = g.blocks[b.path]
        assert g.shape(comp.input)[0] == b.in_c, b.path
        assert g.shape(comp.output)[0] == b.out_c, b.path
        assert comp.kind == b.kind and comp.template == b.template, b.path
        if b.kind == "residual":
            assert g.shape(comp.branch_out)[0] == b.branch_c, b.path
    scopes = {p.rsplit(".", k)[0] for p in g.order for k in range(0, p.count(".") + 1)}
    assert set(net.tracked) <= scopes


@scaled(0.5)
@given(specs(se=True, **SMALL))
def test_v2_se_rules_are_idempotent_and_removable(spec):
    loaded = secompile.load_spec(spec)
    once = secompile.build_ir(loaded)
    twice = insert_se(once, loaded.data["se"], loaded.smap, modules=attention_modules(loaded))
    assert twice.structural_hash() == once.structural_hash()
    base = secompile.build_ir({k: v for k, v in spec.items() if k != "se"})
    assert secompile.build_ir(spec, se=False).structural_hash() == base.structural_hash()
    stripped, want = strip_se(once), base.to_dict()
    assert stripped["output"] == want["output"] and stripped["nodes"] == want["nodes"]


@scaled(0.5)
@given(specs(**SMALL), st.sampled_from([None, False, True]), st.booleans())
def test_v2_yaml_round_trip(spec, flow, sort_keys):
    want = secompile.build_ir(spec).structural_hash()
    text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=flow, width=40)
    assert secompile.build_ir(text).structural_hash() == want


class _G:
    """Just enough of the generator for `gate_template`."""

    def __init__(self, draw):
        self.draw, self.templates = draw, {}

    def pick(self, options):
        return self.draw(st.sampled_from(list(options)))


RULES = [{"module": "se", "reduction": 1}, {"module": "se", "reduction": 1, "divisor": 8},
         {"reduction": 1, "divisor": 4, "round_limit": 0.9, "bias": False, "act": "silu"},
         {"channels": "max(1, $block_in // 4)"}, {"channels": "max(1, $in_channels // 4)"},
         {"module": "effective_se"}, {"module": "eca"}, {"module": "eca", "kernel": 3},
         {"module": "cbam", "reduction": 2}, {"module": "cbam", "kernel": 3}, {"module": "gate"},
         {"module": "gate", "bias": False, "kernel": 5, "reduction": 1}]


@scaled(0.5)
@given(st.data())
def test_v2_module_parameters_follow_the_oracle(data):
    """SE on every block's output adds what oracle.module_params says, module by module."""
    spec = data.draw(specs(se=False, head=False, **SMALL), label="spec")
    rule = dict(data.draw(st.sampled_from(RULES), label="rule"))
    if rule.get("module") == "gate":
        g = _G(data.draw)
        rule["module"] = gate_template(g)
        form = rule["module"][len("gate_"):]
        keep = {"channel": ("bias",), "mlp": ("bias", "reduction"), "spatial": ("kernel",)}[form]
        rule = {k: v for k, v in rule.items() if k == "module" or k in keep}
        spec = {**spec, "blocks": {**spec.get("blocks", {}), **g.templates}}
    base = secompile.build_ir(spec)
    every = {"where": {"stages": "all"}, "position": "post", **rule}
    with_rule = secompile.build_ir({**spec, "se": [every]})
    want = 0
    for b in base.blocks.values():
        c, block_in = base.shape(b.output)[0], base.shape(b.input)[0]
        want += predicted_module_params(rule, c, block_in)
    assert counts(with_rule).total.params - counts(base).total.params == want


@scaled(0.5)
@given(specs(max_stages=2, **SMALL).flatmap(lambda s: st.tuples(st.just(s), mutations(s))))
def test_v2_mutations_compile_or_raise_spec_error(pair):
    spec, variant = pair
    try:
        g = secompile.build_ir(variant)
    except secompile.SpecError:
        return
    model = secompile.compile(variant)
    assert sum(p.numel() for p in model.parameters()) == counts(g).total.params
