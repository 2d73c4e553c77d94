# Shared helpers for scripts/run_*.sh (source it; do not run it).
#
# Every knob is an environment variable with the paper's default (section 4):
#   SEEDS="0 1 2"  COCO_DIR=data/coco  CITYSCAPES_DIR=data/cityscapes  BACKBONE=resnet101
#   BACKBONE_WEIGHTS=imagenet  CANVAS=1024x800  DEVICE=cuda  RESULTS_DIR=results  OUT_DIR=runs
#   EDGERCNN=edgercnn (the command)  PYTHON=python (the interpreter edgercnn is installed in)  EXTRA_ARGS="" (appended to every train call)  DRY_RUN=1 (print only)
# A seed whose results/<exp>/<config>/seed-<n>.csv exists is skipped, so a script can be re-run after a
# crash or on a second machine and only does what is missing.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # the repository root: paths below are relative to it

SEEDS=${SEEDS:-"0 1 2"}
COCO_DIR=${COCO_DIR:-data/coco}
CITYSCAPES_DIR=${CITYSCAPES_DIR:-data/cityscapes}
BACKBONE=${BACKBONE:-resnet101}
BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:-imagenet}
CANVAS=${CANVAS:-1024x800}
DEVICE=${DEVICE:-cuda}
RESULTS_DIR=${RESULTS_DIR:-results}
OUT_DIR=${OUT_DIR:-runs}
EDGERCNN=${EDGERCNN:-edgercnn}
EXTRA_ARGS=${EXTRA_ARGS:-}
DRY_RUN=${DRY_RUN:-0}
CONFIGS=scripts/configs

# seed_csv EXPERIMENT CONFIG SEED: the per-seed result CSV (its name is edgercnn.results' business).
seed_csv() {
  "${PYTHON:-python}" -m edgercnn.results "$RESULTS_DIR" "$1" "$2" "$3"
}

# run CMD...: run it, or only print it with DRY_RUN=1.
run() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

# train_seeds DATA EXPERIMENT CONFIG [edgercnn train options...]
# One training run (train + eval → results/EXPERIMENT/CONFIG/seed-N.csv) per seed in $SEEDS, skipping
# seeds whose CSV already exists; an interrupted run continues from its checkpoint (--resume starts fresh
# when there is none).
train_seeds() {
  local data=$1 exp=$2 name=$3 seed
  shift 3
  local done_csv
  for seed in $SEEDS; do
    done_csv=$(seed_csv "$exp" "$name" "$seed")
    if [[ -f $done_csv ]]; then
      echo "skip $exp/$name seed $seed: $done_csv exists"
      continue
    fi
    echo "=== $exp/$name seed $seed ($(date '+%F %T'))"
    # shellcheck disable=SC2086  # EXTRA_ARGS is meant to split into words
    run "$EDGERCNN" train --data "$data" --experiment "$exp" --name "$name" --seed "$seed" \
      --backbone "$BACKBONE" --backbone-weights "$BACKBONE_WEIGHTS" --canvas "$CANVAS" \
      --results-dir "$RESULTS_DIR" --out-dir "$OUT_DIR" --device "$DEVICE" --resume "$@" $EXTRA_ARGS
  done
}

# reuse_seeds FROM_EXPERIMENT TO_EXPERIMENT CONFIG
# Copy finished seeds (seed-N.csv and seed-N-losses.csv) of an identical configuration from another
# experiment instead of training them again. The paper does the same: its Table 2 L2 row, Table 3 28x28 rows
# and Table 4 160k rows repeat Table 1's Sobel and Baseline numbers. Seeds not found there are left to
# train_seeds.
reuse_seeds() {
  local seed from to
  for seed in $SEEDS; do
    from=$(seed_csv "$1" "$3" "$seed")
    to=$(seed_csv "$2" "$3" "$seed")
    if [[ -f $from && ! -f $to ]]; then
      echo "reuse $1/$3 seed $seed for $2"
      run mkdir -p "$(dirname "$to")"
      # the side files (losses, evals, config) first, the metrics CSV last: it marks the seed done
      for f in "${from%.csv}"-*.csv "${from%.csv}".config.yaml "$from"; do
        if [[ -f $f ]]; then run cp "$f" "$(dirname "$to")/$(basename "$f")"; fi
      done
    fi
  done
}

# report EXPERIMENT [edgercnn report options...]: the mean ± std tables and losses.png for an experiment.
report() {
  local exp=$1
  shift
  run "$EDGERCNN" report "$RESULTS_DIR/$exp" "$@"
}
