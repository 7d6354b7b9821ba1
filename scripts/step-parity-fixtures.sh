#!/usr/bin/env bash
# Regenerates crates/trainer/tests/fixtures/step_parity/{METHOD}.trace.json and .final.safetensors:
# the Rust trainer writes each method's first 20 steps (initial state, inputs, trace), the
# PyTorch/timm reference replays them. Needs a Python with torch, timm, safetensors:
#   python -m venv venv && venv/bin/pip install torch==2.15.0 timm==1.0.31 safetensors==0.8.0 numpy==2.4.6
#   PYTHON=venv/bin/python scripts/step-parity-fixtures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fixtures=crates/trainer/tests/fixtures/step_parity
# The test profile (what `cargo test` runs), so the inputs are the ones the test sees.
cargo build -p trainer --example step_trace
for m in ce ce-resample paco spmix; do
  target/debug/examples/step_trace --config "$fixtures/config.toml" --set "method.name=\"$m\"" \
    --steps 20 --out "$work/$m" --data "$work/data"
  "$python" crates/trainer/scripts/reference_trainer.py steps --trace "$work/$m" --out "$fixtures"
done
