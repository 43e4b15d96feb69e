#!/usr/bin/env bash
# CI check for machines with nvcc but without cuBLAS/NCCL (and without a GPU): compile every kernel source
# (native/*.cu and each fused op's ops/*/*.cu, found here, not listed), for Hopper, and fail on any error or
# warning. Skips where no nvcc.
set -euo pipefail
cd "$(dirname "$0")"
nvcc_bin=$(command -v nvcc || true)
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc_bin" ]; then echo "check_kernels: no nvcc here; skipped"; exit 0; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sources=(native/*.cu ops/*/*.cu)
pids=()
for f in "${sources[@]}"; do
  "$nvcc_bin" -std=c++17 -arch=sm_90a -diag-suppress=186 -Werror all-warnings -c "$f" -o "$out/$(basename "$f" .cu).o" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ "$status" = 0 ] && echo "check_kernels: ${#sources[@]} kernel sources compile with $("$nvcc_bin" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
exit "$status"
