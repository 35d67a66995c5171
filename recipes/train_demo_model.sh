#!/usr/bin/env bash
# Rebuild the bundled demo model and example images from nothing, in one command (CPU is enough):
#
#     bash recipes/train_demo_model.sh [WORK_DIR]        # default WORK_DIR: outputs/demo_model
#
# 1. synthetic shapes data: 192 training scenes (seed 0) and 16 held-out scenes (seed 123), sides 96-160 px;
# 2. `mask2former train --config recipes/demo_model.yaml` (300 steps of batch 8 from scratch, evaluated on the
#    held-out scenes at the end; log in WORK_DIR/run/log.jsonl);
# 3. export: the weights stored in fp16 (half the size; `from_pretrained` / `predict --dtype` choose the run dtype)
#    into src/mask2former/assets/demo_model/, with the processor (shortest edge 128);
# 4. held-out PQ of the exported model through the user's path: `mask2former predict --format coco` on the held-out
#    scenes, then `mask2former evaluate` on those files (WORK_DIR/metrics.json);
# 5. the bundled examples: held-out scenes 1, 3, 5 and 7 of seed 2024 (sides 256-320 px), a seed used nowhere else.
#
# Same seeds, same data; the trained weights are those of the recorded run up to floating-point differences between
# machines (CPU kernels, thread counts).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-outputs/demo_model}
ASSETS=src/mask2former/assets

python -m mask2former.data.synthetic "$WORK/data/train" --num-images 192 --seed 0 --min-size 96 --max-size 160
python -m mask2former.data.synthetic "$WORK/data/val" --num-images 16 --seed 123 --min-size 96 --max-size 160

mask2former train --config recipes/demo_model.yaml --output-dir "$WORK/run" \
    --set train_data.images="$WORK/data/train/images" --set train_data.annotations="$WORK/data/train/panoptic.json" \
    --set train_data.masks="$WORK/data/train/panoptic" \
    --set val_data.images="$WORK/data/val/images" --set val_data.annotations="$WORK/data/val/panoptic.json" \
    --set val_data.masks="$WORK/data/val/panoptic"

python - "$WORK/run/model" "$ASSETS/demo_model" <<'EOF'
import shutil
import sys
from pathlib import Path

import torch

from mask2former import Mask2FormerForUniversalSegmentation

source, target = Path(sys.argv[1]), Path(sys.argv[2])
if target.exists():
    shutil.rmtree(target)
Mask2FormerForUniversalSegmentation.from_pretrained(source, dtype=torch.float16).save_pretrained(target)
shutil.copy(source / "preprocessor_config.json", target / "preprocessor_config.json")
size = sum(p.stat().st_size for p in target.iterdir())
print(f"exported {source} to {target} in fp16: {size / 2**20:.2f} MiB")
EOF

mask2former predict "$WORK/data/val/images" --output-dir "$WORK/val_predictions" --format coco \
    --coco-categories "$WORK/data/val/panoptic.json" --overwrite --no-progress
mask2former evaluate --task panoptic --annotations "$WORK/data/val/panoptic.json" \
    --masks "$WORK/data/val/panoptic" --predictions "$WORK/val_predictions/panoptic.json" \
    --prediction-dir "$WORK/val_predictions/panoptic" --output "$WORK/metrics.json"

python -m mask2former.data.synthetic "$WORK/examples" --num-images 8 --seed 2024 --min-size 256 --max-size 320 \
    --no-instances --no-semantic
rm -f "$ASSETS"/examples/*.jpg
for i in 1 3 5 7; do cp "$WORK/examples/images/00000$i.jpg" "$ASSETS/examples/shapes_$i.jpg"; done
echo "demo model: $ASSETS/demo_model; held-out metrics: $WORK/metrics.json; examples: $ASSETS/examples"
