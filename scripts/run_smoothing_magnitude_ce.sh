#!/usr/bin/env bash
# Section 5.6 / Figure 4b: modifications that did not help in the paper, Sobel + L2, MS COCO, 160k steps,
# 3 seeds each: Gaussian smoothing of the ground truth / the prediction / both (5.6.1); the Sobel gradient
# magnitude as an extra channel (5.6.3); the weighted cross-entropy formulations
# L_Mask-PW * L_Edge-PW (ce-product) and L_Mask-PW * exp(L_Edge-PW / 4) (ce-exp) (5.6.3).
# Homoscedastic uncertainty weighting (5.6.2) is not implemented. The paper has no table for these; the
# report compares baseline and sobel-p2 with Table 1.
source "$(dirname "$0")/lib.sh"
EXP=smoothing_magnitude_ce

reuse_seeds table1_filters $EXP baseline
reuse_seeds table1_filters $EXP sobel-p2
train_seeds "$COCO_DIR" $EXP baseline --filter none
train_seeds "$COCO_DIR" $EXP sobel-p2 --filter sobel --p 2
for smooth in gt pred both; do
  train_seeds "$COCO_DIR" $EXP sobel-p2-smooth_$smooth --filter sobel --p 2 --smooth $smooth
done
train_seeds "$COCO_DIR" $EXP sobel-p2-mag --filter sobel --p 2 --magnitude
for formulation in ce-product ce-exp; do
  train_seeds "$COCO_DIR" $EXP sobel-p2-$formulation --filter sobel --p 2 --formulation $formulation
done

report $EXP --compare results/paper/table1_filters.csv
