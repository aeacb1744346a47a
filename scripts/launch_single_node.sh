#!/usr/bin/env bash
# One node, all its GPUs, through torchrun (ranks from the environment):
#   bash scripts/launch_single_node.sh pretrain_cond.py --logdir ... --distributed [flags]
# NGPU (default: all visible GPUs) sets the number of processes.
#
# SIGTERM or SIGUSR1 sent to this script reaches every training process through torchrun: each ends
# its step, ckpt-last.pth is written there, and this script exits with status 75, as the training
# processes do (torchrun itself exits with 1 after a signal); --resume last continues the run. Other
# ends keep their status. STOP_TIMEOUT (default 120 s): how long torchrun waits for that checkpoint.
set -uo pipefail
cd "$(dirname "$0")/.."
NGPU=${NGPU:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}
PREEMPTED=75

logdir=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[$i]}" = --logdir ] && logdir=${args[$((i + 1))]}; done
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
asked=""
forward() {
  asked=$1
  touch -d "1 second ago" "$marker"  # a file system's mtimes may count whole seconds only
  kill -s "$1" "$pid" 2>/dev/null || true
}

# In the background, so that this shell can pass signals on while it waits; as in the foreground,
# Ctrl-C (SIGINT) reaches torchrun and its workers, which bash would have ignore it otherwise.
# TORCHRUN_ARGS: more torchrun flags, e.g. --local-addr 127.0.0.1 where the host's name does not resolve.
# shellcheck disable=SC2086
(trap - INT QUIT; exec torchrun --standalone --nnodes 1 --nproc_per_node "$NGPU" ${TORCHRUN_ARGS:-} \
  --signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout "${STOP_TIMEOUT:-120}" "$@") &
pid=$!
trap 'forward USR1' USR1
trap 'forward TERM' TERM
trap ':' INT  # the terminal sent it to torchrun too: wait for its end and keep its status
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done  # a trapped signal interrupts wait
wait "$pid"
status=$?
if [ "$status" -ne 0 ] && [ -n "$asked" ] && [ -n "$logdir" ] && [ "$logdir/ckpt-last.pth" -nt "$marker" ]; then
  echo "stopped on SIG$asked: $logdir/ckpt-last.pth holds the last step; continue with --resume last" >&2
  exit $PREEMPTED
fi
exit $status
