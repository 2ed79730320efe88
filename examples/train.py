#!/usr/bin/env python
r"""Train a network compiled from a spec, with the SE paper's recipe.

    python examples/train.py --spec specs/se_resnet20_cifar.yaml --data synthetic --epochs 30
    python examples/train.py --spec specs/se_resnext50.yaml --data /data/imagenet --device cuda \
        --amp --channels-last
    torchrun --nproc_per_node=2 examples/train.py --spec specs/se_resnet20_cifar.yaml \
        --data synthetic --epochs 2
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \
        examples/train.py ...

Recipe (section 5 of the paper): SGD with momentum 0.9, the learning rate divided by 10 every
`--lr-step` epochs (30 of 100 there), He initialisation (what `secompile.compile` does), weight
decay configurable (1e-4, the Caffe solvers' value, by default). The paper's 0.6 at a mini-batch
of 1024 is scaled linearly to the global batch unless `--lr` is given.

Data: `--data synthetic` (coloured shapes generated in code, see data.py) or a folder with
`train/<class>/*.jpg` and optionally `val/<class>/*.jpg` (Pillow; no torchvision).

Multi-process training uses torch.distributed's DistributedDataParallel: launched by torchrun,
each process trains on its shard (gloo on CPU, NCCL on GPU); `--batch-size` is per process.
At the end of every epoch the BN running statistics are averaged over the processes, so all
of them hold identical weights; each prints a digest of its state to show it.

Overrides: `--set KEY=VALUE` (repeatable) changes the spec before it is built, as on the
secompile command line (`--set se.0.reduction=8`, `--set head.1.linear.out=10`).

Metrics: rank 0 writes `<out>/metrics.json` at the end of every epoch (spec name, overrides,
epochs done, final val top-1 and loss, best top-1), which `secompile sweep --metrics
'runs/*/metrics.json'` joins into a sweep's table and plot (docs/sweeps.md).

Checkpoints (`<out>/last.pt`, plus `best.pt`) are written atomically by rank 0 at the end of
every epoch, every `--save-every` steps and when `--max-steps` stops a run; `--resume`
continues from `last.pt` exactly where it stopped, mid-epoch included (same world size and
batch size give the same result as an uninterrupted run). A checkpoint embeds the spec, so
examples/infer.py needs nothing else.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # run from a checkout without installing
sys.path.insert(0, HERE)

import data as datasets  # noqa: E402

import secompile  # noqa: E402
from secompile.outputs import atomic_write  # noqa: E402

CHECKPOINT_FORMAT = "secompile-train/1"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--spec", required=True, help="network spec (a YAML file or a zoo name)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value (dotted path, YAML value; repeatable), e.g. "
                        "se.0.reduction=8")
    p.add_argument("--data", default="synthetic",
                   help="'synthetic' or a folder with train/<class>/ (and val/<class>/)")
    p.add_argument("--train-size", type=int, default=10000, help="synthetic training images")
    p.add_argument("--val-size", type=int, default=2000, help="synthetic validation images")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=None,
                   help="default: 0.6 * global batch / 1024 (the paper)")
    p.add_argument("--lr-step", type=int, default=30,
                   help="divide the learning rate by --lr-gamma every N epochs")
    p.add_argument("--lr-gamma", type=float, default=0.1)
    p.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="linear warm-up (large batches)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", type=float, default=1e-4, help="weight decay")
    p.add_argument("--no-wd-norm-bias", action="store_true",
                   help="no weight decay on BN parameters and biases")
    p.add_argument("--zero-init-last-bn", action="store_true",
                   help="start each residual branch at zero")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N (under torchrun: the local rank's GPU)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (bf16 on CPU, fp16 on CUDA by default)")
    p.add_argument("--amp-dtype", choices=["bf16", "fp16"], default=None)
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC memory format (tensor cores, oneDNN)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--workers", type=int, default=4,
                   help="data-loading processes for image folders")
    p.add_argument("--seed", type=int, default=0,
                   help="initialisation, data order and synthetic data")
    p.add_argument("--out", default=None, help="checkpoint folder (default: runs/<spec name>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt if it exists")
    p.add_argument("--save-every", type=int, default=0,
                   help="also checkpoint every N steps (0: per epoch)")
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop (and checkpoint) after N steps in total")
    p.add_argument("--log-every", type=int, default=0,
                   help="progress line every N steps (0: ~10 per epoch)")
    return p.parse_args(argv)


# -- distributed ---------------------------------------------------------------------------
def setup(args):
    """-> (rank, world, device). Under torchrun, joins the process group (NCCL for CUDA, else
    gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available")
        if world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def average_buffers(model: torch.nn.Module, world: int) -> None:
    """Average BN running statistics over the processes: each saw only its shard."""
    if world == 1:
        return
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b, op=dist.ReduceOp.SUM)
            b.div_(world)


def state_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


# -- spec, data ----------------------------------------------------------------------------
def self_contained(spec_path) -> dict:
    """The spec as one dict, included templates inlined: a checkpoint needs no other file."""
    spec = secompile.load(spec_path)   # a path, a zoo name or a loaded Spec (overrides applied)
    out = {k: v for k, v in spec.data.items() if k != "include"}
    out["blocks"] = {name: t.body for name, t in spec.templates.items()}
    return json.loads(json.dumps(out))   # plain types only: loadable with weights_only=True


def build_data(args, input_shape, num_classes):
    c, h, w = input_shape
    if args.data == "synthetic":
        train = datasets.shapes(args.train_size, num_classes, (h, w), seed=args.seed, channels=c)
        val = datasets.shapes(args.val_size, num_classes, (h, w),
                              seed=args.seed + 10_000, channels=c)
        return train, val, None
    root = args.data
    train_dir = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else root
    train = datasets.ImageFolder(train_dir, (h, w), train=True, channels=c)
    if len(train.classes) != num_classes:
        raise SystemExit(f"{train_dir}: {len(train.classes)} classes, but the spec's head "
                         f"gives {num_classes} outputs; change the head's `linear: {{out: N}}`")
    val_dir = os.path.join(root, "val")
    val = datasets.ImageFolder(val_dir, (h, w), train=False, channels=c, classes=train.classes) \
        if os.path.isdir(val_dir) else None
    return train, val, train.classes


def loader(dataset, indices, args, device):
    # a plain list of indices as the sampler: resuming mid-epoch just drops the ones done
    workers = 0 if isinstance(dataset, torch.utils.data.TensorDataset) else args.workers
    return DataLoader(dataset, batch_size=args.batch_size, sampler=indices, drop_last=False,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=False)


# -- the recipe ----------------------------------------------------------------------------
def learning_rate(args, base_lr: float, epoch: int, step: int, steps_per_epoch: int) -> float:
    lr = base_lr * args.lr_gamma ** (epoch // args.lr_step)
    if args.warmup_epochs > 0:
        done = (epoch * steps_per_epoch + step + 1) / (args.warmup_epochs * steps_per_epoch)
        lr *= min(1.0, done)
    return lr


def param_groups(model, args):
    if not args.no_wd_norm_bias:
        return [{"params": list(model.parameters()), "weight_decay": args.wd}]
    decay, no_decay = [], []
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            (no_decay if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) or name == "bias"
             else decay).append(p)
    return [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model, dataset, args, device, rank, world, autocast):
    """Top-1 accuracy and loss over the whole set, each process taking every world-th image."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)   # loss sum, correct, count
    for x, y in loader(dataset, list(range(rank, len(dataset), world)), args, device):
        x = datasets.normalise(x.to(device, non_blocking=True), args.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast():
            logits = model(x)
        totals += torch.stack([F.cross_entropy(logits.float(), y, reduction="sum").double(),
                               (logits.argmax(1) == y).sum().double(),
                               torch.tensor(len(y), device=device).double()])
    if world > 1:
        dist.all_reduce(totals)
    loss, correct, n = totals.tolist()
    return loss / max(n, 1), correct / max(n, 1)


def write_metrics(out_dir: str, name: str, spec_obj, args, history: list, best: float,
                  world: int) -> None:
    """<out>/metrics.json: what `secompile sweep --metrics` joins (by spec name, or spec name and
    overrides). Rewritten atomically at the end of every epoch, so it always describes the last
    one."""
    last_record = history[-1] if history else {}
    metrics = {"format": "secompile-metrics/1", "spec": name, "spec_file": os.fspath(args.spec),
               "overrides": spec_obj.override_dict(), "epochs": len(history),
               "epochs_planned": args.epochs,
               "val_acc": last_record.get("val_acc"), "val_loss": last_record.get("val_loss"),
               "train_loss": last_record.get("train_loss"),
               "best_val_acc": best if history else None,
               "global_batch": args.batch_size * world, "seed": args.seed}
    atomic_write(os.path.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")


def save_checkpoint(path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())   # a crash mid-write never leaves a truncated last.pt


class Progress:
    """A progress line with throughput: redrawn in place on a terminal, one line per N steps in
    logs."""

    def __init__(self, enabled: bool, total: int, every: int, world: int):
        self.enabled, self.total, self.every, self.world = enabled, total, every, world
        self.tty = sys.stdout.isatty()
        self.t0, self.n0 = time.perf_counter(), 0

    def update(self, epoch_label: str, step: int, images: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = (images - self.n0) * self.world / max(now - self.t0, 1e-9)
        self.t0, self.n0 = now, images
        width = 24
        bar = "#" * (width * step // self.total) + "-" * (width - width * step // self.total)
        line = (f"{epoch_label} [{bar}] {step}/{self.total} loss {loss:.4f} lr {lr:.4g} "
                f"{rate:,.0f} img/s")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", flush=True)

    def close(self):
        if self.enabled and self.tty:
            print()


def main(argv=None) -> int:
    args = parse_args(argv)
    rank, world, device = setup(args)
    lead = rank == 0
    log = print if lead else (lambda *a, **k: None)
    torch.manual_seed(args.seed)

    try:
        spec_obj = secompile.load(args.spec, overrides=args.set or None)
    except secompile.SpecError as e:
        raise SystemExit("\n".join(e.messages)) from None
    g = secompile.build_ir(spec_obj)
    input_shape, (num_classes,) = tuple(g.input_shape), g.shape(g.output)
    spec = self_contained(spec_obj)
    out_dir = args.out or os.path.join("runs", g.name)
    last_path = os.path.join(out_dir, "last.pt")

    ck = None
    if args.resume and os.path.exists(last_path):   # checked before any data is made
        ck = torch.load(last_path, map_location="cpu", weights_only=True)
        if ck.get("format") != CHECKPOINT_FORMAT or ck["spec"] != spec:
            raise SystemExit(f"{last_path}: a checkpoint of another network or format; "
                             f"use another --out")

    net = secompile.compile(spec_obj, seed=args.seed,
                            zero_init_last_bn=args.zero_init_last_bn).to(device)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    train_set, val_set, classes = build_data(args, input_shape, num_classes)
    global_batch = args.batch_size * world
    base_lr = args.lr if args.lr is not None else 0.6 * global_batch / 1024
    optimizer = torch.optim.SGD(param_groups(net, args), lr=base_lr, momentum=args.momentum)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[
        args.amp_dtype or ("fp16" if device.type == "cuda" else "bf16")]
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and amp_dtype == torch.float16)

    def autocast():
        return (torch.autocast(device.type, dtype=amp_dtype) if args.amp
                else contextlib.nullcontext())

    start_epoch, start_step, global_step, history, best = 0, 0, 0, [], 0.0
    if ck is not None:
        net.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
        start_epoch, start_step, global_step = ck["epoch"], ck["step"], ck["global_step"]
        history, best = ck["history"], ck["best"]
        if ck["world"] != world or ck["args"]["batch_size"] != args.batch_size:
            log(f"note: resuming with {world} processes x {args.batch_size} (was {ck['world']} x "
                f"{ck['args']['batch_size']}): the data order differs from an uninterrupted run")
        log(f"resumed from {last_path}: epoch {start_epoch + 1}, step {start_step}")

    model = DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else net
    if args.compile:
        model = torch.compile(model)

    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank,
                                 shuffle=True, seed=args.seed,
                                 drop_last=True)
    steps_per_epoch = len(sampler) // args.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"{len(train_set)} training images make no batch of "
                         f"{args.batch_size} x {world}")
    log(f"{g.name}: {sum(p.numel() for p in net.parameters()):,} parameters, input {input_shape}, "
        f"{num_classes} classes; {len(train_set)} training images, {world} process(es) x "
        f"{args.batch_size} = batch {global_batch}, lr {base_lr:.4g}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + (f", amp {str(amp_dtype).split('.')[-1]}" if args.amp else "")
        + (", channels_last" if args.channels_last else "")
        + (", torch.compile" if args.compile else ""))

    def checkpoint(epoch, step, path=last_path):
        if lead:
            save_checkpoint(path, {
                "format": CHECKPOINT_FORMAT, "spec": spec, "model": net.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "rng": torch.get_rng_state(),
                "epoch": epoch, "step": step, "global_step": global_step, "world": world,
                "args": vars(args),
                "classes": classes, "history": history, "best": best,
                "input_shape": list(input_shape)})

    every = args.log_every or max(1, steps_per_epoch // 10)
    stopped = False
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        skip = start_step if epoch == start_epoch else 0
        order = list(sampler)[skip * args.batch_size: steps_per_epoch * args.batch_size]
        model.train()
        progress = Progress(lead, steps_per_epoch, every, world)
        loss_sum = torch.zeros((), device=device)
        images, t_epoch, step = 0, time.perf_counter(), skip
        for x, y in loader(train_set, order, args, device):
            lr = learning_rate(args, base_lr, epoch, step, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = datasets.normalise(x.to(device, non_blocking=True), args.channels_last)
            y = y.to(device, non_blocking=True)
            with autocast():
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach()      # no host sync per step: .item() only when printing
            step += 1
            global_step += 1
            images += len(y)
            if step % every == 0 or step == steps_per_epoch:
                progress.update(f"epoch {epoch + 1}/{args.epochs}", step, images, loss.item(), lr)
            if args.max_steps and global_step >= args.max_steps:
                stopped = True
                break
            if args.save_every and global_step % args.save_every == 0 and step < steps_per_epoch:
                checkpoint(epoch, step)
        progress.close()
        elapsed = time.perf_counter() - t_epoch
        done = step - skip
        stats = torch.stack([loss_sum, torch.tensor(float(done), device=device)])
        if world > 1:
            dist.all_reduce(stats)
        train_loss = (stats[0] / stats[1].clamp(min=1)).item()
        average_buffers(net, world)
        if stopped and step < steps_per_epoch:
            checkpoint(epoch, step)
            log(f"stopped after {global_step} steps (epoch {epoch + 1}, step {step}); "
                f"--resume continues")
            break
        record = {"epoch": epoch + 1, "train_loss": train_loss, "lr": lr,
                  "img_s": done * args.batch_size * world / max(elapsed, 1e-9)}
        if val_set is not None:
            record["val_loss"], record["val_acc"] = evaluate(model, val_set, args, device,
                                                             rank, world, autocast)
        history.append(record)
        log(f"epoch {epoch + 1}/{args.epochs}: train loss {train_loss:.4f}"
            + (f", val loss {record['val_loss']:.4f}, val top-1 {100 * record['val_acc']:.2f}%"
               if val_set else "")
            + f", {record['img_s']:,.0f} img/s", flush=True)
        is_best = val_set is not None and record["val_acc"] > best
        best = max(best, record.get("val_acc", 0.0))
        checkpoint(epoch + 1, 0)
        if lead:
            write_metrics(out_dir, g.name, spec_obj, args, history, best, world)
        if is_best:
            checkpoint(epoch + 1, 0, os.path.join(out_dir, "best.pt"))
        if stopped:
            log(f"stopped after {global_step} steps; --resume continues")
            break

    # every process shows what it holds: identical digests prove the replicas stayed in sync
    digest = state_digest(net)
    print(f"rank {rank}: state digest {digest}", flush=True)
    if world > 1:
        digests = [None] * world
        dist.all_gather_object(digests, digest)
        if lead:
            same = len(set(digests)) == 1
            print(f"{'all' if same else 'NOT all'} {world} processes hold "
                  f"identical weights", flush=True)
        dist.barrier()
        dist.destroy_process_group()
        if len(set(digests)) != 1:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
