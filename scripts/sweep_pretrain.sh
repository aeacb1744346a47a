#!/usr/bin/env bash
# Pretraining sweep with the published settings: {baseline, augself, cassle} x frameworks on ImageNet-100.
#
#   IMAGENET_100_FOLDER=/data/in100 OUT_ROOT=/runs bash scripts/sweep_pretrain.sh
#   DRY_RUN=1 bash scripts/sweep_pretrain.sh              # print the commands only
# Env: METHODS, FRAMEWORKS (space-separated subsets), LAUNCH (command prefix, default "python";
#      e.g. "bash scripts/launch_single_node.sh" or "sbatch scripts/slurm_pretrain.sbatch"), EXTRA (more flags).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${IMAGENET_100_FOLDER:-/data/imagenet100}
OUT=${OUT_ROOT:-runs}
METHODS=${METHODS:-baseline augself cassle}
FRAMEWORKS=${FRAMEWORKS:-moco simclr byol simsiam barlow_twins}
LAUNCH=${LAUNCH:-python}

method_flags() {
  case $1 in
    baseline) echo "--aug-inj-type proj-none" ;;
    augself) echo "--aug-inj-type proj-none --ss-crop 0.5 --ss-color 0.5" ;;
    cassle) echo "--aug-treatment mlp --aug-nn-depth 6 --aug-nn-width 64 --aug-inj-type proj-cat --aug-cond crop color color_diff flip blur grayscale" ;;
    *) echo "unknown method $1 (expected baseline, augself, cassle)" >&2; exit 2 ;;
  esac
}

for fw in $FRAMEWORKS; do
  lr=0.05; epochs=500
  [ "$fw" = moco ] && lr=0.03
  [ "$fw" = barlow_twins ] && epochs=300
  for m in $METHODS; do
    logdir="$OUT/imagenet100-resnet50-$fw-$m"
    resume=""
    [ -f "$logdir/ckpt-last.pth" ] && resume="--resume last"
    cmd="$LAUNCH pretrain_cond.py --logdir $logdir --framework $fw --dataset imagenet100 --datadir $DATA --model resnet50 --batch-size 256 --max-epochs $epochs --base-lr $lr --wd 1e-4 --ckpt-freq 50 --eval-freq 50 --num-workers 16 --seed 1 --distributed $(method_flags "$m") $resume ${EXTRA:-}"
    echo "$cmd"
    [ -n "${DRY_RUN:-}" ] || eval "$cmd"
  done
done
