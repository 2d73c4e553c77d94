#!/usr/bin/env bash
# Section 5.3 / Figure 6: the weighting factor alpha of the Edge Agreement Loss, Sobel filter, MS COCO.
# L2 with alpha 0.5, 1, 8, 16; L4 with alpha 1 and 1/16 = 0.0625. The paper trained these once and only
# up to 120k steps "instead of 160k": we read that as the section-4 schedule stopped after its first two
# stages (scripts/configs/alpha_120k.yaml), and run 3 seeds. No table in the paper: compare Figure 6 with
# losses.png.
source "$(dirname "$0")/lib.sh"
EXP=alpha
CFG=$CONFIGS/alpha_120k.yaml

train_seeds "$COCO_DIR" $EXP baseline --config "$CFG" --filter none
for alpha in 0.5 1 8 16; do
  name=sobel-p2-a$alpha; [[ $alpha == 1 ]] && name=sobel-p2
  train_seeds "$COCO_DIR" $EXP $name --config "$CFG" --filter sobel --p 2 --alpha $alpha
done
train_seeds "$COCO_DIR" $EXP sobel-p4         --config "$CFG" --filter sobel --p 4 --alpha 1
train_seeds "$COCO_DIR" $EXP sobel-p4-a0.0625 --config "$CFG" --filter sobel --p 4 --alpha 0.0625

report $EXP
