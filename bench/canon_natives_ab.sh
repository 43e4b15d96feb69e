#!/usr/bin/env bash
# Canon's kernels against a revision's, without Node, in one call of the GPU machine: CanonAttentionInputs (the speedrun's
# layer with ve), Canon A's and C's row norm and Canon D's relu2, each way, the tree's build and the revision's built from
# copies, run alternately (the machine drifts within a call). Each session rewrote these nvcc lines by hand.
#   here, first:      bash bench/canon_natives_ab.sh copies REV   (bench/base_copies.sh of the kernels and benchmarks at REV:
#                     untracked copies that travel with the tree; the device's copy of the tree has no history)
#   on the machine:   ROUNDS=2 bash bench/canon_natives_ab.sh run   (logs under $OUT; nvcc on the PATH, no Node needed);
#                     `build` and `time` are its two halves: build beside the addon's build (device_ab.sh's NATIVE_BUILD),
#                     time after it (NATIVE), so that no compiler shares the host with the timings
# Both builds check their results against the benchmarks' float64 references (PASS or FAIL in the log).
set -uo pipefail
cd "$(dirname "$0")/.."
CAI=backend-cuda/ops/canon_attention_inputs/canon_attention_inputs.cu
CONV=backend-cuda/ops/canon_conv/canon_conv.cu
CAI_BENCH=bench/canon_attention_inputs_native.cu
CONV_BENCH=bench/canon_native.cu
copy() { echo "$(dirname "$1")/.base_$(basename "$1").txt"; }  # where base_copies.sh puts a file's copy (its naming)
case "${1:-}" in
  copies)
    [ -n "${2:-}" ] || { echo "usage: bash bench/canon_natives_ab.sh copies REV" >&2; exit 2; }
    exec bash bench/base_copies.sh "$2:$CAI" "$2:$CONV" "$2:${CONV%.cu}.cuh" "$2:$CAI_BENCH" "$2:$CONV_BENCH"
    ;;
  build | time | run) ;;
  *) echo "usage: bash bench/canon_natives_ab.sh copies REV | build | time | run" >&2; exit 2 ;;
esac
for f in "$CAI" "$CONV" "$CAI_BENCH" "$CONV_BENCH"; do
  [ -f "$(copy "$f")" ] || { echo "canon_natives_ab: no copy of $f (run 'copies REV' here first)"; exit 2; }
done
OUT=${OUT:-/tmp/canon_natives_ab}
ROUNDS=${ROUNDS:-2}
BIN=${BIN:-/tmp/canon_natives_ab_bin}
mkdir -p "$OUT" "$BIN"
build() {
  local shared="backend-cuda/ops/attention_inputs/attention_inputs.cu backend-cuda/native/reduce.cu backend-cuda/native/elementwise.cu"
  local nvcc=(nvcc -std=c++17 -arch=sm_90a -O2 -diag-suppress=186) failed=0 t0=$SECONDS
  # the revision's sources last, after -x cu (their .txt names would not compile as CUDA otherwise)
  "${nvcc[@]}" "$CAI_BENCH" "$CAI" "$CONV" $shared -o "$BIN/cai_new" >"$OUT/build_cai_new.log" 2>&1 &
  "${nvcc[@]}" $shared -x cu "$(copy "$CAI_BENCH")" "$(copy "$CAI")" "$(copy "$CONV")" -o "$BIN/cai_base" >"$OUT/build_cai_base.log" 2>&1 &
  "${nvcc[@]}" "$CONV_BENCH" "$CONV" -o "$BIN/conv_new" >"$OUT/build_conv_new.log" 2>&1 &
  "${nvcc[@]}" -x cu "$(copy "$CONV_BENCH")" "$(copy "$CONV")" -o "$BIN/conv_base" >"$OUT/build_conv_base.log" 2>&1 &
  for job in $(jobs -p); do wait "$job" || failed=1; done
  if [ "$failed" = 1 ]; then tail -n 20 "$OUT"/build_*.log; echo "canon_natives_ab: a build failed"; exit 1; fi
  rm -f "$OUT"/build_*.log
  echo "canon_natives_ab: built in $((SECONDS - t0)) s"
}
timings() {
  for b in cai_new cai_base conv_new conv_base; do
    [ -x "$BIN/$b" ] || { echo "canon_natives_ab: no $BIN/$b (build first)"; exit 2; }
  done
  echo "on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  local log="$OUT/canon_natives_ab.txt" round side problem bin args name
  : >"$log"
  for round in $(seq "$ROUNDS"); do
    for side in new base; do
      for problem in "cai 1 32768 6 6 128 1 1" "conv 1 32768 768 rows" "conv 1 32768 3072 relu2"; do
        read -r bin args <<<"$problem"
        name=$([ "$bin" = cai ] && echo canon_attention_inputs_native || echo canon_native)
        echo "== round $round, $side: $name $args" >>"$log"
        "$BIN/${bin}_$side" $args 2>&1 | grep -E '^seed|forward|backward|PASS|FAIL|ops it replaces|rror' >>"$log"
      done
    done
  done
  cat "$log"
}
case "$1" in
  build) build ;;
  time) timings ;;
  run) build && timings ;;
esac
