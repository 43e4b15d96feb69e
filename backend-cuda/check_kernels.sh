#!/usr/bin/env bash
# CI check for machines with nvcc but without cuBLAS/NCCL (and without a GPU): compile every kernel source
# (native/*.cu and each fused op's ops/*/*.cu, found here, not listed) and the Node-free benchmarks beside them
# (bench/*_native.cu: they call the launchers, so a launcher's new signature must reach them too), for Hopper (the
# default build) and for Ampere (sm_80: the oldest target the README's other-GPU build names; no wgmma, no vector
# atomics), and fail on any error or warning. Skips where no nvcc.
set -euo pipefail
cd "$(dirname "$0")"
nvcc_bin=$(command -v nvcc || true)
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc_bin" ]; then echo "check_kernels: no nvcc here; skipped"; exit 0; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sources=(native/*.cu ops/*/*.cu ../bench/*_native.cu)
status=0
for arch in sm_90a sm_80; do  # one arch at a time: as many compilers at once as there are sources
  pids=()
  for f in "${sources[@]}"; do
    "$nvcc_bin" -std=c++17 -arch=$arch -diag-suppress=186 -Werror all-warnings -c "$f" -o "$out/$(basename "$f" .cu).$arch.o" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
done
[ "$status" = 0 ] && echo "check_kernels: ${#sources[@]} kernel and benchmark sources compile for sm_90a and sm_80 with $("$nvcc_bin" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
exit "$status"
