#!/usr/bin/env bash
# Baseline vs AugSelf vs CASSLE on the built-in colordigits benchmark: the same framework, budget and
# seeds for all three, plus a randomly initialised backbone as reference. Each checkpoint gets a linear
# probe per label set (digit: the content; hue, saturation, brightness, flip: what the augmentations
# vary; scripts/colordigits_probes.py) and scripts/analyze.py predict-aug (how well each augmentation
# parameter can be regressed from the frozen backbone). The table gives mean +- std over the seeds.
#
#   bash scripts/colordigits_compare.sh [OUT_DIR]        (env below; OUT_DIR default runs/colordigits-<SIZE>)
#   DRY_RUN=1 bash scripts/colordigits_compare.sh        prints the commands only
# Env: SIZE  cpu: mini_resnet, batch 64, base-lr 0.3, 30 epochs, probes with 100 L-BFGS iterations on every 3rd
#            weight decay of the grid (about 30 minutes for all 3 seeds on 2 free CPU cores)
#            gpu: cifar_resnet18, batch 256, base-lr 0.5, 200 epochs, the published probe (5000 iterations, all 45)
#      SEEDS ("0 1 2"), METHODS ("random-init baseline augself cassle"), FRAMEWORK (simclr), EPOCHS, MAX_ITER,
#      GRID_EVERY (the size's), DEVICE (auto), PY (python),
#      COLLECT (1: write the table at the end; 0 for runs of one seed or method started side by side, then
#      COLLECT_ONLY=1 writes the table from what they left)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-cpu}
case $SIZE in
  cpu) MODEL=mini_resnet; BATCH=64; BASE_LR=0.3; DEFAULT_EPOCHS=30; DEFAULT_ITER=100; DEFAULT_EVERY=3 ;;
  gpu) MODEL=cifar_resnet18; BATCH=256; BASE_LR=0.5; DEFAULT_EPOCHS=200; DEFAULT_ITER=5000; DEFAULT_EVERY=1 ;;
  *) echo "SIZE must be cpu or gpu, got '$SIZE'" >&2; exit 2 ;;
esac
OUT=${1:-runs/colordigits-$SIZE}
EPOCHS=${EPOCHS:-$DEFAULT_EPOCHS}
PROBE=(--max-iter "${MAX_ITER:-$DEFAULT_ITER}" --grid-every "${GRID_EVERY:-$DEFAULT_EVERY}")
SEEDS=${SEEDS:-0 1 2}
METHODS=${METHODS:-random-init baseline augself cassle}
FRAMEWORK=${FRAMEWORK:-simclr}
DEVICE=${DEVICE:-auto}
PY=${PY:-python}
run() { echo "+ $*"; [ -n "${DRY_RUN:-}" ] || "$@"; }

# lr = base-lr x batch / 256 (the recipe's rule); the augmentations are the recipe's 32 px ones
COMMON=(--dataset colordigits --model "$MODEL" --framework "$FRAMEWORK" --batch-size "$BATCH"
        --max-epochs "$EPOCHS" --base-lr "$BASE_LR" --wd 5e-4 --eval-freq "$EPOCHS" --ckpt-freq "$EPOCHS"
        --device "$DEVICE")
declare -A METHOD=(
  [baseline]="--aug-inj-type proj-none"
  [augself]="--aug-inj-type proj-none --ss-crop 0.5 --ss-color 0.5"
  [cassle]="--aug-treatment mlp --aug-nn-depth 6 --aug-nn-width 64 --aug-inj-type proj-cat --aug-cond crop color color_diff flip blur grayscale"
)
for m in $METHODS; do  # before anything runs
  [ "$m" = random-init ] || [ -n "${METHOD[$m]:-}" ] || {
    echo "METHODS: unknown method '$m' (random-init baseline augself cassle)" >&2; exit 2; }
done
# a randomly initialised backbone of the same architecture, seeded: the reference rows
RANDOM_INIT='import sys, torch; sys.path.insert(0, "."); from models.backbones import build_backbone; torch.manual_seed(int(sys.argv[2])); torch.save({"backbone": build_backbone(sys.argv[3])[0].state_dict()}, sys.argv[1])'
for seed in $SEEDS; do
  [ -z "${COLLECT_ONLY:-}" ] || break
  for m in $METHODS; do
    dir="$OUT/$m/seed$seed"
    if [ "$m" = random-init ]; then
      run mkdir -p "$dir"
      run "$PY" -c "$RANDOM_INIT" "$dir/ckpt-last.pth" "$seed" "$MODEL"
      run "$PY" scripts/colordigits_probes.py --ckpt "$dir/ckpt-last.pth" --model "$MODEL" "${PROBE[@]}" --device "$DEVICE"
      continue
    fi
    if [ -f "$dir/ckpt-last.pth" ]; then resume=(--resume last); else resume=(); fi
    # shellcheck disable=SC2086
    run "$PY" pretrain_cond.py --logdir "$dir" "${COMMON[@]}" --seed "$seed" ${METHOD[$m]} "${resume[@]}"
    run "$PY" scripts/colordigits_probes.py --ckpt "$dir/ckpt-last.pth" "${PROBE[@]}" --device "$DEVICE"
    run "$PY" scripts/analyze.py predict-aug --ckpt "$dir/ckpt-last.pth" --num-images 359 --seed "$seed" --device "$DEVICE"
  done
done
# how much of each backbone's feature variance the image's colour explains, and the digit 1-NN without it
if [ "${COLLECT:-1}" = 1 ] || [ -n "${COLLECT_ONLY:-}" ]; then
  share_txt=$OUT/colour_share.txt; [ -z "${DRY_RUN:-}" ] || share_txt=/dev/null
  run "$PY" scripts/colordigits_colour_share.py --model "$MODEL" --device "$DEVICE" \
    --ckpt "$OUT"/{random-init,baseline,augself,cassle}/seed*/ckpt-last.pth | tee "$share_txt"
  run "$PY" scripts/collect_results.py "$OUT"/{random-init,baseline,augself,cassle}/seed* --over-seeds --analysis \
    --baseline baseline --md "$OUT/table.md" --csv "$OUT/table.csv"
fi
