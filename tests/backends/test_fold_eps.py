"""BatchNorm folding uses each BN's own epsilon, in the torch inference module and in the ONNX
export (issue 19): with eps far from the default and small running variances, a fold with any
other eps is off by orders of magnitude more than the tolerance (the test measures that too, so
it cannot pass by accident)."""
import copy

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

import secompile
from secompile.api import to_onnx
from secompile.backends.torch.inference import optimize_for_inference

EPS_SPEC = """
name: eps_fold
input: {channels: 3, size: 8}
stages:
  - layers:
      - {name: c, conv: {out: 8, kernel: 3, norm: none, act: none, bias: false}}
      - {name: bn, bn: {eps: 0.25}}
      - relu
head:
  - {name: pool, global_avgpool: {}}
  - {name: fc, linear: {out: 6}}
  - {name: bn, bn: {eps: 0.5, momentum: 0.3}}
"""
TOL = 1e-5


def small_variance_stats(model, seed=0):
    """Random affine and running mean, running variances in [0.01, 0.05]: sqrt(var + eps) then
    hinges on eps."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.04 + 0.01)
    return bns


def test_fold_uses_each_bns_epsilon():
    model = secompile.compile(EPS_SPEC, seed=0).eval()
    bns = small_variance_stats(model)
    assert [(m.eps, m.momentum) for m in bns] == [(0.25, 0.1), (0.5, 0.3)]
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        wrong = copy.deepcopy(model)
        for m in wrong.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps = 1e-5
        assert (wrong(x) - ref).abs().max() > 1000 * TOL   # the eps matters here
    for onednn in (True, False):
        opt = optimize_for_inference(model, x, onednn=onednn)
        assert opt.report["bn_folded"] == 2
        with torch.no_grad():
            assert (opt(x) - ref).abs().max() <= TOL


def test_onnx_fold_uses_each_bns_epsilon():
    model = secompile.compile(EPS_SPEC, seed=0).eval()
    small_variance_stats(model)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x).numpy()
    for fold_bn in (False, True):
        om = to_onnx(EPS_SPEC, model, fold_bn=fold_bn)
        kinds = [n.op_type for n in om.graph.node]
        assert kinds.count("BatchNormalization") == (0 if fold_bn else 2)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(om.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        got = sess.run(["output"], {"input": x.numpy()})[0]
        assert np.abs(got - want).max() <= TOL, fold_bn
