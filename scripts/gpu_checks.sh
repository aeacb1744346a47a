#!/usr/bin/env bash
# Every GPU check and measurement behind README's "Speed" section and docs/speed.md, most important first.
#   OUT=gpu_out bash scripts/gpu_checks.sh 2>&1 | tee gpu_out/log.txt          # the default steps
#   OUT=gpu_out bash scripts/gpu_checks.sh tests bench fidelity                 # chosen steps
# Steps: tests graphtests bench entry stl10 graph profile decode cudagraphs224 jpeg cudagraphs stages blur
# compile variants sklearn sweep fidelity colordigits. The default is the first eight, most decisive first: what
# does not fit in one call's time is what matters least. bench makes the JPEG folder that entry trains on.
# Timed on an H200 with the backbone's CUDA graphs: tests 124 s, graphtests 37 s, entry 85 s; bench did not end in
# 408 s. Without them (the defaults of the time): jpeg 142 s, cudagraphs224 97 s, stl10 76 s, graph
# 112 s, cudagraphs 125 s, profile 86 s, decode 20 s, stages 22 s, "sklearn variants" 280 s. On an H100: blur 132 s,
# sweep 59 s.
# JSON results go to $OUT as they come, after each measurement.
set -uo pipefail
OUT=${OUT:-gpu_out}
PY=${PYTHON:-python3}
TMP=${TMPDIR:-/tmp}/cassle-gpu
mkdir -p "$OUT" "$TMP"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
CASSLE=(--aug-treatment mlp --aug-nn-depth 6 --aug-nn-width 64 --aug-inj-type proj-cat
        --aug-cond crop color color_diff flip blur grayscale)
BENCH=(scripts/bench/bench_pretrain.py --device cuda --steps 20 --warmup 8 --min-seconds 1.5 --jpeg-dir "$TMP/jpegs")

step() { echo "=== $* (t=${SECONDS}s)"; }
# bench_pretrain.py's lines worth keeping: each measurement as it is taken ("round"; what a step cut off by its
# time limit still shows, with its JSON written so far), the table's rows, and an error's last line
rows() { grep --line-buffered -E "^(round |\| r)|Error|error:"; }
# LIMIT_S ARGS...: bench_pretrain.py with BENCH's flags, its rows printed as they come (rows), through a
# file that tail follows until the script ends rather than a pipe. On the H200 "bench" overran its 300 s limit by
# 108 s or more: the script outlived its TERM, or a process it had started held the pipe open; this ends both.
bench() {
  local limit=$1 log="$TMP/bench-$RANDOM.log"; shift
  timeout -k 10 "$limit" $PY "${BENCH[@]}" "$@" > "$log" 2>&1 &
  tail -n +1 -f --pid=$! "$log" | rows
}

run_tests() {  # all CUDA tests but the CUDA-graph ones, which compile the backbone: step graphtests runs them
  step "CUDA tests: views, descriptors, compiled augmentation, nvJPEG, no host sync in the step"
  timeout -k 10 240 $PY -m pytest -q -s -p no:cacheprovider tests/augmentations/test_pipeline.py \
    tests/datasets/test_device_decode.py tests/datasets/test_errors.py tests/utils/training/test_step.py \
    tests/utils/training/test_input_stream.py -k "cuda and not cuda_graphs" --tb=short 2>&1 | grep -v DEBUG \
    | tee "$OUT/tests.txt" | tail -12
}

run_graphtests() {  # the backbone's CUDA graphs are the default on one GPU: every framework against eager
  step "CUDA test: the backbone as CUDA graphs trains like eager, every framework (each compiles it)"
  timeout -k 10 400 $PY -m pytest -q -s -p no:cacheprovider tests/utils/training/test_run.py -k "cuda_graphs" --tb=short \
    --durations=8 2>&1 | grep -v DEBUG | tee "$OUT/graphtests.txt" | tail -20
}

run_bench() {  # 4 workers first, the target setting: both worker counts in one call ran past 400 s on the H200
  step "pretraining throughput, default settings, 4 workers; last, the model-only step with the backbone eager (the eager ceiling)"
  bench 300 --workers 4 --pipelines model upstream ours ours-other augment model-eager --out "$OUT/bench_pretrain.json"
  step "the same with 16 workers, without the input side alone and the eager backbone"
  bench 200 --workers 16 --pipelines model upstream ours ours-other --out "$OUT/bench_pretrain_16.json"
}

run_compile() {
  step "pretraining throughput with --no-compile-augment (eager augmentation; the default compiles it on CUDA)"
  bench 240 --workers 4 --no-compile-augment --pipelines model ours augment \
    --out "$OUT/bench_eager_augment.json"
}

run_graph() {  # r18-32 only: its step is bound by the host's time, which fewer compiled calls cut
  step "compiled augmentation, r18-32, 4 workers: whole view 8 steps at once (default), per stage, whole view, 32 steps"
  bench 240 --settings r18-32 --workers 4 --pipelines model ours augment \
    --variants augment_graph=stages,augment_ahead=1 augment_graph=view,augment_ahead=1 augment_ahead=32 \
    --repeats 4 --out "$OUT/bench_graph.json"
}

# the backbone eager, then as CUDA graphs (the default on one GPU), each in its own process:
# SETTING REPEATS LIMIT_S JSON_PREFIX
without_and_with_cudagraphs() {
  for v in "--no-compile" "--compile --compile-mode reduce-overhead"; do
    tag=$(echo "x$v" | tr -cd 'a-z')
    bench "$3" --settings "$1" --workers 4 --pipelines model ours $v --repeats "$2" \
      --out "$OUT/$4_$tag.json"
  done
}

run_cudagraphs() {  # r18-32's model step is host-bound too: CUDA graphs replay the backbone's ~400 launches
  step "backbone compiled with CUDA graphs (the default on one GPU): r18-32 without and with"
  without_and_with_cudagraphs r18-32 3 240 cudagraphs
}

run_stl10() {  # behind STL-10's default of 8 steps at once (H200: 0.92 of the ceiling against 0.70; README)
  step "r18-96 (resnet18, 96 px, in memory like STL-10), 4 workers: whole view 8 steps at once (its default) vs per stage one step at a time"
  bench 200 --settings r18-96 --workers 4 --pipelines model ours augment \
    --variants augment_graph=stages,augment_ahead=1 --repeats 3 --out "$OUT/bench_stl10.json"
}

run_cudagraphs224() {  # behind --compile's default: H200, ours 1.13x faster with the graphs (README)
  step "backbone compiled with CUDA graphs at r50-224, 4 workers: without, then with, each in its own process"
  without_and_with_cudagraphs r50-224 2 300 cudagraphs224
}

run_blur() {  # r50-224: cuDNN's grouped convolution blur took 18.6 ms a step (H100 profile)
  step "Gaussian blur as sums of shifted slices (default, compiled) vs grouped convolutions: one view, then r50-224"
  timeout -k 10 150 $PY scripts/bench/bench_augment.py --device cuda --recipes imagenet100 --compile inductor --graphs stages \
    --blur-impls conv shift --out "$OUT/bench_augment_blur.json" 2>&1 | grep "^|"
  bench 200 --settings r50-224 --workers 4 --pipelines model ours --variants blur_impl=conv \
    --repeats 3 --out "$OUT/bench_blur.json"
}

run_decode() {
  step "JPEG input stages: nvJPEG decode (baseline vs progressive, threads), a worker's decode + crops vs PIL's, crop + resize"
  timeout -k 10 150 $PY scripts/bench/bench_decode.py --device cuda --out "$OUT/bench_decode.json" 2>&1 | grep -v "^$" | tail -16
}

run_stages() {  # r18-32's step is bound by the host: a compiled call has a fixed host cost to earn back
  step "host time to issue each stage of a 32 px view, eager vs compiled, batch 256"
  timeout -k 10 120 $PY scripts/bench/bench_augment.py --device cuda --recipes cifar10 --compile inductor --graphs stages \
    --stage-times --views 200 --out "$OUT/bench_stages.json" 2>&1 | grep "^|"
}

run_jpeg() {  # decides --jpeg-decode auto: the workers' decode became 2x faster per core after the rule was set
  step "r50-224, 4 and 8 workers: libjpeg-turbo decode + crops in the workers (ours, and its input side alone) vs nvJPEG (ours-other), 3 rounds in one process"
  bench 240 --settings r50-224 --workers 4 8 --jpeg-decode workers \
    --pipelines model ours ours-other augment --repeats 3 --out "$OUT/bench_jpeg.json"
}

run_profile() {
  step "where a step's time goes: host vs device time per region (inputs, forward, backward, optimizer)"
  timeout -k 10 90 $PY scripts/bench/profile_step.py --device cuda --setting r18-32 --host-profile 15 \
    --out "$OUT/profile_r18.json" 2>&1 | tail -37
  timeout -k 10 120 $PY scripts/bench/profile_step.py --device cuda --setting r50-224 --workers 4 --jpeg-dir "$TMP/jpegs" \
    --out "$OUT/profile_r50.json" 2>&1 | tail -20
}

run_variants() {
  step "precision / memory format / backbone compile, model-only"
  for v in "--settings r18-32 r50-224 --precision fp32 --no-channels-last" \
           "--settings r18-32 r50-224 --precision bf16 --no-channels-last" \
           "--settings r18-32 r50-224 --compile"; do
    tag=$(echo "$v" | tr -cd 'a-z0-9' | tail -c 24)
    bench 300 --workers 4 --pipelines model $v --out "$OUT/variant_$tag.json"
  done
}

run_sklearn() {
  step "scikit-learn on this machine's CPU, one penalty, same stopping rule"
  timeout -k 10 200 $PY scripts/bench/bench_linear_eval.py --device cuda --sklearn-points 1 \
    --out "$OUT/bench_linear_eval_sklearn.json" 2>&1 | tail -8
}

run_sweep() {
  step "linear evaluation sweep (GPU only)"
  timeout -k 10 120 $PY scripts/bench/bench_linear_eval.py --device cuda --sklearn-points 0 \
    --out "$OUT/bench_linear_eval.json" 2>&1 | tail -8
}

run_fidelity() {
  step "bf16 vs fp32 fidelity: SimCLR + CASSLE on colordigits"
  for prec in fp32 bf16; do for seed in 0 1; do
    timeout -k 10 90 $PY pretrain_cond.py --logdir "$TMP/fid-$prec-$seed" --dataset colordigits --model cifar_resnet18 \
      --framework simclr --batch-size 256 --max-epochs 30 --base-lr 0.05 --eval-freq 30 --ckpt-freq 30 \
      --precision $prec --seed $seed "${CASSLE[@]}" > "$TMP/fid-$prec-$seed.log" 2>&1
    echo "$prec seed $seed: $(cat "$TMP/fid-$prec-$seed/knn.json" 2>/dev/null || tail -2 "$TMP/fid-$prec-$seed.log")"
  done; done
}

# SIZE=gpu of scripts/colordigits_compare.sh, each (seed, method) in its own process at once. On the H200 the 9
# pretrainings side by side took 225 s; the probes then fit on the CPU (colordigits_probes.py --fit-device cpu),
# since one label's sweep on the GPU alone did not end in 75 s. Run this step alone in one call.
run_colordigits() {
  step "colordigits comparison at the GPU size (cifar_resnet18, 200 epochs, the published probe), 12 processes side by side"
  local dir="$TMP/colordigits-gpu" limit=${COLORDIGITS_LIMIT_S:-540} seed m
  mkdir -p "$dir"
  for seed in ${SEEDS:-0 1 2}; do for m in random-init baseline augself cassle; do
    SIZE=gpu SEEDS=$seed METHODS=$m COLLECT=0 PY=$PY OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=2 \
      timeout -k 10 "$limit" bash scripts/colordigits_compare.sh "$dir" > "$dir/$m-$seed.log" 2>&1 &
  done; done
  wait
  step "colordigits: the table"
  SIZE=gpu COLLECT_ONLY=1 PY=$PY timeout -k 10 120 bash scripts/colordigits_compare.sh "$dir" 2>&1 | tail -40
  tar czf "$OUT/colordigits_gpu.tgz" --exclude='*.pth' -C "$TMP" colordigits-gpu
}

run_entry() {
  step "entry point on a JPEG folder with nvJPEG decoding and the backbone as CUDA graphs (the defaults)"
  timeout -k 10 150 $PY pretrain_cond.py --logdir "$TMP/folder-run" --dataset folder --datadir "$TMP/jpegs" \
    --model resnet50 --framework moco --batch-size 256 --max-epochs 1 --eval-freq 0 --num-workers 4 \
    "${CASSLE[@]}" > "$TMP/entry.log" 2>&1
  echo "exit status $?"; grep -m1 "backbone" "$TMP/entry.log"; tail -3 "$TMP/entry.log"
}

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"
for s in "${@:-tests graphtests bench entry stl10 graph profile decode}"; do
  for name in $s; do "run_$name"; done
done
step "done"
