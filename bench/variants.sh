#!/usr/bin/env bash
# The block variants at the speedrun batch in one call of the GPU machine (issue 15's table): builds this tree, then
# for each variant a short speedrun run, and a markdown table of ms/step and peak allocated memory against the mean
# of the baselines of the same call (one before the variants, one after: a machine drifts by ~1 % within a call).
#   bash bench/variants.sh                      # logs and $OUT/variants.md
#   STEPS=12 VARIANTS="--canon AC|--mlp swiglu" COMMIT=$(git rev-parse --short HEAD) bash bench/variants.sh
# (COMMIT: the commit measured, for the table's first line; the machine's copy of the tree has no history of its own)
# FRESH_BUILD=0 keeps a warm machine's build of this same tree (the previous call's): no touch, an incremental build.
# Carry .gpu-box and data/builtin/gpt2 (backend-cuda/NOTES.md, "The device runs").
set -uo pipefail
OUT=${OUT:-/tmp/variants_out}
STEPS=${STEPS:-12}
VARIANTS=${VARIANTS:-"--block sas|--block sas-p|--canon AC|--canon ABCD|--mlp swiglu|--parallel|--attn-score softpick|--attn-score softmax1|--skip unet"}
mkdir -p "$OUT"
t0=$SECONDS
source .gpu-box/setup.sh >/dev/null 2>&1
[ -f build/cuda/Release/tsgpt_cuda.node ] || tar -xzf .gpu-box/min_js.tgz
# a warm machine keeps the previous call's build outputs, which may be newer than the copied sources: touch them all
[ "${FRESH_BUILD:-1}" = 0 ] || find backend-cuda \( -name '*.cu' -o -name '*.cuh' -o -name '*.cc' -o -name '*.h' \) -exec touch {} +
npm run build:cuda -- --parallel 16 >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
echo "=== [$((SECONDS - t0))s] built"
runs="$OUT/variants_runs.txt"  # every run's output in one file (the machine returns at most 8 files)
: >"$runs"
rows=()
run() {  # $1: flags ('' for the baseline); prints "ms peak_mib"
  local log
  log=$(mktemp)
  timeout 120 npx tsx train_gpt.ts --preset speedrun --backend cuda --corpus builtin-gpt2 --num-iterations "$STEPS" \
    --val-every 0 --warmup-steps 2 $1 >"$log" 2>&1
  { echo "### flags: ${1:-(baseline)}"; cat "$log"; grep -h '^peak memory' "$(ls -t logs/*.txt | head -1)"; } >>"$runs"
  local ms peak
  ms=$(grep -oE "^step:$STEPS/$STEPS .*step_avg:[0-9.]+" "$log" | grep -oE '[0-9.]+$')
  peak=$(grep -h '^peak memory' "$(ls -t logs/*.txt | head -1)" | grep -oE 'allocated: [0-9]+' | grep -oE '[0-9]+')
  rm -f "$log"
  echo "${ms:-failed} ${peak:-?}"
}
read -r base1 peak1 <<<"$(run '')"
echo "=== [$((SECONDS - t0))s] baseline $base1 ms, $peak1 MiB"
IFS='|' read -ra list <<<"$VARIANTS"
for flags in "${list[@]}"; do
  read -r ms peak <<<"$(run "$flags")"
  echo "=== [$((SECONDS - t0))s] $flags: $ms ms, $peak MiB"
  rows+=("$flags|$ms|$peak")
done
read -r base2 peak2 <<<"$(run '')"
echo "=== [$((SECONDS - t0))s] baseline again $base2 ms"
{
  echo "Commit ${COMMIT:-(not given)}, $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(date -u +%F)."
  echo "\`npx tsx train_gpt.ts --preset speedrun --backend cuda --corpus builtin-gpt2 --num-iterations $STEPS --val-every 0 --warmup-steps 2 <flags>\`:"
  echo "step_avg at step $STEPS; ratios against the mean of the two baselines ($base1 and $base2 ms/step)."
  echo
  echo "| variant | ms/step | × baseline | peak allocated | × baseline |"
  echo "| --- | --- | --- | --- | --- |"
  awk -v a="$base1" -v b="$base2" -v p="$peak1" 'BEGIN { printf "| baseline | %.1f | 1.00 | %.1f GiB | 1.00 |\n", (a + b) / 2, p / 1024 }'
  for row in "${rows[@]}"; do
    IFS='|' read -r flags ms peak <<<"$row"
    awk -v f="$flags" -v m="$ms" -v pk="$peak" -v a="$base1" -v b="$base2" -v p="$peak1" 'BEGIN {
      if (m == "failed") { printf "| `%s` | failed | | | |\n", f; exit }
      printf "| `%s` | %.1f | %.3f | %.1f GiB | %.2f |\n", f, m, m / ((a + b) / 2), pk / 1024, pk / p }'
  done
} | tee "$OUT/variants.md"
