#!/usr/bin/env bash
# GPU checks (run by hand on a CUDA machine; about 2 minutes on an H200): a few hundred steps of --init coco
# fine-tuning (the gpu-coco-finetune recipe) with a fake COCO weights file in the torch hub layout under a temporary
# TORCH_HOME (no download), printing the losses at the start and the end.
#
#   bash scripts/gpu_check.sh            # STEPS=300 CANVAS=640x512 DEVICE=cuda by default
#   STEPS=20 CANVAS=256x192 DEVICE=cpu bash scripts/gpu_check.sh   # a smoke test of the script on a CPU
#
# The fake file is torchvision's maskrcnn_resnet50_fpn with random weights whose batch-norm statistics are measured
# on the shapes images (so the frozen batch norm normalises): real keys and shapes, not COCO's knowledge; the losses
# must fall but say nothing about COCO transfer.
set -euo pipefail
STEPS=${STEPS:-300}
CANVAS=${CANVAS:-640x512}
DEVICE=${DEVICE:-cuda}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TORCH_HOME="$WORK/torch"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== --init coco fine-tuning, $STEPS steps at $CANVAS on $DEVICE (fake COCO weights in $TORCH_HOME)"
python -m edgercnn prepare shapes --out "$WORK/shapes" --train 64 --val 8 --size 256 >/dev/null
python - "$WORK/shapes" "$DEVICE" <<'PY'
import sys
from pathlib import Path

import torch
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights, maskrcnn_resnet50_fpn

from edgercnn.data.dataset import CocoInstanceDataset
from edgercnn.model.pretrained import coco_file

data, device = Path(sys.argv[1]), torch.device(sys.argv[2])
torch.manual_seed(0)
model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).to(device)  # BatchNorm2d, random weights
body = model.backbone.body
for m in body.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches below
ds = CocoInstanceDataset(data, "train", canvas=(256, 256), train=False)
mean = torch.tensor([0.485, 0.456, 0.406], device=device)[:, None, None]
std = torch.tensor([0.229, 0.224, 0.225], device=device)[:, None, None]
body.train()
with torch.no_grad():
    for i in range(0, 16, 4):
        body(torch.stack([(ds[i + k][0].to(device) - mean) / std for k in range(4)]))
state = {k: v.cpu() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
path, _ = coco_file("coco")
path.parent.mkdir(parents=True, exist_ok=True)
torch.save(state, path)
print(f"fake COCO file: {path} ({len(state)} tensors)")
PY
python -m edgercnn train --recipe gpu-coco-finetune --data "$WORK/shapes" --canvas "$CANVAS" --steps "$STEPS" \
    --device "$DEVICE" --workers 4 --no-eval --checkpoint-every 100000 --experiment gpucheck \
    --out-dir "$WORK/runs" --results-dir "$WORK/results" > "$WORK/train.log" 2>&1 || { tail -20 "$WORK/train.log"; exit 1; }
python - "$WORK/runs" <<'PY'
import csv
import math
import sys
from pathlib import Path

losses = next(Path(sys.argv[1]).rglob("losses.csv"))
rows = list(csv.DictReader(losses.open()))
keys = [k for k in ("loss_total", "loss_classifier", "loss_box_reg", "loss_mask", "loss_edge", "loss_objectness") if k in rows[0]]
def mean(part, key):
    return sum(float(r[key]) for r in part) / len(part)
n = max(1, min(20, len(rows) // 3))
first, last = rows[:n], rows[-n:]
for key in keys:
    print(f"{key:16s} start {mean(first, key):8.4f}   end {mean(last, key):8.4f}   (mean of {n} steps)")
ok = all(math.isfinite(float(r[k])) for r in rows for k in keys)
total = keys[0]
print(f"{len(rows)} steps; finite: {ok}; {total} fell: {mean(last, total) < mean(first, total)}")
sys.exit(0 if ok else 1)
PY
