#!/usr/bin/env bash
# LooC-protocol linear probe (transfer_looc_probe.py) of every checkpoint of one or more run
# directories; finished probes are skipped and stopped ones continue (--resume), so the sweep can be
# started again after a preemption.
#
#   DATA_ROOT=/data/downstream bash scripts/sweep_looc.sh RUN_DIR [RUN_DIR ...]
#   DRY_RUN=1 ...                         # print the commands only
# Env: DATASETS (default "cub200"; "cub200 imagenet100" for both), CKPTS (glob inside a run dir,
#      default "ckpt-last.pth"), DATA_ROOT (each dataset under $DATA_ROOT/<dataset>), PY (python),
#      EXTRA (more flags, e.g. "--precision bf16 --channels-last" on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${DATA_ROOT:-/data/downstream}
DATASETS=${DATASETS:-cub200}
CKPTS=${CKPTS:-ckpt-last.pth}
PY=${PY:-python}
[ $# -ge 1 ] || { echo "usage: $0 RUN_DIR [RUN_DIR ...]" >&2; exit 2; }

arg_of() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1/args.json" "$2"; }

for run in "$@"; do
  [ -f "$run/args.json" ] || { echo "$run: no args.json (not a pretrain_cond.py run directory)" >&2; exit 2; }
  model=$(arg_of "$run" model); pdata=$(arg_of "$run" dataset)
  for ckpt in "$run"/$CKPTS; do
    [ -f "$ckpt" ] || continue
    name=$(basename "$ckpt" .pth)
    for ds in $DATASETS; do
      if [ -f "$run/looc-$ds-top1-$name.json" ]; then echo "# skip $run/looc-$ds-top1-$name.json (exists)"; continue; fi
      cmd="$PY transfer_looc_probe.py --pretrain-data $pdata --ckpt $ckpt --model $model --dataset $ds --datadir $DATA_ROOT/$ds --resume ${EXTRA:-}"
      echo "$cmd"
      [ -n "${DRY_RUN:-}" ] || eval "$cmd"
    done
  done
done
