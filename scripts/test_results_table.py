#!/usr/bin/env python3
"""Checks of scripts/results_table.py (standard library only):
    python3 -m unittest discover -s scripts -p 'test_results_table.py'
The t quantiles against printed tables, the paired interval against a hand computation, and a
regeneration over fake runs and a sample RESULTS.md: only the marked block changes, the prose
around it survives byte for byte, a half-marked file is refused and left untouched."""
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results_table as rt  # noqa: E402

PROSE_HEAD = "# Results\n\nSome prose *before* the table, kept as written.\n\n"
PROSE_TAIL = "\n\n## What it shows\n\n- A note that must survive.\n"
LABELS = ["spmix", "ce", "spmix, no patch (saliency per sample)"]


def fake_run(runs, label, seed, stamp, total, finished=True, rev="0123456789abcdef", test=("A", "B")):
    d = os.path.join(runs, f"{rt.run_name(label)}-s{seed}-{stamp}")
    os.makedirs(d)
    with open(os.path.join(d, "run.json"), "w") as f:
        json.dump({"git_revision": rev, "started": "2026-12-01T04:00:00Z"}, f)
    with open(os.path.join(d, "predictions.csv"), "w") as f:
        f.write("image,MEL\n" + "".join(f"{i},0.5\n" for i in test))
    if finished:
        metrics = {"groups": {"many": 0.5, "medium": 0.6, "few": 0.7}, "total_accuracy": total,
                   "macro_f1": total - 0.01, "num_samples": 210}
        with open(os.path.join(d, "report.json"), "w") as f:
            json.dump({"metrics": metrics}, f)


class TQuantile(unittest.TestCase):
    def test_matches_printed_tables(self):
        for df, t in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)]:
            self.assertAlmostEqual(rt.t_quantile(0.975, df), t, places=3, msg=f"df {df}")


class PairedDifference(unittest.TestCase):
    def test_hand_computed_interval(self):
        row, ref = {0: 50.0, 1: 60.0, 2: 55.0}, {0: 45.0, 1: 50.0, 2: 58.0, 3: 99.0}
        mean, half, n = rt.paired_difference(row, ref)  # d = 5, 10, -3 (seed 3 unpaired)
        self.assertEqual(n, 3)
        self.assertAlmostEqual(mean, 4.0)
        self.assertAlmostEqual(half, 4.302653 * math.sqrt(43.0) / math.sqrt(3.0), places=4)
        self.assertIn("within noise", rt.diff_cell((mean, half, n)))

    def test_separated_rows_and_too_few_seeds(self):
        self.assertIn("**below**", rt.diff_cell(rt.paired_difference({0: 40, 1: 41, 2: 39}, {0: 60, 1: 62, 2: 61})))
        self.assertIn("above", rt.diff_cell(rt.paired_difference({0: 70, 1: 71, 2: 72}, {0: 60, 1: 62, 2: 61})))
        self.assertIn("n/a", rt.diff_cell(rt.paired_difference({0: 50.0}, {0: 45.0, 1: 50.0})))
        self.assertIsNone(rt.paired_difference({1: 50.0}, {0: 45.0}))


class Regeneration(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.runs = os.path.join(self.tmp.name, "runs")
        self.results = os.path.join(self.tmp.name, "RESULTS.md")
        for s, (a, b) in enumerate([(0.60, 0.45), (0.62, 0.50), (0.64, 0.47)]):
            fake_run(self.runs, "spmix", s, "20261201-040000", a)
            fake_run(self.runs, "ce", s, "20261201-040000", b, rev="fedcba9876543210")
        # An older spmix seed-0 run (the newest counts) and an unfinished one (ignored).
        fake_run(self.runs, "spmix", 0, "20261130-010000", 0.10)
        fake_run(self.runs, "spmix, no patch (saliency per sample)", 0, "20261201-050000", 0.0, finished=False)

    def tearDown(self):
        self.tmp.cleanup()

    def regenerate(self, block=None):
        with contextlib.redirect_stdout(io.StringIO()):
            rt.main(["--runs", self.runs, "--seeds", "3", "--command", "scripts/results.sh 3",
                     "--results", self.results] + (["--block", block] if block else []) + LABELS)
        with open(self.results) as f:
            return f.read()

    def test_only_the_block_changes(self):
        with open(self.results, "w") as f:
            f.write(PROSE_HEAD + rt.START + "\nold table\n" + rt.END + PROSE_TAIL)
        text = self.regenerate()
        self.assertTrue(text.startswith(PROSE_HEAD + rt.START))
        self.assertTrue(text.endswith(rt.END + PROSE_TAIL))
        self.assertNotIn("old table", text)
        rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
        self.assertEqual([r.split(" | ")[0][2:] for r in rows], LABELS)
        spmix, ce, no_patch = rows
        self.assertIn("| spmix | 3 | 50.0 ± 0.0 | 60.0 ± 0.0 | 70.0 ± 0.0 | 62.0 ± 2.0 |", spmix)
        # ce - spmix per seed: -15, -12, -17 -> mean -14.7, clearly below.
        self.assertIn("-14.7 [", ce)
        self.assertIn("**below**", ce)
        self.assertIn("| 0 |", no_patch)
        self.assertIn("0123456 (3 runs), fedcba9 (3 runs)", text)
        self.assertIn("Commit of each run (seeds): spmix 0123456 (s0, s1, s2); ce fedcba9 (s0, s1, s2).", text)
        self.assertNotIn("Warning", text)
        # A second regeneration keeps the prose again (and the block's place).
        again = self.regenerate()
        self.assertEqual(again.split(rt.START)[0], PROSE_HEAD)
        self.assertEqual(again.split(rt.END)[1], PROSE_TAIL)

    def test_named_blocks_are_rewritten_apart(self):
        start, end = rt.markers("resnet50")
        middle = "\n\n## ResNet-50\n\n"
        with open(self.results, "w") as f:
            f.write(PROSE_HEAD + rt.START + "\nhybrid table\n" + rt.END + middle + start + "\nold resnet\n" + end + PROSE_TAIL)
        text = self.regenerate("resnet50")
        self.assertIn(rt.START + "\nhybrid table\n" + rt.END + middle + start + "\nCommand:", text)
        self.assertNotIn("old resnet", text)
        self.assertTrue(text.endswith(end + PROSE_TAIL))
        # The unnamed block is rewritten without touching the named one.
        text = self.regenerate()
        self.assertNotIn("hybrid table", text)
        self.assertEqual(text.count("| spmix | 3 |"), 2)
        self.assertTrue(text.endswith(end + PROSE_TAIL))
        with self.assertRaises(SystemExit):
            rt.markers("Res Net")

    def test_runs_with_uncommitted_changes_say_so(self):
        fake_run(self.runs, "ce", 0, "20261201-090000", 0.5, rev="fedcba9876543210-dirty")
        with open(self.results, "w") as f:
            f.write(PROSE_HEAD)
        text = self.regenerate()
        self.assertIn("ce fedcba9-dirty (s0), fedcba9 (s1, s2)", text)
        self.assertIn("fedcba9-dirty (1 run)", text)

    def test_runs_on_different_test_sets_are_flagged(self):
        fake_run(self.runs, "ce", 0, "20261201-090000", 0.5, test=("A", "C"))
        with open(self.results, "w") as f:
            f.write(PROSE_HEAD)
        self.assertIn("**Warning:** the runs were scored on 2 different test sets", self.regenerate())

    def test_a_file_without_markers_gets_the_block_appended(self):
        with open(self.results, "w") as f:
            f.write(PROSE_HEAD)
        text = self.regenerate()
        self.assertTrue(text.startswith(PROSE_HEAD.rstrip() + "\n\n" + rt.START))
        self.assertTrue(text.rstrip().endswith(rt.END))

    def test_a_half_marked_file_is_refused_and_kept(self):
        original = PROSE_HEAD + rt.START + "\nno end marker\n" + PROSE_TAIL
        with open(self.results, "w") as f:
            f.write(original)
        with self.assertRaises(SystemExit):
            self.regenerate()
        with open(self.results) as f:
            self.assertEqual(f.read(), original)


if __name__ == "__main__":
    unittest.main()
