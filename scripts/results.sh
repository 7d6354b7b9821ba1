#!/usr/bin/env bash
# RESULTS.md on the synthetic benchmark preset (configs/bench.toml: 10 validation and 30 test images
# per class, tiny Hybrid-ViT at 48 px, 20 epochs): every Table 1 and Table 2 row the trainer offers,
# each with SEEDS seeds (default 3), test split at the best validation epoch. Runs go to
# runs/results/; RESULTS.md gets mean and spread per row between the results markers.
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
  # Only the block between the results markers is rewritten; the prose around it stays.
  python3 - "$out" "$seeds" "$extra" "${labels[@]}" > RESULTS.md.block <<'PY'
import glob, json, os, re, statistics as st, sys
out, seeds, extra, *labels = sys.argv[1:]
def name(label):
    return re.sub(r"[^a-zA-Z0-9\n-]", "_", label)
cmd = f"scripts/results.sh {seeds} {extra}".rstrip()
print(f"Command: `{cmd}` — configs/bench.toml (synthetic ISIC-like set, tiny")
print("Hybrid-ViT at 48 px, CPU, 20 epochs), balanced validation and test sets (10 and 30 images per class), best")
print("validation epoch evaluated on the test split (210 images). Mean ± standard deviation over the seeds, in %;")
print("n = seeds run.\n")
print("| method | n | Many | Medium | Few | Total | macro F1 |")
print("|---|---:|---:|---:|---:|---:|---:|")
for label in labels:
    vals = []
    for s in range(int(seeds)):
        for path in sorted(glob.glob(os.path.join(out, f"{name(label)}-s{s}-*", "report.json")))[-1:]:
            m = json.load(open(path))["metrics"]
            g = m["groups"]
            vals.append([100 * x for x in (g["many"], g["medium"], g["few"], m["total_accuracy"], m["macro_f1"])])
    if not vals:
        print(f"| {label} | 0 | | | | | |")
        continue
    cell = lambda c: f"{st.mean(c):.1f} ± {st.stdev(c):.1f}" if len(c) > 1 else f"{c[0]:.1f}"
    print(f"| {label} | {len(vals)} | " + " | ".join(cell(c) for c in zip(*vals)) + " |")
PY
  python3 - <<'PY'
start, end = "<!-- results:start -->", "<!-- results:end -->"
block = open("RESULTS.md.block").read().rstrip()
text = open("RESULTS.md").read() if __import__("os").path.exists("RESULTS.md") else ""
if start in text and end in text:
    head, rest = text.split(start, 1)
    text = head + start + "\n" + block + "\n" + end + rest.split(end, 1)[1]
else:
    text = text.rstrip() + "\n\n" + start + "\n" + block + "\n" + end + "\n"
open("RESULTS.md.tmp", "w").write(text)
__import__("os").replace("RESULTS.md.tmp", "RESULTS.md")
__import__("os").remove("RESULTS.md.block")
PY
  echo "wrote the results block of RESULTS.md"
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
