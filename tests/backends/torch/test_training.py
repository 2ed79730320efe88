"""The training and inference examples: learning, DDP on CPU (gloo), exact resume, ONNX agreement.

Sizes are CI sizes (a few hundred images, 32x32): the whole file runs in about a minute on
two cores. Single-process runs call the scripts' `main` in this process (no interpreter and
torch start-up per run); the distributed run goes through `torchrun`, as users launch it.
"""
import importlib.util
import os
import re
import shutil
import subprocess

import pytest
import torch

from support import ROOT, SPECS

EXAMPLES = ROOT / "examples"
CIFAR = str(SPECS / "se_resnet20_cifar.yaml")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


train = _load("train")
infer = _load("infer")


def run_train(tmp, *extra):
    # no loader worker processes: forking a pytest worker per epoch cost most of this file's time
    return train.main(["--spec", CIFAR, "--data", "synthetic", "--out", str(tmp), "--workers", "0",
                       *map(str, extra)])


def last(tmp):
    return torch.load(os.path.join(tmp, "last.pt"), weights_only=True)


@pytest.mark.slow   # ~30 s; test_resume_mid_epoch_... runs the same loop in the default run
def test_se_network_learns_the_shapes_task(tmp_path, capsys):
    """SE-ResNet-20 on 10 shapes in random colours: > 90% validation accuracy in 3 short epochs."""
    assert run_train(tmp_path, "--epochs", 3, "--train-size", 1536, "--val-size", 500, "--batch-size", 32,
                     "--lr", 0.1, "--lr-step", 2) == 0
    hist = last(tmp_path)["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] / 3
    assert hist[-1]["val_acc"] > 0.90, hist
    out = capsys.readouterr().out
    assert re.search(r"epoch 3/3: train loss [\d.]+, val loss [\d.]+, val top-1 \d+\.\d+%, [\d,]+ img/s", out)
    assert re.search(r"\] \d+/48 loss [\d.]+ lr [\d.e-]+ [\d,]+ img/s", out)   # the progress line
    assert (tmp_path / "best.pt").exists()


def test_resume_mid_epoch_gives_the_uninterrupted_result(tmp_path, capsys):
    """Stop after 3 steps (mid-epoch 1 of 4 steps each), resume to the end: bit-identical weights,
    optimizer momentum, learning-rate schedule and data order included."""
    common = ["--epochs", 2, "--train-size", 64, "--val-size", 16, "--batch-size", 16, "--lr", 0.05,
              "--lr-step", 1]
    assert run_train(tmp_path / "a", *common) == 0
    whole = capsys.readouterr().out
    assert run_train(tmp_path / "b", *common, "--max-steps", 3) == 0
    ck = last(tmp_path / "b")
    assert (ck["epoch"], ck["step"], ck["global_step"]) == (0, 3, 3)
    capsys.readouterr()
    assert run_train(tmp_path / "b", *common, "--resume") == 0
    resumed = capsys.readouterr().out
    assert "resumed from" in resumed and "epoch 1, step 3" in resumed
    digest = re.compile(r"rank 0: state digest (\w+)")
    assert digest.search(whole).group(1) == digest.search(resumed).group(1)
    a, b = last(tmp_path / "a"), last(tmp_path / "b")
    assert a["global_step"] == b["global_step"] == 8
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    # a different network in the same folder is refused, not silently mixed
    with pytest.raises(SystemExit, match="another network"):
        train.main(["--spec", str(SPECS / "se_resnet50_tv.yaml"), "--data", "synthetic", "--out",
                    str(tmp_path / "b"), "--resume", "--epochs", "1"])


@pytest.mark.slow   # ~20 s: two launches of two processes
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_two_processes_gloo_then_resume(tmp_path):
    """`torchrun --nproc_per_node=2 examples/train.py ...` on CPU: the loss goes down, both
    processes end with identical weights (BN statistics included), and a second launch with
    --resume continues from the checkpoint instead of starting over."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = ["torchrun", "--nproc_per_node=2", "--standalone", str(EXAMPLES / "train.py"), "--spec", CIFAR,
           "--data", "synthetic", "--train-size", "512", "--val-size", "128", "--batch-size", "16",
           "--lr", "0.05", "--out", str(tmp_path)]
    r = subprocess.run(cmd + ["--epochs", "2"], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    digests = dict(re.findall(r"rank (\d): state digest (\w+)", r.stdout))
    assert set(digests) == {"0", "1"} and len(set(digests.values())) == 1, r.stdout
    assert "all 2 processes hold identical weights" in r.stdout
    assert "2 process(es) x 16 = batch 32" in r.stdout
    ck = last(tmp_path)
    losses = [h["train_loss"] for h in ck["history"]]
    assert len(losses) == 2 and losses[1] < losses[0], losses
    assert ck["world"] == 2 and ck["epoch"] == 2

    r = subprocess.run(cmd + ["--epochs", "3", "--resume"], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "resumed from" in r.stdout and "epoch 3, step 0" in r.stdout
    assert "epoch 1/3:" not in r.stdout and "epoch 3/3:" in r.stdout
    ck = last(tmp_path)
    assert [h["epoch"] for h in ck["history"]] == [1, 2, 3]
    assert ck["global_step"] == 3 * 512 // 32
    assert len(set(re.findall(r"rank \d: state digest (\w+)", r.stdout))) == 1


def test_amp_bf16_and_channels_last_training_steps(tmp_path, capsys):
    assert run_train(tmp_path, "--epochs", 1, "--train-size", 32, "--val-size", 16, "--batch-size", 16,
                     "--amp", "--channels-last") == 0
    out = capsys.readouterr().out
    assert "amp bfloat16, channels_last" in out
    ck = last(tmp_path)
    assert all(v.dtype in (torch.float32, torch.int64) for v in ck["model"].values())   # fp32 master weights
    assert torch.isfinite(torch.tensor(ck["history"][0]["train_loss"]))


def _trained(tmp_path, capsys):
    assert run_train(tmp_path, "--epochs", 1, "--train-size", 64, "--val-size", 32, "--batch-size", 32) == 0
    capsys.readouterr()
    return str(tmp_path / "last.pt")


def test_infer_pytorch_and_onnx_give_the_same_topk(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("secompile.backends.onnx", reason="ONNX backend not available")
    ck = _trained(tmp_path, capsys)
    onnx_path = str(tmp_path / "model.onnx")
    assert infer.main(["--checkpoint", ck, "--export-onnx", onnx_path, "--synthetic", "8", "--quiet"]) == 0
    capsys.readouterr()
    assert infer.main(["--checkpoint", ck, "--onnx", onnx_path, "--synthetic", "64", "--topk", "3"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch and ONNX agree on the top-3 of 64/64 images" in out
    assert re.search(r"^synthetic\[0\]: \d \d\.\d{3}, \d \d\.\d{3}, \d \d\.\d{3}$", out, re.M)
    acc = re.findall(r"^(pytorch|onnx): top-1 ([\d.]+)%", out, re.M)
    assert [a[0] for a in acc] == ["pytorch", "onnx"] and acc[0][1] == acc[1][1]


def test_image_folder_training_and_inference(tmp_path, capsys):
    """train/<class>/*.png and val/<class>/*.png read with Pillow; class names reach inference."""
    Image = pytest.importorskip("PIL.Image")
    data = _load("data")
    names = [f"c{i}" for i in range(10)]
    x, y = data.shapes(60, 10, (40, 48), seed=3).tensors
    for split, rng in (("train", range(0, 40)), ("val", range(40, 60))):
        for i in rng:
            d = tmp_path / "imgs" / split / names[int(y[i])]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i].permute(1, 2, 0).numpy()).save(d / f"{i}.png")
    missing = [n for n in names if not (tmp_path / "imgs" / "train" / n).exists()]
    for n in missing:   # every class needs a folder, even if this draw gave it no image
        (tmp_path / "imgs" / "train" / n).mkdir(parents=True)
    for n in names:
        (tmp_path / "imgs" / "val" / n).mkdir(parents=True, exist_ok=True)
    assert train.main(["--spec", CIFAR, "--data", str(tmp_path / "imgs"), "--epochs", "1", "--batch-size", "8",
                       "--workers", "0", "--out", str(tmp_path / "run")]) == 0
    ck = last(tmp_path / "run")
    assert ck["classes"] == names and "val_acc" in ck["history"][0]
    capsys.readouterr()
    assert infer.main(["--checkpoint", str(tmp_path / "run" / "last.pt"), str(tmp_path / "imgs" / "val"),
                       "--topk", "2"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.endswith(tuple("0123456789"))]
    assert len(lines) == 20
    assert all(re.match(r".*\.png: c\d \d\.\d{3}, c\d \d\.\d{3}$", ln) for ln in lines), lines[:3]


def test_image_folder_dataset_shapes_and_augmentation(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    data = _load("data")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("RGB", (80, 50), (255, 0, 0)).save(tmp_path / "a" / "x.png")
    Image.new("RGB", (30, 60), (0, 0, 255)).save(tmp_path / "b" / "y.jpg")
    for train_mode in (True, False):
        ds = data.ImageFolder(str(tmp_path), (32, 24), train=train_mode)
        assert ds.classes == ["a", "b"] and len(ds) == 2
        img, label = ds[0]
        assert img.shape == (3, 32, 24) and img.dtype == torch.uint8 and label == 0
        assert img[0].float().mean() > 200 and img[2].float().mean() < 30   # red stays red
    with pytest.raises(FileNotFoundError, match="no class folders"):
        data.ImageFolder(str(tmp_path / "a"), 32, train=False)


def test_synthetic_shapes_are_deterministic_and_balanced():
    data = _load("data")
    a, b = data.shapes(500, 10, 32, seed=5), data.shapes(500, 10, 32, seed=5)
    assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    assert not torch.equal(a.tensors[0], data.shapes(500, 10, 32, seed=6).tensors[0])
    counts = torch.bincount(a.tensors[1], minlength=10)
    assert counts.min() > 25
    # every image holds a bright shape on a dark background
    x = a.tensors[0].float()
    assert (x.amax((1, 2, 3)) - x.mean((1, 2, 3))).min() > 60
