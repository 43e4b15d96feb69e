#!/usr/bin/env bash
# Static SASS instruction counts of a CUDA source's kernels for sm_90a, without a disassembler (this repository's CPU
# machines have nvcc and ptxas, not cuobjdump or nvdisasm): each kernel's .text section in the cubin is 16 bytes an
# instruction. A kernel's unrolled rows are most of its code, so a change to a row's instructions shows here, though
# loops and branches make it differ from what ncu counts as run (NOTES: the twenty-seventh session's section).
#   bash bench/sass_counts.sh backend-cuda/ops/canon_conv/canon_conv.cu 'canonRowNormGradKernel<4, true'
#   (prints "<instructions> <kernel>" for each kernel whose demangled name matches the grep -E pattern; all without one)
set -euo pipefail
[ -f "${1:-}" ] || { echo "usage: bash bench/sass_counts.sh <file.cu> [grep -E pattern of the demangled kernel name]" >&2; exit 2; }
cubin=$(mktemp --suffix .cubin)
trap 'rm -f "$cubin"' EXIT
nvcc -std=c++17 -arch=sm_90a -O2 -diag-suppress=186 -cubin -x cu "$1" -o "$cubin"
readelf -SW "$cubin" 2>/dev/null | awk '$2 ~ /^\.text\./ { print $6, substr($2, 7) }' | while read -r size name; do
  echo "$((16#$size / 16)) $(echo "$name" | c++filt | sed 's/tsgpt::(anonymous namespace):://g; s/__nv_bfloat16/bf16/g')"
done | grep -E -- "${2:-.}" || { echo "sass_counts: no kernel of $1 matches '${2:-.}'" >&2; exit 1; }
