#!/usr/bin/env python3
"""Writes the fixtures of crates/trainer/tests/export_timm.rs and tests/eval_labelled.rs under
crates/trainer/tests/fixtures/user_data/:

  run/                     a tiny SPMix run trained by `trainer train` (config.toml, run.json,
                           checkpoints/: query, key network, optimiser state and queue), 30 epochs
                           on a synthetic set; data paths in config.toml/run.json point nowhere
                           (export, predict and eval --labels do not read the run's data)
  isic2018_val/            a synthetic labelled set in the official ISIC2018 Task 3 validation
                           layout: ISIC2018_Task3_Validation_GroundTruth/
                           ISIC2018_Task3_Validation_GroundTruth.csv (one-hot floats) and
                           ISIC2018_Task3_Validation_Input/<image>.jpg (+ LICENSE.txt and
                           ATTRIBUTION.txt, as in the official download)
  isic2018_val_scored/     predictions.csv of `trainer eval --labels` on that set, and scorer.json:
                           what the official scorer (isic-challenge-scoring) computes on it
                           (balanced accuracy from the argmax, per-class and macro AUC; its per-class
                           'sensitivity' thresholds at 0.5, not the argmax, so it is not kept)
  export/                  model.safetensors + preprocess.json of `trainer export --run run`, and
                           timm_logits.json: timm's logits on export_images/ (the model built and
                           loaded by docs/export_timm.py, strict, the images preprocessed by it
                           from preprocess.json)
  export_images/           three PNG images of different sizes and aspect ratios (PNG: decoders of
                           JPEG differ between PIL and the `image` crate, PNG decodes exactly)
  timm_vit_small_resnet50d_s16_224_tensors.json
                           names, shapes and dtypes of timm's vit_small_resnet50d_s16_224 state
                           dict (num_classes = 7): what an export of the paper's model must hold

Before writing, it checks what the tests check: timm's logits equal `trainer predict`'s (centred
log-probabilities) within 1e-4.

Run from the repository root (debug binaries are enough):
    cargo build -p trainer -p xtask
    /path/to/venv/bin/python crates/trainer/scripts/user_data_fixtures.py \
        --scorer-python /tmp/isic-venv/bin/python
where the first venv has torch 2.15, timm 1.0.31, safetensors, pillow, numpy, and the scorer venv
is made as crates/trainer/scripts/isic_scorer_fixture.py describes
(isic-challenge-scoring==5.6.0 "pandas<2.2"). Binaries are taken from $CARGO_TARGET_DIR/debug
(default target/debug).
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
FIX = ROOT / "crates" / "trainer" / "tests" / "fixtures" / "user_data"
sys.path.insert(0, str(ROOT / "docs"))
import export_timm  # noqa: E402  (docs/export_timm.py: what docs/export.md tells users to run)

CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
VAL_INPUT = "ISIC2018_Task3_Validation_Input"
VAL_GT_DIR = "ISIC2018_Task3_Validation_GroundTruth"
VAL_GT_CSV = "ISIC2018_Task3_Validation_GroundTruth.csv"
PER_CLASS = 3  # validation images per class

CONFIG = """
[run]
name = "tiny-export"
output_dir = "{runs}"
epochs = 30
batch_size = 16
seed = 11
[data]
split_dir = "{data}/split"
source = "{data}/synth"
synthetic = true
synthetic_scale = 0.03
synthetic_size = "64x48"
synthetic_min_per_class = 20
protocol = "balanced"
val_per_class = 3
test_per_class = 3
workers = 2
[model]
trunk_layers = [1, 1, 1]
trunk_channels = [4, 8, 8]
stem_width = 4
embed_dim = 16
depth = 1
num_heads = 2
mlp_ratio = 2.0
image_size = 32
num_classes = 7
proj_hidden = 16
proj_dim = 8
[method]
name = "spmix"
momentum = 0.9
[loss]
queue_size = 32
[optim]
lr = 5e-3
warmup_epochs = 1
grad_clip = 1.0
[eval]
batch_size = 2
"""


def binary(name):
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / name
    if not path.exists():
        sys.exit(f"{path} is missing: run `cargo build -p trainer -p xtask` first")
    return str(path)


def run(*args, **kw):
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.run([str(a) for a in args], check=True, **kw)


def train_run(tmp):
    """Trains the tiny run; returns its folder."""
    cfg = tmp / "tiny.toml"
    cfg.write_text(CONFIG.format(runs=tmp / "runs", data=tmp / "data"))
    out = run(binary("trainer"), "train", "--config", cfg, "--no-test",
              stdout=subprocess.PIPE, text=True).stdout
    return Path(re.search(r"run folder: (.*)", out).group(1).strip())


def copy_run(src, dst):
    """config.toml, run.json (data paths replaced) and checkpoints/."""
    dst.mkdir(parents=True)
    text = (src / "config.toml").read_text()
    for key in ("split_dir", "source", "output_dir"):
        text = re.sub(rf'^{key} = ".*"$', f'{key} = "not-needed/{key}"', text, flags=re.M)
    (dst / "config.toml").write_text(text)
    info = json.loads((src / "run.json").read_text())
    info["split_dir"] = "not-needed/split_dir"
    (dst / "run.json").write_text(json.dumps(info, indent=2))
    shutil.copytree(src / "checkpoints", dst / "checkpoints")


def write_validation_set(tmp, dst):
    """Takes PER_CLASS images of each class from a fresh synthetic set (another seed)."""
    src = tmp / "valsrc"
    run(binary("xtask"), "synth-isic", "--out", src, "--scale", "0.001", "--size", "64x48",
        "--seed", "2018", "--min-per-class", str(PER_CLASS))
    gt = src / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    rows = [line.split(",") for line in gt.read_text().splitlines()[1:]]
    chosen, taken = [], [0] * len(CLASSES)
    for row in rows:
        k = [float(v) for v in row[1:]].index(1.0)
        if taken[k] < PER_CLASS:
            taken[k] += 1
            chosen.append((row[0], k))
    assert taken == [PER_CLASS] * len(CLASSES), taken
    chosen.sort()
    (dst / VAL_INPUT).mkdir(parents=True)
    (dst / VAL_GT_DIR).mkdir()
    for image, _ in chosen:
        shutil.copy(src / "ISIC2018_Task3_Training_Input" / f"{image}.jpg",
                    dst / VAL_INPUT / f"{image}.jpg")
    (dst / VAL_INPUT / "LICENSE.txt").write_text("Synthetic images of the project's generator.\n")
    (dst / VAL_INPUT / "ATTRIBUTION.txt").write_text("Synthetic: no attribution needed.\n")
    with (dst / VAL_GT_DIR / VAL_GT_CSV).open("w") as f:
        f.write("image," + ",".join(CLASSES) + "\n")
        for image, k in chosen:
            f.write(image + "," + ",".join("1.0" if c == k else "0.0"
                                           for c in range(len(CLASSES))) + "\n")
    return dst / VAL_GT_DIR / VAL_GT_CSV, dst / VAL_INPUT


SCORER = r"""
import json, sys
from pathlib import Path
from importlib.metadata import version
from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore
score = ClassificationScore.from_file(Path(sys.argv[1]), Path(sys.argv[2]), ClassificationMetric.BALANCED_ACCURACY)
classes = list(score.per_category.index)
print(json.dumps({
    "scorer": "isic-challenge-scoring " + version("isic-challenge-scoring"),
    "balanced_accuracy": float(score.aggregate["balanced_accuracy"]),
    "per_class_auc": {c: float(score.per_category.loc[c, "auc"]) for c in classes},
    "macro_auc": float(score.macro_average["auc"]),
}, indent=1))
"""


def score_validation(gt_csv, images, run_dir, tmp, scorer_python, dst):
    out = tmp / "eval"
    run(binary("trainer"), "eval", "--run", run_dir, "--labels", gt_csv, "--images", images,
        "--out", out, "--device", "cpu")
    dst.mkdir(parents=True)
    shutil.copy(out / "predictions.csv", dst / "predictions.csv")
    scored = run(scorer_python, "-c", SCORER, gt_csv, dst / "predictions.csv",
                 stdout=subprocess.PIPE, text=True).stdout
    (dst / "scorer.json").write_text(scored)
    mine = json.loads((out / "report.json").read_text())["metrics"]
    theirs = json.loads(scored)
    print("balanced accuracy: trainer", mine["balanced_accuracy"], "scorer",
          theirs["balanced_accuracy"])
    rows = [line.split(",") for line in (dst / "predictions.csv").read_text().splitlines()[1:]]
    counts = np.bincount([int(np.argmax([float(v) for v in r[1:]])) for r in rows],
                         minlength=len(CLASSES))
    print("predicted classes:", dict(zip(CLASSES, counts.tolist())))
    assert (counts > 0).sum() >= 3, "predictions must span classes for the test to mean much"


def write_export_images(val_images, dst):
    """Three PNGs: landscape downscale, portrait upscale, square at the resize size."""
    dst.mkdir(parents=True)
    jpgs = sorted(p for p in val_images.iterdir() if p.suffix == ".jpg")
    sources = [Image.open(p).convert("RGB") for p in (jpgs[0], jpgs[7], jpgs[14])]
    sizes = [None, (29, 41), (37, 37)]
    paths = []
    for i, (img, size) in enumerate(zip(sources, sizes)):
        if size is not None:
            img = img.resize(size, Image.BICUBIC)
        path = dst / f"image_{i + 1}.png"
        img.save(path)
        paths.append(path)
    return paths


def export_and_compare(run_dir, images, tmp, dst):
    export_dir = tmp / "export"
    run(binary("trainer"), "export", "--run", run_dir, "--out", export_dir / "model.safetensors")
    model, pp = export_timm.load(export_dir / "model.safetensors")
    with torch.no_grad():
        logits = model(torch.stack([export_timm.preprocess(p, pp) for p in images])).numpy()
    spread = logits.max(axis=1) - logits.min(axis=1)
    assert spread.min() > 0.05, f"logits too flat across classes to test the mapping: {spread}"
    csv = tmp / "predict.csv"
    run(binary("trainer"), "predict", "--run", run_dir, "--device", "cpu", "--out", csv,
        *images)
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    logp = np.log(np.array([[float(v) for v in r[1:8]] for r in rows], dtype=np.float64))
    centred_rust = logp - logp.mean(axis=1, keepdims=True)
    centred_timm = logits - logits.mean(axis=1, keepdims=True)
    diff = np.abs(centred_rust - centred_timm).max()
    print(f"timm vs trainer predict: max |centred logit difference| = {diff:.3g}")
    assert diff <= 1e-4, diff
    dst.mkdir(parents=True)
    shutil.copy(export_dir / "model.safetensors", dst / "model.safetensors")
    shutil.copy(export_dir / "preprocess.json", dst / "preprocess.json")
    (dst / "timm_logits.json").write_text(json.dumps({
        "timm": version("timm"), "torch": torch.__version__,
        "how": "docs/export_timm.py: load(model.safetensors) strict, preprocess(image, "
               "preprocess.json), model(x) in eval mode",
        "images": [p.name for p in images],
        "logits": [[float(v) for v in row] for row in logits],
    }, indent=1) + "\n")


def paper_model_names(path):
    import timm
    sd = timm.create_model("vit_small_resnet50d_s16_224", pretrained=False,
                           num_classes=7).state_dict()
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    path.write_text(json.dumps({
        "model": "vit_small_resnet50d_s16_224",
        "source": "timm.create_model('vit_small_resnet50d_s16_224', pretrained=False, "
                  "num_classes=7).state_dict()",
        "timm": version("timm"), "torch": torch.__version__,
        "tensors": [{"name": k, "shape": list(v.shape), "dtype": dtypes[v.dtype]}
                    for k, v in sd.items()],
    }, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scorer-python", required=True,
                    help="python of a venv with isic-challenge-scoring 5.6.0")
    args = ap.parse_args()
    if FIX.exists():
        shutil.rmtree(FIX)
    FIX.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        trained = train_run(tmp)
        run_dir = FIX / "run"
        copy_run(trained, run_dir)
        gt_csv, images = write_validation_set(tmp, FIX / "isic2018_val")
        score_validation(gt_csv, images, run_dir, tmp, args.scorer_python,
                         FIX / "isic2018_val_scored")
        pngs = write_export_images(images, FIX / "export_images")
        export_and_compare(run_dir, pngs, tmp, FIX / "export")
    paper_model_names(FIX / "timm_vit_small_resnet50d_s16_224_tensors.json")
    total = sum(f.stat().st_size for f in FIX.rglob("*") if f.is_file())
    print(f"fixtures written under {FIX} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
