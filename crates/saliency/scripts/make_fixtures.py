#!/usr/bin/env python3
"""Writes the OpenCV parity fixtures of the `saliency` crate.

Run from the repository root:
    pip install opencv-contrib-python-headless==5.0.0.93 scikit-image==0.26.0 numpy==2.4.6
    python crates/saliency/scripts/make_fixtures.py            # committed set, tests/fixtures/
    python crates/saliency/scripts/make_fixtures.py --all --out /tmp/sal-extra
    SALIENCY_EXTRA_FIXTURES=/tmp/sal-extra cargo test -p saliency --test parity

For each case NAME it writes, under the output folder:
    NAME.input.png   the input, lossless (RGB or 8-bit grey), exactly the pixels given to OpenCV
    NAME.opencv.png  OpenCV's map as 8-bit grey: round(map * 255), checked to be exact
    NAME.opencv.f32  (small cases only) OpenCV's f32 map, raw little-endian, row-major
and, for all cases together:
    opencv_f32_of_u8.f32  256 little-endian f32: the f32 OpenCV returned wherever the u8 map is k
    manifest.txt          one line per case: name width height channels has_raw_f32
The script asserts that OpenCV's f32 map is a function of the u8 map (pixel equal to
opencv_f32_of_u8[u8]) on every case, so the u8 PNG plus that table store every f32 map losslessly
(big raw f32 maps would not fit the crate's fixture budget).

`--all` adds the larger cases left out of the committed set (astronaut at 512x512, coffee and
chelsea at 600x450) and more random images, for a one-off check outside the repository.
"""

import argparse
import base64
import os
import zlib

import cv2
import numpy as np
import skimage.data

# A 3x161 grey image found by a random search on which OpenCV's on + off sum exceeds 255 at
# some pixel: its C++ (uchar) cast wraps there (keeps the low byte) rather than saturating.
WRAP_IMAGE = (3, 161, "eNqTZQYCfzzADRVoa2vrIIAcEuCXQwOlEKAOBqWlr+ORQBICLP+IHawCgeJi2VEHUuhAAKbUs1A=")

RAW_F32_MAX_PIXELS = 224 * 224


def photo(name):
    """skimage's photograph in OpenCV's channel order (BGR) or as 8-bit grey."""
    img = getattr(skimage.data, name)()
    assert img.dtype == np.uint8
    return img[:, :, ::-1].copy() if img.ndim == 3 else img


def resized(img, w, h):
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def cases(include_all):
    rng = np.random.default_rng(20260127)
    out = {}
    for name in ["astronaut", "coffee", "chelsea", "camera"]:
        out[f"{name}_224x224"] = resized(photo(name), 224, 224)
    out["chelsea_native"] = photo("chelsea")  # 451x300, odd width
    out["coffee_native"] = photo("coffee")  # 600x400
    out["camera_native"] = photo("camera")  # 512x512 grey
    out["astronaut_600x450"] = resized(photo("astronaut"), 600, 450)
    out["camera_600x450"] = resized(photo("camera"), 600, 450)
    out["coffee_crop_131x97"] = photo("coffee")[150:247, 200:331].copy()  # odd, < 224
    out["flat_37x29"] = np.full((29, 37, 3), (200, 140, 90), np.uint8)
    out["flat_grey_8x8"] = np.full((8, 8), 77, np.uint8)
    out["tiny_1x1"] = rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)
    out["tiny_7x5"] = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out["tiny_2x2"] = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
    out["row_9x1"] = rng.integers(0, 256, (1, 9, 3), dtype=np.uint8)
    out["column_1x9"] = rng.integers(0, 256, (9, 1, 3), dtype=np.uint8)
    out["noise_64x48"] = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out["noise_grey_250x3"] = rng.integers(0, 256, (3, 250), dtype=np.uint8)
    dot = np.full((40, 50, 3), 255, np.uint8)
    dot[20, 25] = 0  # only "off" saliency: the "on" sums are all zero (0/0 in OpenCV)
    out["dark_dot_50x40"] = dot
    h, w, data = WRAP_IMAGE
    out["wrap_grey_161x3"] = np.frombuffer(zlib.decompress(base64.b64decode(data)), np.uint8).reshape(h, w)
    if include_all:
        out["astronaut_native"] = photo("astronaut")
        out["coffee_600x450"] = resized(photo("coffee"), 600, 450)
        out["chelsea_600x450"] = resized(photo("chelsea"), 600, 450)
        for name in ["rocket", "immunohistochemistry", "page", "text", "moon", "coins", "colorwheel",
                     "hubble_deep_field", "retina", "clock", "brick", "grass", "gravel"]:
            out[f"{name}_native"] = photo(name)
        for i in range(20):
            hh, ww = (int(v) for v in rng.integers(1, 300, 2))
            shape = (hh, ww, 3) if i % 2 else (hh, ww)
            img = rng.integers(0, 256, shape, dtype=np.uint8)
            if i % 3 == 0:
                img = cv2.GaussianBlur(img, (0, 0), 3)
            out[f"random_{i}_{ww}x{hh}"] = img
    return out


def opencv_saliency(img):
    sal = cv2.saliency.StaticSaliencyFineGrained_create()
    ok, m = sal.computeSaliency(img)
    assert ok and m.dtype == np.float32 and m.shape == img.shape[:2], (ok, m.dtype, m.shape)
    return m


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    ap.add_argument("--all", action="store_true", help="add the big cases (not for committing)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cv2.setNumThreads(1)

    table = np.full(256, np.nan, np.float32)
    lines = []
    for name, img in cases(args.all).items():
        m = opencv_saliency(img)
        u8 = np.round(m.astype(np.float64) * 255).astype(np.uint8)
        for k in np.unique(u8):
            vals = np.unique(m[u8 == k].view(np.uint32))
            assert vals.size == 1, f"{name}: several f32 values for u8 {k}"
            v = vals.view(np.float32)[0]
            assert np.isnan(table[k]) or table[k].view(np.uint32) == vals[0], f"{name}: table clash at {k}"
            table[k] = v
        assert np.array_equal(table[u8].view(np.uint32), m.view(np.uint32)), name
        assert cv2.imwrite(os.path.join(args.out, f"{name}.input.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        assert cv2.imwrite(os.path.join(args.out, f"{name}.opencv.png"), u8, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        raw = img.shape[0] * img.shape[1] < RAW_F32_MAX_PIXELS or name == "camera_224x224"
        if raw:
            m.astype("<f4").tofile(os.path.join(args.out, f"{name}.opencv.f32"))
        # Round trip: the PNG holds exactly the pixels OpenCV saw.
        back = cv2.imread(os.path.join(args.out, f"{name}.input.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(back, img), name
        channels = 1 if img.ndim == 2 else img.shape[2]
        lines.append(f"{name} {img.shape[1]} {img.shape[0]} {channels} {int(raw)}")
        print(f"{name}: {img.shape[1]}x{img.shape[0]}x{channels}, map max {u8.max()}, "
              f"{np.count_nonzero(u8)} non-zero")
    missing = np.flatnonzero(np.isnan(table))
    print(f"f32 table: {256 - missing.size} of 256 values seen; unseen: {missing.tolist()}")
    table.astype("<f4").tofile(os.path.join(args.out, "opencv_f32_of_u8.f32"))
    with open(os.path.join(args.out, "manifest.txt"), "w") as f:
        f.write(f"# cv2 {cv2.__version__}, skimage {skimage.__version__}; name width height channels has_raw_f32\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
