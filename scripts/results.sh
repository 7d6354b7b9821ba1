#!/usr/bin/env bash
# RESULTS.md on the synthetic benchmark preset (configs/bench.toml: 10 validation and 30 test images
# per class, tiny Hybrid-ViT at 48 px, 20 epochs): every Table 1 and Table 2 row the trainer offers,
# each with SEEDS seeds (default 3), test split at the best validation epoch. Runs go to
# runs/results/; RESULTS.md gets mean and spread per row and each row's paired difference to SPMix
# with a 95% confidence interval between the results markers (scripts/results_table.py; its
# checks: python3 -m unittest discover -s scripts -p 'test_results_table.py').
# `--backbone resnet50` does the same for Table 1's ResNet-50 rows (spmix and the five baselines)
# on configs/bench-resnet50.toml (bench.toml with a tiny four-stage resnet50d): runs in
# runs/results-resnet50/, the table in RESULTS.md's `results:resnet50` block.
# Usage:  scripts/results.sh [--backbone hybrid|resnet50] [SEEDS] [extra --set options, e.g. run.epochs=6]
#         scripts/results.sh [--backbone resnet50] table [SEEDS]   # only rewrite RESULTS.md from the runs there
#         JOBS=2 scripts/results.sh ...   # two runs at a time, one compute thread each
# Seeds are the outer loop, so an interrupted run still has every row at the first seeds; a run
# whose report.json exists is not run again. Time on an idle 2-core machine, one run at a time:
# about 4 min for a ce run and 15 min for an spmix run, ~2 h a seed for the 9 rows other than mislas
# and bcl (not timed yet); all runs share the prepared split (data/bench-split). mislas: the last 4
# of the 20 epochs are its stage 2.
set -euo pipefail
cd "$(dirname "$0")/.."
backbone=hybrid
if [ "${1:-}" = --backbone ]; then backbone=${2:?--backbone needs hybrid or resnet50}; shift 2; fi
table_rows=(
  "spmix|"
  "ce|--set method.name=\"ce\""
  "ce-resample|--set method.name=\"ce-resample\""
  "paco|--set method.name=\"paco\""
  "mislas|--set method.name=\"mislas\" --set mislas.stage2_epochs=4"
  "bcl|--set method.name=\"bcl\""
)
case $backbone in
  hybrid)
    config=configs/bench.toml; out=runs/results; block=(); backbone_flag=""
    rows=(
      "${table_rows[@]}"
      "spmix, no patch (saliency per sample)|--set mix.patch=false"
      "spmix, no saliency (random per patch)|--set mix.saliency=false"
      "spmix, neither (plain token mixup)|--set mix.patch=false --set mix.saliency=false"
      "spmix, instance-sampled foreground|--set mix.foreground=\"instance\""
      "spmix, shared keys (no momentum encoder)|--set method.key_network=\"shared\""
    ) ;;
  resnet50)
    config=configs/bench-resnet50.toml; out=runs/results-resnet50; block=(--block resnet50)
    backbone_flag="--backbone resnet50 "
    rows=("${table_rows[@]}") ;;
  *) echo "results.sh: --backbone $backbone: expected hybrid or resnet50" >&2; exit 2 ;;
esac
run_name() { echo "$1" | tr -c 'a-zA-Z0-9\n-' '_'; }

table() {
  local seeds=$1 extra=$2
  local labels=()
  for row in "${rows[@]}"; do labels+=("${row%%|*}"); done
  # Mean ± sd per row and the paired (same-seed) 95% interval of each row's difference to SPMix
  # (the first row); only the block between the results markers of RESULTS.md is rewritten.
  python3 scripts/results_table.py --runs "$out" --seeds "$seeds" --config "$config" \
    --command "$(echo "scripts/results.sh $backbone_flag$seeds $extra" | sed 's/ *$//')" --results RESULTS.md \
    "${block[@]}" -- "${labels[@]}"
}

if [ "${1:-}" = table ]; then
  table "${2:-3}" ""
  exit 0
fi
seeds=${1:-3}; shift || true
extra=()
for s in "$@"; do extra+=(--set "$s"); done
cargo build --release -p trainer
# A private copy, so a rebuild during the hour-long run cannot change the binary under it.
bin=$(mktemp -d)/trainer
cp "${CARGO_TARGET_DIR:-target}/release/trainer" "$bin"
mkdir -p "$out"
jobs=${JOBS:-1}
run_one() {
  local seed=$1 index=$2
  local row=${rows[$index]}
  local label=${row%%|*} opts=${row#*|}
  local name
  name=$(run_name "$label")-s$seed
  if ls "$out/$name"-*/report.json >/dev/null 2>&1; then
    echo "skip $name (done)"; return 0
  fi
  # Several runs at a time share the cores: one compute thread each.
  local threads=()
  [ "$jobs" -gt 1 ] && threads=(env RAYON_NUM_THREADS=1)
  # shellcheck disable=SC2086
  "${threads[@]}" "$bin" train --config "$config" $opts --set run.seed=$seed --set run.name=\"$name\" \
    --set run.output_dir=\"$out\" "${extra[@]}" 2>/dev/null | tail -n 6 ||
    echo "results.sh: $name failed (no report.json; run it again to retry)" >&2
  table "$seeds" "${extra[*]:-}" >/dev/null
}
for seed in $(seq 0 $((seeds - 1))); do
  for index in "${!rows[@]}"; do
    if [ "$jobs" -le 1 ]; then
      run_one "$seed" "$index"
    else
      # At most JOBS runs at once, started in table order.
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
      run_one "$seed" "$index" &
    fi
  done
done
wait
table "$seeds" "${extra[*]:-}"
