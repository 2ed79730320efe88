"""Data for the examples, without torchvision: a learnable synthetic task and image folders.

- `shapes(n, num_classes, size, seed)`: coloured shapes drawn in code — a disk, square,
  triangles, ring, crosses, diamond, bars — in random colours at random places and sizes on a
  noisy background; the class is the shape. Generated in one vectorised pass, deterministic
  for a seed; learnable to > 90% accuracy by a small SE network in well under a minute of CPU
  time, so CI can check
  that training really trains.
- `ImageFolder(root, size, train)`: root/<class>/<image> files decoded with Pillow (imported only
  here), with the paper's augmentation for training (random-size crop, horizontal flip) and a
  resize + centre crop for evaluation.

Images are uint8 (C, H, W) tensors until `normalise` runs on the device: 4x less to move and the
conversion runs where the model does.
"""
from __future__ import annotations

import math
import os

import torch
from torch.utils.data import Dataset, TensorDataset

# mean subtraction (the paper); ImageNet statistics, also fine for shapes
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".tif", ".tiff")

COLOURS = torch.tensor([(230, 40, 40), (40, 200, 60), (50, 90, 240), (240, 220, 40),
                        (220, 60, 220), (40, 220, 230), (245, 245, 245), (250, 140, 20)],
                       dtype=torch.float32)
SHAPES = ("disk", "square", "triangle", "ring", "cross", "diamond", "hbar", "vbar",
          "x", "triangle_down")


def _masks(u: torch.Tensor, v: torch.Tensor, shape_id: torch.Tensor) -> torch.Tensor:
    """u, v: (N, H, W) coordinates relative to each shape's centre in units of its radius."""
    r = torch.sqrt(u * u + v * v)
    au, av = u.abs(), v.abs()
    # distances to the diagonals
    d1, d2 = (u + v).abs() * 0.7071, (u - v).abs() * 0.7071
    all_masks = torch.stack([
        r <= 1.0,                                                   # disk
        (au <= 0.8) & (av <= 0.8),                                  # square
        (v <= 0.75) & (v >= 2.0 * au - 1.0),                        # triangle (apex up)
        (r <= 1.0) & (r >= 0.55),                                   # ring
        ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0)),  # cross
        au + av <= 1.0,                                             # diamond
        (av <= 0.35) & (au <= 1.0),                                 # horizontal bar
        (au <= 0.35) & (av <= 1.0),                                 # vertical bar
        ((d1 <= 0.25) | (d2 <= 0.25)) & (r <= 1.0),                 # x
        (v >= -0.75) & (-v >= 2.0 * au - 1.0),                      # triangle (apex down)
    ], 1)                                                           # (N, S, H, W)
    return all_masks.gather(1, shape_id.view(-1, 1, 1, 1).expand(-1, 1, *u.shape[1:])).squeeze(1)


def shapes(n: int, num_classes: int, size=(32, 32), seed: int = 0,
           channels: int = 3) -> TensorDataset:
    """n images (uint8, channels x H x W); class c is shape c % 10.

    Up to 10 classes the colour is drawn at random for every image: a distractor, so the
    network has to learn the shapes. With more classes, class c is shape c % 10 in colour
    (c // 10) % 8; past 80 classes (shape, colour) pairs repeat and cannot be told apart: fine
    for throughput runs of ImageNet-sized specs, not for accuracy.
    """
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    shape_id = labels % len(SHAPES)
    pick = torch.randint(0, len(COLOURS), (n,), generator=g) if num_classes <= len(SHAPES) else \
        (labels // len(SHAPES)) % len(COLOURS)
    colour = (COLOURS[pick] + torch.randn(n, 3, generator=g) * 12).clamp(0, 255)          # jitter
    radius = (torch.rand(n, generator=g) * 0.2 + 0.22) * min(h, w)
    cy = torch.rand(n, generator=g) * (h - 2 * radius) + radius
    cx = torch.rand(n, generator=g) * (w - 2 * radius) + radius
    yy = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    images = torch.empty(n, channels, h, w, dtype=torch.uint8)
    for s in range(0, n, 1024):   # chunks bound the memory of the (N, 10, H, W) masks
        sl = slice(s, s + 1024)
        u = ((xx - cx[sl].view(-1, 1, 1)) / radius[sl].view(-1, 1, 1)).expand(-1, h, w)
        v = ((yy - cy[sl].view(-1, 1, 1)) / radius[sl].view(-1, 1, 1)).expand(-1, h, w)
        m = _masks(u, v, shape_id[sl]).unsqueeze(1).float()                       # (n, 1, H, W)
        k = m.shape[0]
        background = (torch.rand(k, 3, 1, 1, generator=g) * 60
                      + torch.randn(k, 3, h, w, generator=g) * 20)
        img = background * (1 - m) + colour[sl].view(-1, 3, 1, 1) * m
        img = img.clamp(0, 255).round().to(torch.uint8)
        images[sl] = (img[:, :channels] if channels <= 3
                      else img.repeat(1, math.ceil(channels / 3), 1, 1)[:, :channels])
    return TensorDataset(images, labels)


def normalise(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, C, H, W) on any device -> float32, mean-subtracted and scaled."""
    c = x.shape[1]
    mean = torch.tensor(MEAN * math.ceil(c / 3), device=x.device)[:c].view(1, c, 1, 1) * 255
    std = torch.tensor(STD * math.ceil(c / 3), device=x.device)[:c].view(1, c, 1, 1) * 255
    x = (x.float() - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# -- image folders (Pillow) ----------------------------------------------------------------
def list_images(root: str) -> tuple[list[tuple[str, int]], list[str]]:
    """root/<class>/<file> -> ([(path, class index)], class names sorted)."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise FileNotFoundError(f"{root}: no class folders (expected {root}/<class>/<image>)")
    items = []
    for i, c in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, c))):
            items += [(os.path.join(dirpath, f), i) for f in sorted(files)
                      if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not items:
        raise FileNotFoundError(f"{root}: no images with extensions {', '.join(IMAGE_EXTENSIONS)}")
    return items, classes


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit("image folders need Pillow: pip install pillow") from e
    return Image


def _to_tensor(img) -> torch.Tensor:
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return t.view(img.size[1], img.size[0], len(img.getbands())).permute(2, 0, 1).contiguous()


def load_image(path: str, size, channels: int = 3) -> torch.Tensor:
    """Evaluation preprocessing (the paper): resize the short side to size * 256/224, centre
    crop."""
    Image = _pil()
    h, w = (size, size) if isinstance(size, int) else size
    with Image.open(path) as img:
        img = img.convert("RGB" if channels == 3 else "L")
        scale = max(h, w) * 256 / 224 / min(img.size)
        img = img.resize((max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale))),
                         Image.BILINEAR)
        left, top = (img.size[0] - w) // 2, (img.size[1] - h) // 2
        return _to_tensor(img.crop((left, top, left + w, top + h)))


class ImageFolder(Dataset):
    """root/<class>/<image>; training samples get a random-size crop (8-100% of the area,
    aspect 3/4-4/3) resized to `size` and a random horizontal flip."""

    def __init__(self, root: str, size, train: bool, channels: int = 3,
                 classes: list[str] | None = None):
        self.items, found = list_images(root)
        if classes is not None and found != classes:
            raise ValueError(f"{root}: classes {found[:5]}... differ from the training set's "
                             f"{classes[:5]}...")
        self.classes = found
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.train, self.channels = train, channels

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        if not self.train:
            return load_image(path, self.size, self.channels), label
        Image = _pil()
        h, w = self.size
        with Image.open(path) as img:
            img = img.convert("RGB" if self.channels == 3 else "L")
            W, H = img.size
            box = (0, 0, W, H)
            for _ in range(10):
                area = W * H * (torch.rand(()).item() * 0.92 + 0.08)
                ratio = math.exp(math.log(3 / 4) + torch.rand(()).item() * math.log(16 / 9))
                cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
                if 0 < cw <= W and 0 < ch <= H:
                    x0, y0 = (torch.randint(0, W - cw + 1, ()).item(),
                              torch.randint(0, H - ch + 1, ()).item())
                    box = (x0, y0, x0 + cw, y0 + ch)
                    break
            img = img.resize((w, h), Image.BILINEAR, box=box)
            if torch.rand(()).item() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            return _to_tensor(img), label
