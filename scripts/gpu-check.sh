#!/usr/bin/env bash
# GPU check (binaries in target/gpu-bin/, override with GPU_BIN): runs prebuilt `cuda`-feature test and bench binaries on a GPU machine that has no
# Rust toolchain, and prints a short table. Two steps:
#
# 1. On the CPU-only build machine (repository root), build and collect the binaries:
#      source scripts/cuda-toolchain.sh                   # nvcc 13.0 + libcuda stub, from PyPI
#      scripts/gpu-check.sh build                        # -> target/gpu-bin/ (tests, benches)
#    (`build` runs `cargo build --features cuda --tests --benches` for each crate in CRATES
#    with CARGO_TARGET_DIR=target/cuda and copies the test/bench executables into gpu-bin/.)
# 2. Copy the repository (or just scripts/ and target/gpu-bin/) to the GPU machine and run
#      scripts/gpu-check.sh            # same as `scripts/gpu-check.sh run`
#    It needs the NVIDIA driver and the CUDA 13 user-space libraries of the Python `nvidia`
#    wheels (libnvrtc.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10), which it
#    finds under the Python site-packages and puts on LD_LIBRARY_PATH.
#
# `build` also builds the `trainer` binary with all CUDA paths (patchmix, model, trainer) into
# gpu-bin/trainer; `run` then trains the full model (configs/spmix.toml: 224 px, batch 64) for two
# epochs on a generated synthetic set and reports training images per second and peak GPU memory
# (sampled with nvidia-smi). TRAIN_EPOCHS and TRAIN_SCALE change its length.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${GPU_BIN:-target/gpu-bin}
CRATES=${CRATES:-patchmix}
mode=${1:-run}

if [ "$mode" = build ]; then
  set -e
  command -v nvcc >/dev/null || { echo "nvcc not found: source scripts/cuda-toolchain.sh first" >&2; exit 1; }
  mkdir -p "$BIN"
  for crate in $CRATES; do
    CARGO_TARGET_DIR=target/cuda cargo build -p "$crate" --features cuda --tests --benches \
      --message-format=json-render-diagnostics > "$BIN/.cargo-$crate.json"
    python3 - "$BIN" "$crate" "$BIN/.cargo-$crate.json" <<'PY'
import json, shutil, sys, os
out, crate, log = sys.argv[1:]
for line in open(log):
    m = json.loads(line)
    exe = m.get("executable") if m.get("reason") == "compiler-artifact" else None
    # Only this crate's own targets (its manifest lives in a folder named after it).
    if not exe or os.path.basename(os.path.dirname(m["manifest_path"])) != crate:
        continue
    kind = m["target"]["kind"][0]
    if kind == "lib":
        kind = "unit"
    name = f"{crate}-{kind}-{m['target']['name']}"
    shutil.copy2(exe, os.path.join(out, name))
    # Debug info is most of the size; the GPU machine only runs them.
    if shutil.which("strip"):
        os.system(f"strip --strip-debug {os.path.join(out, name)}")
    print("collected", os.path.join(out, name))
PY
    rm -f "$BIN/.cargo-$crate.json"
  done
  CARGO_TARGET_DIR=target/cuda cargo build --release -p trainer \
    --features patchmix/cuda,model/cuda,trainer/cuda
  cp target/cuda/release/trainer "$BIN/trainer"
  command -v strip >/dev/null && strip --strip-debug "$BIN/trainer"
  echo "collected $BIN/trainer"
  exit 0
fi

[ "$mode" = run ] || { echo "usage: $0 [build|run]" >&2; exit 2; }
[ -d "$BIN" ] || { echo "no $BIN/: run '$0 build' on the build machine first" >&2; exit 1; }

# CUDA 13 libraries from the Python nvidia wheels.
# CUDA_LIB_DIR (a folder holding libnvrtc.so.13) overrides the search.
libdirs="${CUDA_LIB_DIR:+:$CUDA_LIB_DIR}"
for py in python3 /usr/bin/python3 /usr/local/bin/python3 "$HOME/.cache/cuda-13.0/venv/bin/python" \
          ${VIRTUAL_ENV:+"$VIRTUAL_ENV/bin/python"}; do
  command -v "$py" >/dev/null || continue
  for sp in $("$py" -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]+sys.path))' 2>/dev/null); do
    [ -d "$sp/nvidia" ] || continue
    for f in $(find "$sp/nvidia" -name 'libnvrtc.so.13*' -o -name 'libcublas.so.13*' -o -name 'libcurand.so.10*' 2>/dev/null); do
      d=$(dirname "$f"); case ":$libdirs:" in *":$d:"*) ;; *) libdirs="$libdirs:$d";; esac
    done
  done
done
found=0
IFS=: read -ra _dirs <<< "$libdirs"
for d in "${_dirs[@]}"; do ls "$d"/libnvrtc.so.13* >/dev/null 2>&1 && found=1; done
[ $found = 1 ] || echo "warning: libnvrtc.so.13 not found (set CUDA_LIB_DIR, or pip install 'cuda-toolkit[nvrtc,cublas,curand]==13.0.2')" >&2
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

status=0
declare -a rows
for t in "$BIN"/*-test-* "$BIN"/*-unit-*; do
  [ -x "$t" ] || continue
  log=$(mktemp)
  "$t" --test-threads=1 > "$log" 2>&1; rc=$?
  [ $rc -eq 0 ] || status=1
  pass=$(grep -c '\.\.\. ok$' "$log"); fail=$(grep -c '\.\.\. FAILED$' "$log")
  skip=$(grep -c 'skipping' "$log")
  rows+=("| $(basename "$t") | $pass | $fail | $skip | $rc |")
  if [ $rc -ne 0 ]; then echo "---- $(basename "$t") failed:"; tail -n 40 "$log"; fi
  rm -f "$log"
done
echo
echo "| test binary | passed | failed | skipped (no device) | exit |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
for b in "$BIN"/*-bench-*; do
  [ -x "$b" ] || continue
  echo "## $(basename "$b")"
  PATCHMIX_BENCH_ITERS=${PATCHMIX_BENCH_ITERS:-5} "$b" --bench || status=1
done

# A short SPMix training run of the full model on synthetic data.
if [ -x "$BIN/trainer" ]; then
  echo "## trainer: full model, SPMix, synthetic data"
  work=$(mktemp -d)
  epochs=${TRAIN_EPOCHS:-2}
  mem_log="$work/mem.csv"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$mem_log" &
    smi=$!
  fi
  t0=$(date +%s.%N)
  "$BIN/trainer" train --config configs/spmix.toml --device cuda:0 \
    --set run.name='"gpu-check"' --set run.output_dir="\"$work/runs\"" --set run.epochs=$epochs \
    --set optim.warmup_epochs=1 \
    --set data.source="\"$work/synthetic\"" --set data.split_dir="\"$work/split\"" \
    --set data.synthetic=true --set data.synthetic_scale=${TRAIN_SCALE:-0.1} \
    --set data.synthetic_size='"300x225"' --set data.protocol='"balanced"' \
    --set data.val_per_class=5 --set data.test_per_class=10 > "$work/train.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  [ -n "${smi:-}" ] && kill "$smi" 2>/dev/null
  [ $rc -eq 0 ] || { status=1; echo "---- trainer failed:"; tail -n 40 "$work/train.log"; }
  python3 - "$work" "$rc" "$t0" "$t1" <<'PY'
import csv, glob, json, os, sys
work, rc, t0, t1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
runs = glob.glob(os.path.join(work, "runs", "*", "metrics.csv"))
peak = "n/a"
mem = os.path.join(work, "mem.csv")
if os.path.exists(mem):
    vals = [int(x) for x in open(mem).read().split() if x.strip().isdigit()]
    if vals:
        peak = f"{max(vals)} MiB (whole GPU, sampled every 200 ms)"
print("| epoch | seconds (train + val) | train images/s |")
print("|---:|---:|---:|")
if runs:
    d = os.path.dirname(runs[0])
    manifest = json.load(open(os.path.join(work, "split", "split.json")))
    n_train = sum(manifest["counts"]["train"])
    for row in csv.DictReader(open(runs[0])):
        s = float(row["seconds"])
        print(f"| {row['epoch']} | {s:.1f} | {n_train / s:.1f} |")
print(f"\ntrainer exit {rc}, wall {t1 - t0:.1f} s (incl. data generation and saliency), peak GPU memory {peak}")
PY
  rm -rf "$work"
fi
exit $status
