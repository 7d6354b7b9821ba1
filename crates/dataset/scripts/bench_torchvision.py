"""Reference for the loader benchmark: two-view SPMix samples per second with torchvision + PIL.

Does what `benches/loader_throughput.rs` does per sample, the way the PyTorch reference does it:
decode the JPEG and its saliency PNG, then two views (query: RandomResizedCrop 224 -> h-flip ->
ColorJitter(0.4, 0.4, 0.4) -> RandAugment n2 m10 mstd0.5 as timm's PIL ops; key: RandomResizedCrop
-> ColorJitter -> RandomGrayscale 0.2 -> GaussianBlur(0.1-2) p 0.5 -> h-flip), the map carried
through every geometric op, then ToTensor + Normalize for image and map.

Run (the bench binary calls it with $SPMIX_PYTHON, else python3):
    pip install torch==2.15.0 torchvision==0.29.2 pillow==13.0.0
    python bench_torchvision.py --list files.txt --samples 96 --workers 1
Prints one JSON line: {"samples_per_s": ..., "workers": ..., "peak_rss_kib": ...}.
"""
import argparse
import json
import math
import random
import resource
import time
from multiprocessing import Pool

import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
import torchvision.transforms as T
import torchvision.transforms.functional as F

MEAN = (0.765, 0.545, 0.569)
STD = (0.140, 0.151, 0.169)
FILL = tuple(round(255 * m) for m in MEAN)
SAL_MEAN, SAL_STD = 0.144, 0.137


def rrc(img, sal, size=224):
    i, j, h, w = T.RandomResizedCrop.get_params(img, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    return (F.resized_crop(img, i, j, h, w, [size, size], T.InterpolationMode.BILINEAR),
            F.resized_crop(sal, i, j, h, w, [size, size], T.InterpolationMode.BILINEAR))


def jitter(img):
    fns = [lambda im, f: ImageEnhance.Brightness(im).enhance(f),
           lambda im, f: ImageEnhance.Contrast(im).enhance(f),
           lambda im, f: ImageEnhance.Color(im).enhance(f)]
    random.shuffle(fns)
    for fn in fns:
        img = fn(img, random.uniform(0.6, 1.4))
    return img


def affine(img, sal, m):
    return (img.transform(img.size, Image.AFFINE, m, resample=Image.BILINEAR, fillcolor=FILL),
            sal.transform(sal.size, Image.AFFINE, m, resample=Image.BILINEAR, fillcolor=0))


def rand_augment(img, sal):
    ops = ["Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
           "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"]
    for op in random.choices(ops, k=2):
        if random.random() > 0.5:
            continue
        level = min(10.0, max(0.0, random.gauss(10.0, 0.5)))
        sign = -1 if random.random() < 0.5 else 1
        enh = level / 10 * 1.8 + 0.1
        if op == "Equalize":
            img = ImageOps.equalize(img)
        elif op == "Invert":
            img = ImageOps.invert(img)
        elif op == "Posterize":
            bits = int(level / 10 * 4)
            img = ImageOps.posterize(img, bits) if bits < 8 else img
        elif op == "Solarize":
            img = ImageOps.solarize(img, int(level / 10 * 256))
        elif op == "SolarizeAdd":
            add = int(level / 10 * 110)
            lut = [min(255, i + add) if i < 128 else i for i in range(256)] * 3
            img = img.point(lut)
        elif op == "Color":
            img = ImageEnhance.Color(img).enhance(enh)
        elif op == "Contrast":
            img = ImageEnhance.Contrast(img).enhance(enh)
        elif op == "Brightness":
            img = ImageEnhance.Brightness(img).enhance(enh)
        elif op == "Sharpness":
            img = ImageEnhance.Sharpness(img).enhance(enh)
        elif op == "Rotate":
            deg = sign * level / 10 * 30
            img = img.rotate(deg, resample=Image.BILINEAR, fillcolor=FILL)
            sal = sal.rotate(deg, resample=Image.BILINEAR, fillcolor=0)
        elif op == "ShearX":
            img, sal = affine(img, sal, (1, sign * level / 10 * 0.3, 0, 0, 1, 0))
        elif op == "ShearY":
            img, sal = affine(img, sal, (1, 0, 0, sign * level / 10 * 0.3, 1, 0))
        elif op == "TranslateXRel":
            img, sal = affine(img, sal, (1, 0, sign * level / 10 * 0.45 * img.size[0], 0, 1, 0))
        elif op == "TranslateYRel":
            img, sal = affine(img, sal, (1, 0, 0, 0, 1, sign * level / 10 * 0.45 * img.size[1]))
    return img, sal


def flip(img, sal):
    if random.random() < 0.5:
        return F.hflip(img), F.hflip(sal)
    return img, sal


def query(img, sal):
    img, sal = rrc(img, sal)
    img, sal = flip(img, sal)
    img = jitter(img)
    return rand_augment(img, sal)


def key(img, sal):
    img, sal = rrc(img, sal)
    img = jitter(img)
    if random.random() < 0.2:
        img = ImageOps.grayscale(img).convert("RGB")
    if random.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))
    return flip(img, sal)


def to_tensors(img, sal):
    return (F.normalize(F.to_tensor(img), MEAN, STD),
            F.normalize(F.to_tensor(sal), [SAL_MEAN], [SAL_STD]))


def sample(paths):
    image_path, sal_path = paths
    img = Image.open(image_path).convert("RGB")
    sal = Image.open(sal_path).convert("L")
    out = []
    for view in (query, key):
        out.append(to_tensors(*view(img, sal)))
    return float(out[0][0][0, 0, 0])


def init_worker():
    torch.set_num_threads(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", required=True, help="text file: image path TAB saliency path per line")
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    pairs = [l.rstrip("\n").split("\t") for l in open(a.list) if l.strip()]
    work = [pairs[i % len(pairs)] for i in range(a.samples)]
    sample(work[0])  # warm-up: imports, first decode
    if a.workers == 1:
        t = time.perf_counter()
        for w in work:
            sample(w)
        dt = time.perf_counter() - t
    else:
        with Pool(a.workers, initializer=init_worker) as pool:
            pool.map(sample, work[: a.workers * 2])
            t = time.perf_counter()
            pool.map(sample, work, chunksize=4)
            dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"samples_per_s": a.samples / dt, "workers": a.workers, "peak_rss_kib": rss}))


if __name__ == "__main__":
    main()
