#!/usr/bin/env bash
# One node, all its GPUs, through torchrun (ranks from the environment):
#   bash scripts/launch_single_node.sh pretrain_cond.py --logdir ... --distributed [flags]
# NGPU (default: all visible GPUs) sets the number of processes.
set -euo pipefail
cd "$(dirname "$0")/.."
NGPU=${NGPU:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}
exec torchrun --standalone --nnodes 1 --nproc_per_node "$NGPU" "$@"
