#!/usr/bin/env bash
# One call on the GPU machine that measures a change against its parent (backend-cuda/NOTES.md, "The device runs"):
# build this tree, run the GPU tests given, then 40-step speedrun runs at the PyTorch comparison's windows, then the
# same runs with BASE_PATCH reversed (the parent's code) and one incremental rebuild; logs under $OUT.
# Make the patch here first, untracked (it travels with the tree):
#   git diff <parent> HEAD -- backend-cuda tfjs_node.ts train_gpt.ts ':!*.test.ts' ':!*.md' > .base.patch
# Carry .gpu-box and data/builtin/gpt2 (the corpus's source package is not on the machine: without it every run fails).
#   TESTS="backend-cuda/ops/rms_norm/rms_norm.test.ts test/cuda_model.test.ts" bash bench/device_ab.sh
#   RUNS="new base new base" alternates, RUNS="" runs none; NATIVE="cmd ..." runs a Node-free check after the tests, and
#   NATIVE_BUILD="nvcc ... -o /tmp/a & nvcc ... -o /tmp/b & wait" builds its binaries beside the addon's build (their
#   nvcc lines are in their headers; a parent's kernel from an untracked copy compiled with `-x cu`, which the addon's
#   glob skips).
set -uo pipefail
OUT=${OUT:-/tmp/device_ab_out}
BASE_PATCH=${BASE_PATCH:-.base.patch}
RUNS=${RUNS-"new base"}  # unset: one run of each; set, even empty: as given
TRAIN=${TRAIN:-"--num-iterations 40 --val-every 10 --seed 0 --window-schedule 7 --val-window 7"}
mkdir -p "$OUT"
for f in ${TESTS:-}; do  # before the build: a misspelt test file otherwise fails only after it, and no test runs
  [ -f "$f" ] || { echo "device_ab: TESTS names $f, which is not in this tree"; exit 2; }
done
[[ " $RUNS " != *" base "* || -f $BASE_PATCH ]] || { echo "device_ab: RUNS has base but there is no $BASE_PATCH (make it first: see the header)"; exit 2; }
t0=$SECONDS
stage() { echo "=== [$((SECONDS - t0))s] $*"; }
source .gpu-box/setup.sh >/dev/null 2>&1
[ -f build/cuda/Release/tsgpt_cuda.node ] || tar -xzf .gpu-box/min_js.tgz
build() {  # incremental: patch gives the files it changes new times; its log comes back only when it fails ($OUT
  # brings back 8 files at most, and the build logs took the places of run logs)
  npm run build:cuda -- --parallel 16 >"$OUT/build_$1.log" 2>&1 || { tail -30 "$OUT/build_$1.log"; echo "BUILD FAILED ($1)"; exit 1; }
  rm -f "$OUT/build_$1.log"
}
train() {  # $1: the side; $2: the run's index
  local log="$OUT/train_$1_$2.txt"
  timeout 150 npx tsx train_gpt.ts --preset speedrun --backend cuda --corpus builtin-gpt2 $TRAIN >"$log" 2>&1
  echo "$1 ($2): $(grep -E '^step:[0-9]+/[0-9]+ val_loss' "$log" | tail -1 | grep -oE '(val_loss|step_avg):[0-9.]+' | tr '\n' ' ')$(grep -h '^peak' "$(ls -t logs/*.txt | head -1)")"
}
stage build
# a warm machine keeps the previous call's build outputs, which may be newer than the copied sources: touch them all
find backend-cuda \( -name '*.cu' -o -name '*.cuh' -o -name '*.cc' -o -name '*.h' \) -exec touch {} +
native_pid=""
if [ -n "${NATIVE_BUILD:-}" ]; then
  bash -c "$NATIVE_BUILD" >"$OUT/native_build.log" 2>&1 &
  native_pid=$!
fi
build new
if [ -n "$native_pid" ]; then
  wait "$native_pid" || { tail -20 "$OUT/native_build.log"; echo "NATIVE_BUILD failed"; }
fi
if [ -n "${TESTS:-}" ]; then
  stage "tests: $TESTS"
  timeout 280 node --import tsx --test $TESTS >"$OUT/gpu_tests.log" 2>&1; echo "exit $?"
  grep -E "^# (tests|pass|fail|skipped)|^not ok" "$OUT/gpu_tests.log" | tail -8
fi
if [ -n "${NATIVE:-}" ]; then
  stage "native: $NATIVE"
  timeout ${NATIVE_TIMEOUT:-120} bash -c "$NATIVE" >"$OUT/native.log" 2>&1; echo "exit $?"
  tail -20 "$OUT/native.log"
fi
side=new i=0
for want in $RUNS; do
  if [ "$want" != "$side" ]; then
    stage "switch to $want"
    patch $([ "$want" = base ] && echo -R) -p1 <"$BASE_PATCH" >/dev/null || { echo "the patch does not apply ($want)"; exit 1; }
    build "$want"
    side=$want
  fi
  i=$((i + 1))
  train "$side" "$i"
done
stage done
