#!/usr/bin/env python
r"""Batch inference with a compiled network: a PyTorch checkpoint, an ONNX file, or both.

    python examples/infer.py --checkpoint runs/se_resnet20_cifar/best.pt --synthetic 256
    python examples/infer.py --checkpoint best.pt --export-onnx model.onnx  # weights -> ONNX
    python examples/infer.py --onnx model.onnx photos/ cat.jpg               # onnxruntime only
    python examples/infer.py --checkpoint best.pt --onnx model.onnx photos/  # same top-k?
    python examples/infer.py --spec specs/se_resnext50_tv.yaml \
        --checkpoint seresnext50_32x4d.pth img.jpg

A checkpoint of examples/train.py embeds its spec; any other state_dict (a timm or legacy
SENet checkpoint, a secompile state_dict) needs `--spec` and is mapped by
`secompile.load_weights`. Images (files or folders, read with Pillow) get the evaluation
preprocessing of the paper: short side resized to 256/224 of the input size, centre crop.
`--synthetic N` classifies N images of the training example's synthetic task instead and
reports the accuracy. With both backends the top-k of every image must agree (exit 1 if not).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import data as datasets  # noqa: E402

import secompile  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="*", help="image files or folders")
    p.add_argument("--checkpoint",
                   help="examples/train.py checkpoint, or any state_dict with --spec")
    p.add_argument("--spec", help="the network, when the checkpoint does not embed it")
    p.add_argument("--onnx", help="an ONNX file (run with onnxruntime)")
    p.add_argument("--export-onnx", metavar="FILE",
                   help="write the checkpoint's network as ONNX (secompile.to_onnx)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="classify N synthetic shapes")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true",
                   help="PyTorch in bf16 (CPU) / fp16 (CUDA) autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--quiet", action="store_true", help="summary only, no line per image")
    return p.parse_args(argv)


def load_model(args):
    """-> (model in eval mode, spec, class names or None, training seed)."""
    ck = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    spec = ck.get("spec") if isinstance(ck, dict) else None
    if args.spec:
        spec = args.spec
    if spec is None:
        raise SystemExit(f"{args.checkpoint} embeds no spec: give --spec")
    model = secompile.compile(spec)
    report = secompile.load_weights(model, ck)   # layout detected: ours, timm or legacy SENet
    if not args.quiet:
        print(report.__str__().splitlines()[0], file=sys.stderr)
    seed = ck.get("args", {}).get("seed", 0) if isinstance(ck, dict) else 0
    return model.eval(), spec, ck.get("classes") if isinstance(ck, dict) else None, seed


def onnx_session(path, device):
    import onnxruntime as ort
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    sess = ort.InferenceSession(path, providers=providers)
    return sess, sess.get_inputs()[0]


def gather_inputs(args, input_shape, seed):
    """-> (names, uint8 images (N, C, H, W), labels or None)."""
    c, h, w = input_shape
    if args.synthetic:
        num_classes = args.num_classes
        x, y = datasets.shapes(args.synthetic, num_classes, (h, w), seed=seed + 10_000,
                               channels=c).tensors
        return [f"synthetic[{i}]" for i in range(len(x))], x, y
    paths = []
    for item in args.inputs:
        if os.path.isdir(item):
            paths += sorted(os.path.join(d, f) for d, _, fs in os.walk(item) for f in fs
                            if f.lower().endswith(datasets.IMAGE_EXTENSIONS))
        else:
            paths.append(item)
    if not paths:
        raise SystemExit("nothing to classify: give image files/folders or --synthetic N")
    return paths, torch.stack([datasets.load_image(p, (h, w), c) for p in paths]), None


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (args.checkpoint or args.onnx):
        raise SystemExit("give --checkpoint and/or --onnx")
    device = torch.device(args.device)
    model = spec = classes = None
    seed = 0
    if args.checkpoint:
        model, spec, classes, seed = load_model(args)
        model = model.to(device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        g = secompile.build_ir(spec)
        input_shape, (args.num_classes,) = tuple(g.input_shape), g.shape(g.output)
        if args.export_onnx:
            secompile.to_onnx(spec, model.float().cpu(), args.export_onnx)
            model = model.to(device)
            print(f"wrote {args.export_onnx}", file=sys.stderr)
    sess = None
    if args.onnx:
        sess, inp = onnx_session(args.onnx, args.device)
        shape = [d if isinstance(d, int) else None for d in inp.shape]
        if model is None:
            input_shape = tuple(shape[1:])
            args.num_classes = sess.get_outputs()[0].shape[1]
    names, images, labels = gather_inputs(args, input_shape, seed)

    logits = {}
    for b in range(0, len(images), args.batch_size):
        batch = images[b:b + args.batch_size]
        if model is not None:
            x = datasets.normalise(batch.to(device), args.channels_last)
            with torch.no_grad(), torch.autocast(device.type, enabled=args.amp,
                                                 dtype=torch.float16 if device.type == "cuda"
                                                 else torch.bfloat16):
                logits.setdefault("pytorch", []).append(model(x).float().cpu())
        if sess is not None:
            x = datasets.normalise(batch).numpy()
            logits.setdefault("onnx", []).append(torch.from_numpy(sess.run(None, {inp.name: x})[0]))
    logits = {k: torch.cat(v) for k, v in logits.items()}
    k = min(args.topk, next(iter(logits.values())).shape[1])
    tops = {name: out.softmax(1).topk(k, 1) for name, out in logits.items()}

    first = next(iter(tops))
    label = (lambda i: classes[i]) if classes else str
    if not args.quiet:
        for i, n in enumerate(names):
            p, idx = tops[first].values[i], tops[first].indices[i]
            print(f"{n}: " + ", ".join(f"{label(int(j))} {float(q):.3f}" for j, q in zip(idx, p)))
    for name, t in tops.items():
        if labels is not None:
            top1 = (t.indices[:, 0] == labels).float().mean().item()
            topk = (t.indices == labels[:, None]).any(1).float().mean().item()
            print(f"{name}: top-1 {100 * top1:.2f}%, top-{k} {100 * topk:.2f}% on "
                  f"{len(labels)} images")
    if len(tops) == 2:
        same = (tops["pytorch"].indices == tops["onnx"].indices).all(1)
        diff = (logits["pytorch"] - logits["onnx"]).abs().max().item()
        print(f"PyTorch and ONNX agree on the top-{k} of {int(same.sum())}/{len(same)} images "
              f"(largest logit difference {diff:.2e})")
        if not same.all():
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
