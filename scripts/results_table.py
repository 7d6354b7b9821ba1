#!/usr/bin/env python3
"""The results table of RESULTS.md: every row of scripts/results.sh, mean ± sd over seeds of the
test accuracy (Many / Medium / Few / Total) and macro F1 in %, and each row's difference to SPMix
with a paired 95% confidence interval, so "within noise" is computed, not guessed.

Pairing: for a row and SPMix, the seeds both have; per seed d_s = row_s - spmix_s; the interval is
mean(d) ± t(0.975, n - 1) * sd(d) / sqrt(n) (Student's t on the per-seed differences); with fewer
than two paired seeds it is "n/a". A row is "above" or "below" SPMix when the interval excludes 0,
else "within noise".

Reads RUNS/<row name>-s<seed>-<timestamp>/{report.json,run.json} (row name = the label with every
character outside [a-zA-Z0-9-] replaced by "_", as results.sh names its runs; the newest finished
run of a row and seed counts; the commit of each run is listed, and a warning is written when runs
were scored on different test images, per their predictions.csv). Rewrites only the block between the results markers of the results
file, atomically; the text around it is kept byte for byte. Python standard library only.

Usage: scripts/results_table.py --runs runs/results --seeds 3 --command "scripts/results.sh 3" \\
           [--config configs/bench.toml] [--results RESULTS.md] [--block NAME] LABEL...
       (first LABEL = SPMix; --block resnet50 rewrites the block between <!-- results:resnet50:start -->
       and <!-- results:resnet50:end --> instead of the unnamed one)
Test:  python3 -m unittest discover -s scripts -p 'test_results_table.py'
"""
import argparse
import csv
import datetime
import glob
import json
import math
import os
import platform
import re
import statistics as st
import sys

START, END = "<!-- results:start -->", "<!-- results:end -->"


def markers(name=None):
    """The (start, end) markers of the block called `name`; the unnamed block is the Hybrid-ViT
    table, `results:resnet50:start` and the like hold a second table in the same file."""
    if not name:
        return START, END
    if not re.fullmatch(r"[a-z0-9-]+", name):
        raise SystemExit(f"block name {name!r}: use lower-case letters, digits and '-'")
    return f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"
COLUMNS = ["many", "medium", "few", "total", "macro_f1"]


def run_name(label):
    """The run-name prefix results.sh gives a row (`tr -c 'a-zA-Z0-9\\n-' '_'`)."""
    return re.sub(r"[^a-zA-Z0-9\n-]", "_", label)


def read_run(runs, label, seed):
    """The newest finished run of a row and seed: (metrics in %, run.json) or None."""
    paths = sorted(glob.glob(os.path.join(glob.escape(runs), f"{run_name(label)}-s{seed}-*", "report.json")))
    if not paths:
        return None
    path = paths[-1]
    try:
        with open(path) as f:
            m = json.load(f)["metrics"]
        g = m["groups"]
        values = dict(many=100 * g["many"], medium=100 * g["medium"], few=100 * g["few"],
                      total=100 * m["total_accuracy"], macro_f1=100 * m["macro_f1"])
        samples = m.get("num_samples")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not a trainer report ({e})")
    info_path = os.path.join(os.path.dirname(path), "run.json")
    try:
        with open(info_path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        info = {}
    return dict(values=values, info=info, samples=samples, test_set=test_set(os.path.dirname(path)))


def test_set(run_dir):
    """The test images a run was scored on (the ids of its predictions.csv), or None. Compared
    across runs instead of the split.json hash, which also covers the source folder's path."""
    try:
        with open(os.path.join(run_dir, "predictions.csv"), newline="") as f:
            return frozenset(row[0] for row in list(csv.reader(f))[1:] if row)
    except OSError:
        return None


# Student's t quantile from the regularised incomplete beta function (Numerical Recipes'
# continued fraction), inverted by bisection: exact to ~1e-10, no SciPy needed.
def _betacf(a, b, x):
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > 1e-300 else 1e-300
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > 1e-300 else 1e-300
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betai(a, b, x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log(1.0 - x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betai(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p, df):
    """The t with P(T <= t) = p (0.5 < p < 1)."""
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def paired_difference(row, ref):
    """(mean, half-width of the 95% CI or None, n) of row - ref over the seeds both have;
    `row` and `ref` map seed -> value. None when no seed is shared."""
    seeds = sorted(set(row) & set(ref))
    if not seeds:
        return None
    d = [row[s] - ref[s] for s in seeds]
    n = len(d)
    if n < 2:
        return st.mean(d), None, n
    return st.mean(d), t_quantile(0.975, n - 1) * st.stdev(d) / math.sqrt(n), n


def diff_cell(diff):
    if diff is None:
        return "–"
    mean, half, n = diff
    if half is None:
        return f"{mean:+.1f} (CI n/a, n = {n})"
    lo, hi = mean - half, mean + half
    verdict = "above" if lo > 0 else ("**below**" if hi < 0 else "within noise")
    return f"{mean:+.1f} [{lo:+.1f}, {hi:+.1f}] {verdict}"


def cell(values):
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{st.mean(values):.1f} ± {st.stdev(values):.1f}"


def short_revision(info):
    """`abc1234`, or `abc1234-dirty` for a run made with uncommitted changes."""
    rev = str(info.get("git_revision", "unknown"))
    return rev[:7] + ("-dirty" if rev.endswith("-dirty") else "")


def row_commits(per_seed):
    """`abc1234 (s0, s1), def5678 (s2)`: the short git revision of each seed's run."""
    by_rev = {}
    for seed in sorted(per_seed):
        rev = short_revision(per_seed[seed]["info"])
        by_rev.setdefault(rev, []).append(f"s{seed}")
    return ", ".join(f"{rev} ({', '.join(seeds)})" for rev, seeds in by_rev.items())


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {platform.machine()} ({cpu})"


def block(runs, seeds, labels, command, config, today=None, host=None, name=None):
    """The Markdown between the markers of block `name` (markers included)."""
    start, end = markers(name)
    today = today or datetime.date.today().isoformat()
    host = host or machine()
    results = {label: {s: r for s in range(seeds) if (r := read_run(runs, label, s))} for label in labels}
    ref = results[labels[0]]
    commits, started, samples, test_sets = {}, [], set(), set()
    for per_seed in results.values():
        for r in per_seed.values():
            if r["test_set"] is not None:
                test_sets.add(r["test_set"])
            rev = short_revision(r["info"])
            commits[rev] = commits.get(rev, 0) + 1
            if r["info"].get("started"):
                started.append(r["info"]["started"][:10])
            if r["samples"]:
                samples.add(r["samples"])
    commit_text = ", ".join(f"{c} ({n} run{'s' if n > 1 else ''})" for c, n in sorted(commits.items())) or "no runs yet"
    dates = f"{min(started)} to {max(started)}" if started else "–"
    test = ", ".join(str(s) for s in sorted(samples)) or "?"
    lines = [
        start,
        f"Command: `{command}` on `{config}`; test split ({test} images) at the best validation epoch. "
        f"Mean ± sd over seeds in %; n = seeds finished. Commits of the runs: {commit_text}. "
        f"Runs started {dates}; machine: {host}; table written {today}.",
        "",
        f"Difference to {labels[0]}: paired by seed (row − {labels[0]} per seed), mean and 95% confidence "
        "interval from Student's t on the per-seed differences; \"within noise\" when the interval contains 0, "
        "n/a with fewer than two paired seeds.",
        "",
        f"| method | n | Many | Medium | Few | Total | macro F1 | Total − {labels[0]} (95% CI) "
        f"| macro F1 − {labels[0]} (95% CI) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for i, label in enumerate(labels):
        per_seed = results[label]
        cols = " | ".join(cell([per_seed[s]["values"][c] for s in sorted(per_seed)]) for c in COLUMNS)
        if i == 0:
            diffs = "reference | reference"
        else:
            diffs = " | ".join(
                diff_cell(paired_difference({s: r["values"][c] for s, r in per_seed.items()},
                                            {s: r["values"][c] for s, r in ref.items()}))
                for c in ("total", "macro_f1"))
        lines.append(f"| {label} | {len(per_seed)} | {cols} | {diffs} |")
    lines += ["", "Commit of each run (seeds): " + "; ".join(
        f"{label} {row_commits(results[label])}" for label in labels if results[label]) + "."]
    if len(test_sets) > 1:
        lines.append(f"**Warning:** the runs were scored on {len(test_sets)} different test sets (their "
                     "predictions.csv name different images): differences between them mix data.")
    lines.append(end)
    return "\n".join(lines)


def replace_block(text, new, name=None):
    """`text` with its results block `name` replaced by `new` (appended when there is none).
    Refuses a file with only one marker or the end before the start, rather than guess what to
    overwrite; other blocks are text like any other."""
    start, end = markers(name)
    has_start, has_end = start in text, end in text
    if has_start and has_end and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        return head + new + rest.split(end, 1)[1]
    if has_start or has_end:
        raise SystemExit(f"the results markers {start} / {end} are incomplete or out of order; fix them by hand")
    return text.rstrip() + "\n\n" + new + "\n"


def write_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="folder of the runs, e.g. runs/results")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..SEEDS-1 count")
    ap.add_argument("--command", required=True, help="the command that produced the runs, as shown")
    ap.add_argument("--config", default="configs/bench.toml", help="the config the runs used, as shown")
    ap.add_argument("--results", default="RESULTS.md", help="the file whose block is rewritten")
    ap.add_argument("--block", default=None,
                    help="name of the block to rewrite (results:NAME:start/end); default: the unnamed one")
    ap.add_argument("labels", nargs="+", help="row labels, SPMix first")
    a = ap.parse_args(argv)
    new = block(a.runs, a.seeds, a.labels, a.command, a.config, name=a.block)
    text = ""
    if os.path.exists(a.results):
        with open(a.results) as f:
            text = f.read()
    write_atomic(a.results, replace_block(text, new, a.block))
    print(new)


if __name__ == "__main__":
    sys.exit(main())
