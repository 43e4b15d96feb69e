#!/usr/bin/env bash
# CI check for machines with nvcc but without cuBLAS/NCCL (and without a GPU): compile every kernel source
# (native/*.cu and each fused op's ops/*/*.cu, found here, not listed) and the Node-free benchmarks beside them
# (bench/*_native.cu: they call the launchers, so a launcher's new signature must reach them too), for Hopper (the
# default build) and for Ampere (sm_80: the oldest target the README's other-GPU build names; no wgmma, no vector
# atomics), and fail on any error or warning, or on a kernel that spills registers on sm_90a (ptxas --resource-usage)
# unless kernel_spills.txt allows it (and on a line there that no kernel needs any more). Skips where no nvcc.
set -euo pipefail
cd "$(dirname "$0")"
nvcc_bin=$(command -v nvcc || true)
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc_bin" ]; then echo "check_kernels: no nvcc here; skipped"; exit 0; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sources=(native/*.cu ops/*/*.cu ../bench/*_native.cu)
status=0
# Both targets in one nvcc a source: its preprocessing, cudafe++ and host compile run once, not once a target, and
# -gencode makes no compute_90 PTX (-arch=sm_90a ran cicc a second time for it: 12 of canon_conv.cu's 36 s). 31 % less
# compile time on canon_conv.cu than the two -arch=… compiles (40 s against 58).
pids=()
for f in "${sources[@]}"; do
  log="$out/$(basename "$f" .cu).log"  # ptxas's registers and spills of each kernel, for both targets
  { "$nvcc_bin" -std=c++17 -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80 -diag-suppress=186 \
      -Werror all-warnings --resource-usage -c "$f" -o "$out/$(basename "$f" .cu).o" 2> "$log" || { grep -v '^ptxas info' "$log" >&2; exit 1; }; } &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ "$status" = 0 ] && echo "check_kernels: ${#sources[@]} kernel and benchmark sources compile for sm_90a and sm_80 with $("$nvcc_bin" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"

[ "$status" = 0 ] || exit "$status"  # (a source that did not build reports no spills)
# Spills: each kernel (demangled) that ptxas spilled for sm_90a, against kernel_spills.txt's patterns
if ! command -v c++filt > /dev/null; then echo "check_kernels: no c++filt here; the spill check skipped"; exit "$status"; fi
patterns=() used=()
while IFS= read -r line; do
  [[ -z "$line" || "$line" == \#* ]] && continue
  patterns+=("${line%% | *}") used+=(0)
done < kernel_spills.txt
spilled=0
while read -r bytes mangled; do
  name=$(c++filt "$mangled") allowed=0
  for i in "${!patterns[@]}"; do
    if grep -qE -- "${patterns[$i]}" <<< "$name"; then allowed=1 used[$i]=1; fi
  done
  spilled=$((spilled + 1))
  if [ "$allowed" = 0 ]; then
    echo "check_kernels: $name spills $bytes bytes on sm_90a (ptxas --resource-usage); fix it, or allow it in backend-cuda/kernel_spills.txt with the reason" >&2
    status=1
  fi
done < <(cat "$out"/*.log | awk '
  /Compiling entry function/ { kernel = ""; if ($0 ~ /for \047sm_90a\047/) { match($0, /\047[^\047]+\047/); kernel = substr($0, RSTART + 1, RLENGTH - 2) } }
  /bytes spill stores/ && kernel != "" { for (i = 1; i < NF; i++) if ($(i + 1) == "bytes" && $(i + 2) == "spill" && $(i + 3) ~ /^stores/ && $i > 0) print $i, kernel }')
for i in "${!patterns[@]}"; do
  if [ "${used[$i]}" = 0 ]; then
    echo "check_kernels: kernel_spills.txt allows \"${patterns[$i]}\", but no kernel matching it spills now: remove the line" >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "check_kernels: $spilled kernel instances spill on sm_90a, each allowed by kernel_spills.txt (${#patterns[@]} lines)"
exit "$status"
