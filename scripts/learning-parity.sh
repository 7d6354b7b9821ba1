#!/usr/bin/env bash
# Learning parity: `trainer train` and the PyTorch/timm reference trainer
# (crates/trainer/scripts/reference_trainer.py train) on configs/bench.toml — the same synthetic
# split (10 validation and 30 test images per class), the same recipe, each method x seed — then
# the side-by-side table in RESULTS.md (between the learning-parity markers; the prose around it
# stays). Both sides report the test split at the best validation epoch.
#
# Usage:  PYTHON=venv/bin/python scripts/learning-parity.sh [SEEDS] [METHODS...]
#         PYTHON=venv/bin/python scripts/learning-parity.sh table [SEEDS]
# Needs torch 2.15, torchvision 0.29, timm 1.0.31, safetensors (see the reference script's header).
# The two sides run side by side, one thread each (RAYON_NUM_THREADS=1, torch threads 1); a run
# whose result exists is skipped, so an interrupted benchmark resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
out=runs/learning-parity
config=configs/bench.toml
split=data/bench-split
mkdir -p "$out"

table() {
  "$python" crates/trainer/scripts/learning_parity_table.py --runs "$out" --seeds "$1" \
    --results RESULTS.md --command "scripts/learning-parity.sh $1"
}

if [ "${1:-}" = table ]; then
  table "${2:-3}"
  exit 0
fi
seeds=${1:-3}
shift || true
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(ce ce-resample paco spmix)

cargo build --release -p trainer
# A copy, so a rebuild during the hour-long loop does not swap the binary under it.
cp target/release/trainer "$out/trainer"
if [ ! -f "$split/split.json" ]; then
  # Generate and prepare the split once (a zero-epoch run is not allowed: prepare through a run
  # that the loop would start anyway).
  RAYON_NUM_THREADS=2 "$out/trainer" train --config "$config" --set 'method.name="ce"' \
    --set run.epochs=1 --set "run.output_dir=\"$out/warmup\"" --no-test >/dev/null
fi

for seed in $(seq 0 $((seeds - 1))); do
  for m in "${methods[@]}"; do
    rust_dir="$out/rust/$m-s$seed"
    torch_json="$out/torch/$m-s$seed.json"
    pids=()
    if ! ls "$rust_dir"/*/report.json >/dev/null 2>&1; then
      mkdir -p "$rust_dir"
      RAYON_NUM_THREADS=1 "$out/trainer" train --config "$config" --set "method.name=\"$m\"" \
        --set "run.seed=$seed" --set "run.output_dir=\"$rust_dir\"" --set "run.name=\"$m-s$seed\"" \
        > "$rust_dir.log" 2>&1 &
      pids+=($!)
    fi
    if [ ! -f "$torch_json" ]; then
      mkdir -p "$out/torch"
      "$python" crates/trainer/scripts/reference_trainer.py train --config "$config" --method "$m" \
        --split "$split" --seed "$seed" --out "$torch_json.part" --threads 1 > "$out/torch/$m-s$seed.log" 2>&1 \
        && mv "$torch_json.part" "$torch_json" &
      pids+=($!)
    fi
    for p in "${pids[@]}"; do wait "$p"; done
    echo "$(date +%H:%M:%S) seed $seed $m done"
  done
done
table "$seeds"
