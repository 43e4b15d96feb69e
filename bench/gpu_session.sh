#!/usr/bin/env bash
# One call on the GPU machine (see backend-cuda/NOTES.md): set up Node, build the addon once, then the
# NCCL test, the step benchmark with a per-kernel profile, a short real training run of the speedrun
# model, and the other GPU tests, each under its own time limit, logs under $OUT.
# Carry: .gpu-box and data/builtin/gpt2 (build it here first: see NOTES.md).
#   BENCH_ARGS / TRAIN_ARGS override the benchmark's and the training run's flags; STAGES picks stages.
#   BENCH_ARGS2 runs a second benchmark, e.g. "--steps 5 --collective nccl" (the all-reduce
#   time through NCCL); TRAIN_ARGS="... --collective nccl" trains through NCCL at one rank.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_session_out}
mkdir -p "$OUT"
t0=$SECONDS
stage() { echo "=== [$((SECONDS - t0))s] $*"; }
STAGES=${STAGES:-"build nccl bench train tests"}
# The preset's layout: one packed stream of 32,768 tokens a micro-step (--data-layout rows --device-batch 4 for rows).
BENCH_ARGS=${BENCH_ARGS:-"--steps 5 --warmup 2 --profile"}
TRAIN_ARGS=${TRAIN_ARGS:-"--batch-tokens 65536 --num-iterations 30 --val-every 10 --val-tokens 262144 --warmup-steps 2 --print-every 1"}

source .gpu-box/setup.sh
# The bundle was packed with PACK_EXCLUDE='*.min.js', which drops files that isexe, tar (cmake-js) and
# seedrandom load: restore them from a small tarball made here (see NOTES.md).
[ -f .gpu-box/min_js.tgz ] && tar -xzf .gpu-box/min_js.tgz
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,power.draw --format=csv

if [[ $STAGES == *build* ]]; then
  stage "build"
  npm run build:cuda -- --parallel 16 >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
  grep -iE "warning|nccl" "$OUT/build.log" | head -20
fi
if [[ $STAGES == *nccl* ]]; then
  stage "test/cuda_nccl.test.ts"
  timeout 90 node --import tsx --test test/cuda_nccl.test.ts >"$OUT/tests.log" 2>&1; echo "exit $?"
  grep -E "^# (tests|pass|fail|skipped)|not ok|Error" "$OUT/tests.log" | head -20
fi
if [[ $STAGES == *bench* ]]; then
  stage "bench: $BENCH_ARGS"
  timeout 170 npx tsx bench/step.ts $BENCH_ARGS --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" | grep -vE "^(warm-up|step) " ; echo "exit ${PIPESTATUS[0]}"
  grep -E "^(warm-up|step) " "$OUT/bench.log" | tail -4
fi
if [[ -n ${BENCH_ARGS2:-} ]]; then
  stage "bench: $BENCH_ARGS2"
  timeout 120 npx tsx bench/step.ts $BENCH_ARGS2 --out "$OUT/bench2.json" >"$OUT/bench2.log" 2>&1; echo "exit $?"
  grep -vE "^(warm-up|step) " "$OUT/bench2.log" | tail -3
fi
if [[ $STAGES == *train* ]]; then
  stage "train: $TRAIN_ARGS"
  rm -rf logs
  timeout 280 npx tsx train_gpt.ts --preset speedrun --backend cuda $TRAIN_ARGS >"$OUT/train.out" 2>&1; echo "exit $?"
  grep -vE "^step [0-9]+/[0-9]+ train_loss" "$OUT/train.out" | tail -12
  grep -E "^step [0-9]+/[0-9]+ train_loss" "$OUT/train.out" | awk 'NR%5==1' | tail -8
  f=$(ls logs/*.txt 2>/dev/null | head -1); [ -n "$f" ] && cp "$f" "$OUT/train_log.txt" && sed -n '/^=\{100\}$/,$p' "$f" | grep -E "^step:.*val_loss|^peak" 
fi
if [[ $STAGES == *tests* ]]; then
  stage "GPU tests: test/cuda_*.test.ts backend-cuda/ops/*/*.test.ts"
  timeout 300 node --import tsx --test test/cuda_*.test.ts backend-cuda/ops/*/*.test.ts >>"$OUT/tests.log" 2>&1; echo "exit $?"
  grep -E "^# (tests|pass|fail|skipped)|^not ok|^# cuda" "$OUT/tests.log" | tail -14
fi
stage "done"
