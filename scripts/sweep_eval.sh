#!/usr/bin/env bash
# Evaluation of every checkpoint of one or more run directories on downstream datasets; results that
# already exist are skipped, so a sweep can be started again after any failure.
#
#   DATA_ROOT=/data/downstream bash scripts/sweep_eval.sh RUN_DIR [RUN_DIR ...]
#   PROTOCOL=looc DATASETS=cub200 ... # the LooC-protocol probe instead (stopped probes continue)
#   DRY_RUN=1 ...                         # print the commands only
# Env: PROTOCOL ("linear": transfer_linear_eval.py, each dataset with its published metric from
#      datasets/catalog.py; "looc": transfer_looc_probe.py with --resume), DATASETS (default: the
#      paper's eleven for linear, cub200 for looc), CKPTS (glob inside a run dir, default
#      "ckpt-last.pth"; "ckpt-*.pth" for all), DATA_ROOT (each dataset under $DATA_ROOT/<dataset>),
#      PY (python), EXTRA (more flags, e.g. "--precision bf16 --channels-last" for looc on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${DATA_ROOT:-/data/downstream}
PROTOCOL=${PROTOCOL:-linear}
case $PROTOCOL in
  linear) DATASETS=${DATASETS:-cifar10 cifar100 food101 mit67 pets flowers caltech101 cars aircraft dtd sun397} ;;
  looc) DATASETS=${DATASETS:-cub200} ;;
  *) echo "PROTOCOL=$PROTOCOL: expected linear or looc" >&2; exit 2 ;;
esac
CKPTS=${CKPTS:-ckpt-last.pth}
PY=${PY:-python}
[ $# -ge 1 ] || { echo "usage: $0 RUN_DIR [RUN_DIR ...]" >&2; exit 2; }

# each dataset's metric, from the catalog the evaluation itself reads (one python start for all)
declare -A METRIC
while read -r ds metric; do METRIC[$ds]=$metric; done < <("$PY" -c "
import sys
from datasets.catalog import METRICS
for ds in sys.argv[1:]:
    if ds not in METRICS:
        sys.exit(f'DATASETS: {ds} is not a downstream dataset ({\", \".join(METRICS)})')
    print(ds, METRICS[ds])" $DATASETS)
[ ${#METRIC[@]} -gt 0 ] || exit 2
arg_of() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1/args.json" "$2"; }

for run in "$@"; do
  [ -f "$run/args.json" ] || { echo "$run: no args.json (not a pretrain_cond.py run directory)" >&2; exit 2; }
  model=$(arg_of "$run" model); pdata=$(arg_of "$run" dataset)
  for ckpt in "$run"/$CKPTS; do
    [ -f "$ckpt" ] || continue
    name=$(basename "$ckpt" .pth)
    for ds in $DATASETS; do
      case $ds in colordigits*) datadir_flag="" ;; *) datadir_flag="--datadir $DATA_ROOT/$ds" ;; esac
      if [ "$PROTOCOL" = looc ]; then
        result="$run/looc-$ds-top1-$name.json"
        cmd="$PY transfer_looc_probe.py --pretrain-data $pdata --ckpt $ckpt --model $model --dataset $ds $datadir_flag --resume ${EXTRA:-}"
      else
        result="$run/linear-$ds-${METRIC[$ds]}-$name.json"
        cmd="$PY transfer_linear_eval.py --pretrain-data $pdata --ckpt $ckpt --model $model --dataset $ds $datadir_flag --metric ${METRIC[$ds]} ${EXTRA:-}"
      fi
      if [ -f "$result" ]; then echo "# skip $result (exists)"; continue; fi
      echo "$cmd"
      [ -n "${DRY_RUN:-}" ] || eval "$cmd"
    done
  done
done
