#!/usr/bin/env bash
# Linear evaluation of every checkpoint of one or more run directories on the downstream datasets,
# each with its published metric; results that already exist are skipped.
#
#   DATA_ROOT=/data/downstream bash scripts/sweep_eval.sh RUN_DIR [RUN_DIR ...]
#   DRY_RUN=1 ...                         # print the commands only
# Env: DATASETS (subset), CKPTS (glob inside a run dir, default "ckpt-last.pth"; "ckpt-*.pth" for all),
#      DATA_ROOT (each dataset under $DATA_ROOT/<dataset>), PY (python), EXTRA (more flags).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${DATA_ROOT:-/data/downstream}
DATASETS=${DATASETS:-cifar10 cifar100 food101 mit67 pets flowers caltech101 cars aircraft dtd sun397}
CKPTS=${CKPTS:-ckpt-last.pth}
PY=${PY:-python}
[ $# -ge 1 ] || { echo "usage: $0 RUN_DIR [RUN_DIR ...]" >&2; exit 2; }

metric_of() { case $1 in pets|flowers|caltech101|aircraft|flowers-*shot) echo class-avg ;; *) echo top1 ;; esac; }
arg_of() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1/args.json" "$2"; }

for run in "$@"; do
  [ -f "$run/args.json" ] || { echo "$run: no args.json (not a pretrain_cond.py run directory)" >&2; exit 2; }
  model=$(arg_of "$run" model); pdata=$(arg_of "$run" dataset)
  for ckpt in "$run"/$CKPTS; do
    [ -f "$ckpt" ] || continue
    name=$(basename "$ckpt" .pth)
    for ds in $DATASETS; do
      metric=$(metric_of "$ds")
      if [ -f "$run/linear-$ds-$metric-$name.json" ]; then echo "# skip $run/linear-$ds-$metric-$name.json (exists)"; continue; fi
      datadir="$DATA_ROOT/$ds"
      case $ds in colordigits*) datadir_flag="" ;; *) datadir_flag="--datadir $datadir" ;; esac
      cmd="$PY transfer_linear_eval.py --pretrain-data $pdata --ckpt $ckpt --model $model --dataset $ds $datadir_flag --metric $metric ${EXTRA:-}"
      echo "$cmd"
      [ -n "${DRY_RUN:-}" ] || eval "$cmd"
    done
  done
done
