#!/usr/bin/env bash
# Baseline vs AugSelf vs CASSLE on the built-in colordigits data (same framework, epochs, seed),
# each evaluated linearly on digit labels and on colour labels, plus how well each augmentation
# parameter can be regressed from the frozen backbone (scripts/analyze.py predict-aug). Prints a table.
#
#   bash scripts/colordigits_compare.sh [OUT_DIR]      (env: FRAMEWORK, EPOCHS, SEED, DEVICE, PY)
#   DRY_RUN=1 bash scripts/colordigits_compare.sh       prints the commands only
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/colordigits-compare}
FRAMEWORK=${FRAMEWORK:-simclr}
EPOCHS=${EPOCHS:-30}
SEED=${SEED:-0}
DEVICE=${DEVICE:-auto}
PY=${PY:-python}
run() { echo "+ $*"; [ -n "${DRY_RUN:-}" ] || "$@"; }

COMMON=(--dataset colordigits --model mini_resnet --framework "$FRAMEWORK" --batch-size 256
        --max-epochs "$EPOCHS" --base-lr 0.05 --wd 5e-4 --seed "$SEED" --eval-freq "$EPOCHS"
        --ckpt-freq "$EPOCHS" --device "$DEVICE")
declare -A METHOD=(
  [baseline]="--aug-inj-type proj-none"
  [augself]="--aug-inj-type proj-none --ss-crop 0.5 --ss-color 0.5"
  [cassle]="--aug-treatment mlp --aug-nn-depth 6 --aug-nn-width 64 --aug-inj-type proj-cat --aug-cond crop color color_diff flip blur grayscale"
)
for m in baseline augself cassle; do
  dir="$OUT/$m"
  if [ -f "$dir/ckpt-last.pth" ]; then resume=(--resume last); else resume=(); fi
  # shellcheck disable=SC2086
  run "$PY" pretrain_cond.py --logdir "$dir" "${COMMON[@]}" ${METHOD[$m]} "${resume[@]}"
  for ds in colordigits colordigits-color; do
    run "$PY" transfer_linear_eval.py --pretrain-data colordigits --ckpt "$dir/ckpt-last.pth" \
      --model mini_resnet --dataset "$ds" --metric top1 --device "$DEVICE" --num-workers 0
  done
  # How much augmentation information the backbone keeps (the paper's second claim).
  run "$PY" scripts/analyze.py predict-aug --ckpt "$dir/ckpt-last.pth" --num-images 359 --device "$DEVICE"
done
run "$PY" scripts/collect_results.py "$OUT/baseline" "$OUT/augself" "$OUT/cassle" --baseline baseline --analysis \
  --md "$OUT/table.md" --csv "$OUT/table.csv"
