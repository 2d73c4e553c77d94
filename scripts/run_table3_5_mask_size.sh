#!/usr/bin/env bash
# Tables 3 and 5 / sections 5.4 and 5.7: mask size 28x28 vs 56x56, baseline vs Sobel + L2, 3 seeds each.
#   MS COCO (Table 3): the section-4 schedule, 160k steps; the 28x28 runs are Table 1's (copied if present).
#   Cityscapes (Table 5): He et al.'s Cityscapes schedule at batch size 4 (scripts/configs/cityscapes.yaml).
# Run only one dataset with DATASETS=coco or DATASETS=cityscapes.
source "$(dirname "$0")/lib.sh"
DATASETS=${DATASETS:-"coco cityscapes"}

if [[ " $DATASETS " == *" coco "* ]]; then
  EXP=table3_mask_size_coco
  reuse_seeds table1_filters $EXP baseline
  reuse_seeds table1_filters $EXP sobel-p2
  for size in 28 56; do
    suffix=""; [[ $size == 56 ]] && suffix=-m56
    train_seeds "$COCO_DIR" $EXP baseline$suffix --mask-size $size --filter none
    train_seeds "$COCO_DIR" $EXP sobel-p2$suffix --mask-size $size --filter sobel --p 2
  done
  report $EXP --compare results/paper/table3_mask_size_coco.csv
fi

if [[ " $DATASETS " == *" cityscapes "* ]]; then
  EXP=table5_mask_size_cityscapes
  CFG=$CONFIGS/cityscapes.yaml
  for size in 28 56; do
    suffix=""; [[ $size == 56 ]] && suffix=-m56
    train_seeds "$CITYSCAPES_DIR" $EXP baseline$suffix --config "$CFG" --mask-size $size --filter none
    train_seeds "$CITYSCAPES_DIR" $EXP sobel-p2$suffix --config "$CFG" --mask-size $size --filter sobel --p 2
  done
  report $EXP --compare results/paper/table5_cityscapes.csv
fi
