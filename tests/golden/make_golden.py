"""Writes tests/golden/zoo.json: what a user sees of every zoo spec (counts, state_dict layout,
CLI count output, ONNX bytes of the small nets). Run it only when a change of these is intended:
    python tests/golden/make_golden.py
"""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ONNX_SPECS = ("se_resnet20_cifar", "se_mobilenet_v1", "se_shufflenet_v1_g3")  # small enough for CI


def cli_count(spec_path) -> str:
    """`secompile count SPEC` as a user's terminal shows it (fixed width, no colour)."""
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "secompile", "count", str(spec_path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def snapshot(spec_path: pathlib.Path) -> dict:
    import torch

    import secompile

    rep = secompile.count(spec_path)
    model = secompile.compile(spec_path, seed=0)
    state = {k: list(v.shape) for k, v in model.state_dict().items()}
    out = cli_count(spec_path)
    entry = {"macs": rep["total"]["macs"], "conv_linear_macs": rep["total"]["conv_linear_macs"],
             "params": rep["total"]["params"], "se_blocks": rep["se"]["blocks"],
             "state_dict": state, "count_output": out}
    if spec_path.stem in ONNX_SPECS:
        torch.manual_seed(0)
        onnx_model = secompile.to_onnx(spec_path, model)
        entry["onnx_sha256"] = hashlib.sha256(onnx_model.SerializeToString()).hexdigest()
    return entry


def main() -> int:
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    golden = {p.stem: snapshot(p) for p in specs}
    (HERE / "zoo.json").write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"wrote {HERE / 'zoo.json'}: {len(golden)} specs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
