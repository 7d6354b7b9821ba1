#!/usr/bin/env bash
# RESULTS.md on the synthetic benchmark preset (configs/bench.toml: 10 validation and 30 test images
# per class, tiny Hybrid-ViT at 48 px, 20 epochs): every Table 1 and Table 2 row the trainer offers,
# each with SEEDS seeds (default 3), test split at the best validation epoch. Runs go to
# runs/results/; RESULTS.md gets mean and spread per row and each row's paired difference to SPMix
# with a 95% confidence interval between the results markers (scripts/results_table.py; its
# checks: python3 -m unittest discover -s scripts -p 'test_results_table.py').
# Usage:  scripts/results.sh [SEEDS] [extra --set options, e.g. run.epochs=6]
#         scripts/results.sh table [SEEDS]     # only rewrite RESULTS.md from the runs already there
# Seeds are the outer loop, so an interrupted run still has every row at the first seeds; a run
# whose report.json exists is not run again. Time on an idle 2-core machine, one run at a time:
# about 4 min for a ce run and 15 min for an spmix run, ~2 h a seed for all 9 rows; all runs share
# the prepared split (data/bench-split).
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/results
rows=(
  "spmix|"
  "ce|--set method.name=\"ce\""
  "ce-resample|--set method.name=\"ce-resample\""
  "paco|--set method.name=\"paco\""
  "spmix, no patch (saliency per sample)|--set mix.patch=false"
  "spmix, no saliency (random per patch)|--set mix.saliency=false"
  "spmix, neither (plain token mixup)|--set mix.patch=false --set mix.saliency=false"
  "spmix, instance-sampled foreground|--set mix.foreground=\"instance\""
  "spmix, shared keys (no momentum encoder)|--set method.key_network=\"shared\""
)
config=configs/bench.toml
run_name() { echo "$1" | tr -c 'a-zA-Z0-9\n-' '_'; }

table() {
  local seeds=$1 extra=$2
  local labels=()
  for row in "${rows[@]}"; do labels+=("${row%%|*}"); done
  # Mean ± sd per row and the paired (same-seed) 95% interval of each row's difference to SPMix
  # (the first row); only the block between the results markers of RESULTS.md is rewritten.
  python3 scripts/results_table.py --runs "$out" --seeds "$seeds" --config "$config" \
    --command "$(echo "scripts/results.sh $seeds $extra" | sed 's/ *$//')" --results RESULTS.md \
    -- "${labels[@]}"
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
for seed in $(seq 0 $((seeds - 1))); do
  for row in "${rows[@]}"; do
    label=${row%%|*}; opts=${row#*|}
    name=$(run_name "$label")-s$seed
    if ls "$out/$name"-*/report.json >/dev/null 2>&1; then
      echo "skip $name (done)"; continue
    fi
    # shellcheck disable=SC2086
    "$bin" train --config "$config" $opts --set run.seed=$seed --set run.name=\"$name\" \
      --set run.output_dir=\"$out\" "${extra[@]}" 2>/dev/null | tail -n 6
    table "$seeds" "${extra[*]:-}" >/dev/null
  done
done
table "$seeds" "${extra[*]:-}"
