#!/usr/bin/env bash
# Table 1 / section 5.1: edge detection filters with the L2 Edge Agreement Loss, MS COCO, 160k steps
# (the default schedule of section 4: 40k heads / 80k ResNet stage 4+ / 40k all), 3 seeds each.
source "$(dirname "$0")/lib.sh"
EXP=table1_filters

train_seeds "$COCO_DIR" $EXP baseline          --filter none
train_seeds "$COCO_DIR" $EXP sobel-p2          --filter sobel   --p 2
train_seeds "$COCO_DIR" $EXP prewitt-p2        --filter prewitt --p 2
train_seeds "$COCO_DIR" $EXP kayyali-p2        --filter kayyali --p 2
train_seeds "$COCO_DIR" $EXP roberts-p2        --filter roberts --p 2
train_seeds "$COCO_DIR" $EXP laplace-p2        --filter laplace --p 2
train_seeds "$COCO_DIR" $EXP sobel+laplace-p2  --filter sobel --filter laplace --p 2

report $EXP --compare results/paper/table1_filters.csv
