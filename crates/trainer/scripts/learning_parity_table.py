#!/usr/bin/env python3
"""The learning-parity table: `trainer train` vs the PyTorch reference, per method, mean ± sd over
seeds of the test accuracy (Many / Medium / Few / Total, macro F1, %), at the best validation
epoch on both sides. Rewrites only the block between the learning-parity markers of RESULTS.md.

Called by scripts/learning-parity.sh; reads runs/learning-parity/{rust/METHOD-sSEED/*/report.json,
torch/METHOD-sSEED.json}. A method passes when its Rust Total is within one seed standard deviation
(the larger of the two sides') or 3 points of the reference, or above it.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import statistics as st
import subprocess

METHODS = ["ce", "ce-resample", "paco", "spmix"]
START, END = "<!-- learning-parity:start -->", "<!-- learning-parity:end -->"
COLUMNS = ["many", "medium", "few", "total", "macro_f1"]


def rust_result(runs, method, seed):
    paths = sorted(glob.glob(os.path.join(runs, "rust", f"{method}-s{seed}", "*", "report.json")))
    if not paths:
        return None
    m = json.load(open(paths[-1]))["metrics"]
    g = m["groups"]
    return dict(many=100 * g["many"], medium=100 * g["medium"], few=100 * g["few"],
                total=100 * m["total_accuracy"], macro_f1=100 * m["macro_f1"])


def torch_result(runs, method, seed):
    path = os.path.join(runs, "torch", f"{method}-s{seed}.json")
    return json.load(open(path))["test_best"] if os.path.exists(path) else None


def cell(values):
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{st.mean(values):.1f} ± {st.stdev(values):.1f}"


def machine():
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {platform.machine()} VM ({cpu})"


def block(runs, seeds, command):
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [START, "",
             f"Command: `{command}` (configs/bench.toml; commit {rev}; {machine()}; "
             f"{datetime.date.today().isoformat()}). Test split, 30 images per class; mean ± sd over seeds; "
             "both sides at their best validation epoch.", "",
             "| method | side | n | Many | Medium | Few | Total | macro F1 | Total − reference | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in METHODS:
        sides = {}
        for side, read in (("trainer (Rust)", rust_result), ("PyTorch/timm reference", torch_result)):
            sides[side] = [r for r in (read(runs, m, s) for s in range(seeds)) if r is not None]
        rust, ref = sides["trainer (Rust)"], sides["PyTorch/timm reference"]
        diff = verdict = ""
        if rust and ref:
            rt, pt = [r["total"] for r in rust], [r["total"] for r in ref]
            d = st.mean(rt) - st.mean(pt)
            sd = max(st.stdev(rt) if len(rt) > 1 else 0.0, st.stdev(pt) if len(pt) > 1 else 0.0)
            diff = f"{d:+.1f}"
            verdict = "above" if d > 0 else ("within" if -d <= max(sd, 3.0) else "**below**")
        for side, rows in sides.items():
            cols = " | ".join(cell([r[c] for r in rows]) for c in COLUMNS)
            tail = f" | {diff} | {verdict}" if side.startswith("trainer") else " | | "
            lines.append(f"| {m} | {side} | {len(rows)} | {cols}{tail} |")
    lines += ["", END]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--results", default="RESULTS.md")
    ap.add_argument("--command", default="scripts/learning-parity.sh")
    a = ap.parse_args()
    new = block(a.runs, a.seeds, a.command)
    text = open(a.results).read() if os.path.exists(a.results) else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + new + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Learning parity with PyTorch/timm\n\n" + new + "\n"
    tmp = a.results + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, a.results)
    print(new)


if __name__ == "__main__":
    main()
