"""Load a model written by `trainer export` in timm and classify images with it.

    python docs/export_timm.py export/model.safetensors IMAGE.jpg [IMAGE.png ...]

prints `image,MEL,NV,BCC,AKIEC,BKL,DF,VASC` probabilities. Needs torch, timm (tested with 1.0.31),
safetensors, pillow and numpy. The functions are what docs/export.md explains; the trainer's
export test (crates/trainer/scripts/user_data_fixtures.py) uses them, so they are checked against
`trainer predict`.
"""
import json
import math
import os
import sys
from functools import partial

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from timm.layers import HybridEmbed
from timm.models.vision_transformer import VisionTransformer


def build_model(pp):
    """The network of `preprocess.json`'s `model` sizes, built the way timm builds its hybrids."""
    m = pp["model"]
    if pp.get("timm_model"):  # registered sizes: vit_small_resnet50d_s16_224 or resnet50d
        return timm.create_model(pp["timm_model"], pretrained=False, num_classes=m["num_classes"])
    if m.get("arch") == "resnet50":  # model.arch = "resnet50" at other sizes: timm's resnet50d recipe
        return timm.create_model(
            "resnet50d", pretrained=False, num_classes=m["num_classes"],
            layers=m["trunk_layers"], channels=m["trunk_channels"], stem_width=m["stem_width"])
    # Other sizes: what timm's vit_small_resnet50d_s16_224 does, with these sizes (a ResNet-D
    # trunk cut after stage 3 feeding a 1x1 patch embedding).
    backbone = timm.create_model(
        "resnet50d", pretrained=False, features_only=True, out_indices=[3],
        layers=[*m["trunk_layers"], 1], channels=[*m["trunk_channels"], 8],
        stem_width=m["stem_width"])
    return VisionTransformer(
        img_size=m["image_size"], patch_size=1, num_classes=m["num_classes"],
        embed_dim=m["embed_dim"], depth=m["depth"], num_heads=m["num_heads"],
        mlp_ratio=m["mlp_ratio"], embed_layer=partial(HybridEmbed, backbone=backbone))


def load(model_path):
    """(model in eval mode, preprocess.json as a dict) of an export."""
    with open(os.path.join(os.path.dirname(os.path.abspath(model_path)), "preprocess.json")) as f:
        pp = json.load(f)
    model = build_model(pp)
    model.load_state_dict(load_file(model_path), strict=True)
    return model.eval(), pp


def crop_box(width, height, pp):
    """(left, top, width, height) of the source rectangle that resize(shorter side = eval_resize)
    + centre crop(image_size) keeps, in source pixels (fractional)."""
    resize, crop = pp["eval_resize"], pp["image_size"]
    scale = resize / min(width, height)
    # torchvision's sizes: the long side is truncated, the crop offset rounded half to even.
    rw, rh = (resize, int(height * scale)) if width <= height else (int(width * scale), resize)
    left, top = max(round((rw - crop) / 2), 0), max(round((rh - crop) / 2), 0)
    sx, sy = rw / width, rh / height
    return left / sx, top / sy, min(crop, rw) / sx, min(crop, rh) / sy


def _weights(in_size, in0, in1, out_size):
    """Integer bilinear weights (out_size, in_size) and their precision, as the trainer's resizer
    (fast_image_resize 6.1, a Pillow-SIMD port) computes them: antialiased triangle filter,
    normalised in float64, then 16-bit fixed point."""
    scale = (in1 - in0) / out_size
    filter_scale = max(scale, 1.0)
    radius, recip = filter_scale, 1.0 / filter_scale
    rows = []
    for o in range(out_size):
        centre = in0 + (o + 0.5) * scale
        lo = max(math.floor(centre - radius), 0)
        hi = min(math.ceil(centre + radius), in_size)
        w = {x: max(0.0, 1.0 - abs((x - (centre - 0.5)) * recip)) for x in range(lo, hi)}
        total = 0.0
        for x in range(lo, hi):
            total += w[x]
        rows.append({x: v / total for x, v in w.items()} if total else w)
    top = max(v for r in rows for v in r.values())
    precision = 0
    for p in range(22):
        precision = p
        if math.floor(top * (1 << (p + 1)) + 0.5) >= 1 << 15:
            break
    m = np.zeros((out_size, in_size), np.int64)
    for o, r in enumerate(rows):
        for x, v in r.items():
            m[o, x] = math.floor(v * (1 << precision) + 0.5)
    return m, precision


def _apply(m, precision, x):
    """One fixed-point pass: rows of `m` weigh the first axis of `x` (uint8), rounded, clipped."""
    out = (np.tensordot(m, x.astype(np.int64), axes=(1, 0)) + (1 << (precision - 1))) >> precision
    return np.clip(out, 0, 255).astype(np.uint8)


def resize_like_trainer(rgb, box, size):
    """`rgb` (H, W, 3) uint8, `box` (left, top, width, height) -> (size, size, 3) uint8, pixel for
    pixel what `trainer predict` computes (vertical pass first, as the resizer does for 8-bit)."""
    left, top, bw, bh = box
    h, w = rgb.shape[:2]
    x = rgb
    need_v = size != bh or top != round(top)
    need_h = size != bw or left != round(left)
    if need_v:
        x = _apply(*_weights(h, top, top + bh, size), x)
    else:
        x = x[int(top):int(top) + size]
    if need_h:
        x = _apply(*_weights(w, left, left + bw, size), x.transpose(1, 0, 2)).transpose(1, 0, 2)
    else:
        x = x[:, int(left):int(left) + size]
    return np.ascontiguousarray(x)


def preprocess(path, pp):
    """(3, S, S) float32 tensor of an image file, exactly as `trainer predict` computes it."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    s = pp["image_size"]
    x = resize_like_trainer(rgb, crop_box(rgb.shape[1], rgb.shape[0], pp), s)
    x = x.astype(np.float32) / np.float32(255.0)
    x = (x - np.array(pp["mean"], np.float32)) / np.array(pp["std"], np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def main(model_path, images):
    model, pp = load(model_path)
    with torch.no_grad():
        logits = model(torch.stack([preprocess(p, pp) for p in images]))
    print(",".join(["image", *pp["class_order"]]))
    for path, row in zip(images, logits.softmax(dim=1).tolist()):
        print(",".join([os.path.splitext(os.path.basename(path))[0], *map(str, row)]))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
