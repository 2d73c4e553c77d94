#!/usr/bin/env bash
# Table 2 / section 5.2: the exponent p of the L^p Edge Agreement Loss with the Sobel filter, MS COCO, 160k
# steps, 3 seeds each. Baseline and p=2 are Table 1's runs (copied when run_table1_filters.sh ran first).
source "$(dirname "$0")/lib.sh"
EXP=table2_p

reuse_seeds table1_filters $EXP baseline
reuse_seeds table1_filters $EXP sobel-p2
train_seeds "$COCO_DIR" $EXP baseline --filter none
for p in 1 2 3 4; do
  train_seeds "$COCO_DIR" $EXP sobel-p$p --filter sobel --p $p
done

report $EXP --compare results/paper/table2_p.csv
