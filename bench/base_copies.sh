#!/usr/bin/env bash
# Source files as they were at git revisions, for a same-call A/B on the GPU machine: each REV:PATH (git show's syntax)
# is written to .base_<name>.txt beside PATH, untracked (it travels with the tree, and no build glob picks it up), and in
# every copy an #include of one of the copied files' names points at that file's copy, so a kernel and the benchmark
# that calls it build together as they were even where a launcher's signature changed since. Build a copied .cu with
# nvcc's -x cu. Prints the copies' paths. Commit by file name, never a folder that holds copies (two commits took them).
#   bash bench/base_copies.sh REV:PATH...
#   e.g. bash bench/base_copies.sh ee26678~1:backend-cuda/ops/canon_conv/canon_conv.{cu,cuh,h} 5e04924:bench/canon_native.cu
#        nvcc -std=c++17 -arch=sm_90a -O2 -x cu bench/.base_canon_native.cu.txt -x cu backend-cuda/ops/canon_conv/.base_canon_conv.cu.txt
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: bash bench/base_copies.sh REV:PATH..." >&2; exit 2; }
copies=() names=()
for spec in "$@"; do
  path=${spec#*:}
  [ "$path" != "$spec" ] && [ -n "${spec%%:*}" ] || { echo "base_copies: $spec is not REV:PATH" >&2; exit 2; }
  copy="$(dirname "$path")/.base_$(basename "$path").txt"
  git show "$spec" > "$copy" || { rm -f "$copy"; echo "base_copies: git show $spec failed" >&2; exit 2; }
  copies+=("$copy") names+=("$(basename "$path")")
done
for copy in "${copies[@]}"; do
  for name in "${names[@]}"; do
    sed -i -E "s|^(#include \"([^\"]*/)?)${name//./\\.}\"|\1.base_${name}.txt\"|" "$copy"
  done
  echo "$copy"
done
