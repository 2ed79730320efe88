"""An SE-ResNet-50 backbone under an FPN-style detector, in plain torch (no torchvision).

    python examples/detect_fpn.py --steps 50 --size 128           # synthetic boxes and masks

The backbone is `secompile.compile(spec, features_only=True, out_indices=4)`: its forward
returns timm's last four features, the stages' outputs (strides 4, 8, 16, 32), and its
`feature_info` gives their channels, which is all the neck needs. The neck is a feature
pyramid (lateral 1x1 convs, top-down nearest upsampling and add, 3x3 smoothing); the head
is dense and anchor-free (FCOS-like): on every pyramid level, per location an objectness
logit and the distances to the box's four sides; a mask head segments on the finest level.
The data are synthetic: bright rectangles on noise, with their boxes and masks, so the
example runs anywhere in seconds.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import secompile


class FPN(nn.Module):
    """Feature pyramid over the backbone's stages: one `width`-channel map per stage."""

    def __init__(self, in_channels: list[int], width: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in in_channels)

    def forward(self, feats: list) -> list:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse to fine
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        return [conv(x) for conv, x in zip(self.smooth, laterals)]


class Detector(nn.Module):
    """backbone (secompile) -> FPN -> per level: objectness (1) + box sides (4); mask on level 0."""

    def __init__(self, spec: str = "se_resnet50", input_size: int = 128, width: int = 64):
        super().__init__()
        self.backbone = secompile.compile(spec, features_only=True, out_indices=4,
                                          input_size=input_size, seed=0)
        info = self.backbone.feature_info
        self.strides = info.reduction()
        self.fpn = FPN(info.channels(), width)
        self.tower = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(8, width), nn.ReLU()
        )
        self.objectness = nn.Conv2d(width, 1, 3, padding=1)
        self.box = nn.Conv2d(width, 4, 3, padding=1)
        self.mask = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 1)
        )

    def forward(self, x):
        levels = self.fpn(self.backbone(x))
        outs = []
        for p in levels:
            t = self.tower(p)
            outs.append((self.objectness(t), F.relu(self.box(t))))  # box: side distances / stride
        mask = F.interpolate(
            self.mask(levels[0]), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return outs, mask


def synthetic_batch(n: int, size: int, gen: torch.Generator):
    """n images (3 x size x size) with one bright rectangle each
    -> (images, boxes [n, 4] as x0 y0 x1 y1, masks [n, 1, size, size])."""
    images = torch.randn(n, 3, size, size, generator=gen) * 0.3
    masks = torch.zeros(n, 1, size, size)
    boxes = torch.zeros(n, 4)
    for i in range(n):
        w, h = (torch.randint(size // 4, size // 2 + 1, (2,), generator=gen)).tolist()
        x0 = int(torch.randint(0, size - w + 1, (1,), generator=gen))
        y0 = int(torch.randint(0, size - h + 1, (1,), generator=gen))
        images[i, :, y0 : y0 + h, x0 : x0 + w] += 1.5
        masks[i, 0, y0 : y0 + h, x0 : x0 + w] = 1.0
        boxes[i] = torch.tensor([x0, y0, x0 + w, y0 + h], dtype=torch.float32)
    return images, boxes, masks


def detection_loss(outs, mask_logits, boxes, masks, strides):
    """Objectness (BCE: locations inside the box are positive), box sides (L1 at positives, in
    units of the level's stride) and mask (BCE)."""
    total = F.binary_cross_entropy_with_logits(mask_logits, masks)
    for (obj, box), stride in zip(outs, strides):
        n, _, h, w = obj.shape
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride
        cy, cx = ys.view(1, h, 1), xs.view(1, 1, w)
        b = boxes.view(n, 4, 1, 1)
        sides = (
            torch.stack(
                torch.broadcast_tensors(cx - b[:, 0], cy - b[:, 1], b[:, 2] - cx, b[:, 3] - cy),
                dim=1,
            )
            / stride
        )  # [n, 4, h, w]
        positive = (sides.min(dim=1).values > 0).float()  # [n, h, w]
        total = total + F.binary_cross_entropy_with_logits(obj[:, 0], positive)
        if positive.sum() > 0:
            err = (box - sides).abs().sum(dim=1)
            total = total + 0.1 * (err * positive).sum() / positive.sum()
    return total


def train(
    steps: int = 20,
    size: int = 128,
    batch: int = 4,
    spec: str = "se_resnet50",
    seed: int = 0,
    lr: float = 1e-3,
    log=print,
) -> list[float]:
    """Train the detector on one fixed synthetic batch (a smoke test of the wiring: the loss must
    fall); -> the loss of every step."""
    torch.manual_seed(seed)
    model = Detector(spec, size).train()
    images, boxes, masks = synthetic_batch(batch, size, torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        outs, mask_logits = model(images)
        loss = detection_loss(outs, mask_logits, boxes, masks, model.strides)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log:
            log(f"step {step:3d}  loss {loss.item():.4f}")
    return losses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="SE-ResNet-50 + FPN detector on synthetic boxes and masks"
    )
    ap.add_argument("--spec", default="se_resnet50", help="zoo name or spec file of the backbone")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args(argv)
    losses = train(args.steps, args.size, args.batch, args.spec)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
