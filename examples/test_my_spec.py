"""Property-test your own spec: every variation of it must compile and agree with its analysis.

    pytest examples/test_my_spec.py
"""
from pathlib import Path

import torch
import yaml
from hypothesis import given, settings

import secompile
from secompile.analysis.counts import Counts
from secompile.testing import mutations

SPECS = Path(__file__).resolve().parent.parent / "specs"      # where blocks/resnet.yaml lives
MY_SPEC = yaml.safe_load("""
name: tiny_se_resnext
include: [blocks/resnet.yaml]
input: {channels: 3, size: 32}
stem: [{name: conv1, conv: {out: 16, kernel: 3}}]
stages:
  - {block: basic, repeat: 2, out: 16}
  - {block: bottleneck, repeat: 2, out: 64, width: 16, stride: 2, cardinality: 4, stride_at: conv2}
head: [global_avgpool, {name: fc, linear: {out: 10}}]
se: [{where: {stages: all}, reduction: 4}]
""")


@settings(max_examples=25, deadline=None)
@given(mutations(MY_SPEC))          # wider, bigger, deeper, other SE options...
def test_my_spec_variants(spec):
    g = secompile.build_ir(spec, base_dir=str(SPECS))
    model = secompile.compile(spec, base_dir=str(SPECS), seed=0).eval()
    with torch.no_grad():
        y = model(torch.randn(2, *g.input_shape))
    assert tuple(y.shape) == (2, *g.shape(g.output))
    assert sum(p.numel() for p in model.parameters()) == Counts(g).total.params
