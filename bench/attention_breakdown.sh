#!/usr/bin/env bash
# What bounds the fused attention's backward on the GPU: bench/attention_native.cu built three ways from this tree and
# run on one problem: the kernels as they are, and two timing-only copies of causal_attention_mma.cu, one without the dq
# rows' bulk reductions (the dq products and the staged rows remain) and one without the softmax gradient's elementwise
# step (sᵀ and dPᵀ go on to the products as they come). The time a copy saves is that part's share; the
# copies' errors against the exact kernels mean nothing. Needs nvcc and, to run, a GPU (the device machine: NOTES.md).
#   bash bench/attention_breakdown.sh [B T H Hk h window score docLen]   (default: the bench's stream, softmax)
#   COMPILE_ONLY=1: build the three and stop (a check where there is no GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 0 ] && set -- 1 32768 6 6 128 896 0 2048
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kernels=backend-cuda/ops/causal_attention
# variant NAME EDIT: the bench built from a copy of the sources with EDIT ("old\n=>\nnew", matching once) applied
variant() {
  mkdir -p "$work/$1/bench" "$work/$1/$kernels" "$work/$1/backend-cuda/native"
  cp bench/attention_native.cu bench/native_bench.h "$work/$1/bench/"
  cp $kernels/*.cu $kernels/*.cuh $kernels/*.h "$work/$1/$kernels/"
  cp backend-cuda/native/*.h backend-cuda/native/*.cuh "$work/$1/backend-cuda/native/"
  python3 - "$work/$1/$kernels/causal_attention_mma.cu" "$2" <<'PY'
import sys
path, edit = sys.argv[1], sys.argv[2]
if edit:
    s, (old, new) = open(path).read(), edit.split('\n=>\n')
    if s.count(old) != 1:
        sys.exit(f'attention_breakdown.sh: causal_attention_mma.cu changed; this edit no longer applies:\n{old}')
    open(path, 'w').write(s.replace(old, new))
PY
  (cd "$work/$1" && nvcc -std=c++17 -arch=sm_90a -O2 bench/attention_native.cu $kernels/causal_attention.cu \
    $kernels/causal_attention_mma.cu -o "$work/attention_$1" 2>&1 | { grep -v C7512 || true; })
}
pids=()
variant as-is '' & pids+=($!)
variant no-dq-reduction '      if (reducesRow) reduceAddBulk(
=>
      if (reducesRow && k0 < 0) reduceAddBulk(' & pids+=($!)
variant no-softmax-grad '      if (full)
        scoreGrads<kScore, false>
=>
      if (k0 < 0)  // never: the elementwise step below is what this copy leaves out
      if (full)
        scoreGrads<kScore, false>' & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done  # the three builds at once
[ "${COMPILE_ONLY:-}" = 1 ] && { echo "attention_breakdown.sh: built $(ls "$work" | grep -c '^attention_') variants"; exit 0; }
for v in as-is no-dq-reduction no-softmax-grad as-is; do
  echo "$v: $("$work/attention_$v" "$@" | grep -E 'tensor cores' | tr '\n' ' ')"
done
