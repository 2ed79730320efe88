#!/usr/bin/env bash
# Regenerate the example diagrams in docs/images/ (shown in README.md and docs/diagrams.md).
# Needs Graphviz's `dot` (apt-get install graphviz). Usage: bash docs/make_diagrams.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/images
mkdir -p "$out"

# SE-ResNet-50, block level: every block a cluster, SE blocks in orange
python -m secompile -q draw specs/se_resnet50.yaml --level block -o "$out/se_resnet50-block.svg"
# SE-ResNeXt-50, stage level: Table 1 of the paper as a picture
python -m secompile -q draw specs/se_resnext50.yaml --level stage -o "$out/se_resnext50-stage.svg"
# One SE-ResNeXt-50 block at op level (the first block of stage 1: stride 2, projection
# shortcut, 32 groups), the SE subgraph as in the paper's figure 3. `scope` crops the drawing
# to one block; the API takes it (the CLI flag is --scope where the CLI offers it).
python - "$out" <<'PY'
import sys
import secompile
for fmt in ("svg", "png"):
    secompile.draw("specs/se_resnext50.yaml", level="op", format=fmt, scope="stages.1.blocks.0",
                   path=f"{sys.argv[1]}/se_resnext50-block-op.{fmt}")
PY
ls -l "$out"
