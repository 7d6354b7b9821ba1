#!/usr/bin/env python3
"""Times OpenCV's StaticSaliencyFineGrained on one thread, for the `saliency` benchmark.

    pip install opencv-contrib-python-headless==5.0.0.93 numpy==2.4.6
    python crates/saliency/scripts/bench_opencv.py --seconds 3 IMAGE.png...

Prints one line per image: `PATH IMAGES_PER_SECOND` (best of 3 timed rounds, after a warm-up).
The image is read once, converted to BGR exactly as the fixtures were made; only
computeSaliency is timed.
"""

import argparse
import time

import cv2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per image")
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    sal = cv2.saliency.StaticSaliencyFineGrained_create()
    for path in args.images:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        assert img is not None, path
        sal.computeSaliency(img)
        t0 = time.perf_counter()
        sal.computeSaliency(img)
        once = max(time.perf_counter() - t0, 1e-6)
        reps = max(1, int(args.seconds / 3 / once))
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                sal.computeSaliency(img)
            best = max(best, reps / (time.perf_counter() - t0))
        print(path, f"{best:.2f}", flush=True)


if __name__ == "__main__":
    main()
