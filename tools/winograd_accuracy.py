"""Accuracy table of cconv's Winograd variants: relative Frobenius error against the
float64 reference (tests/reference.py) on standard normal inputs and N(0, 1/fan_in)
weights.  Run: PYTHONPATH=src python tools/winograd_accuracy.py"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import cconv  # noqa: E402
from reference import conv_nd_reference, rel_error  # noqa: E402

CASES = [(1, 3, 32, 32, 32), (1, 64, 56, 56, 64), (1, 128, 28, 28, 128), (1, 256, 14, 14, 256),
         (1, 512, 7, 7, 512)]


def main():
    rng = np.random.default_rng(0)
    print(f"{'N,C,H,W,O':<22}{'dtype':>9}" + "".join(f"{a:>14}" for a in
          ("im2col", "winograd_f2", "winograd_f4")))
    for N, C, H, W, O in CASES:
        x = rng.standard_normal((N, C, H, W))
        w = rng.standard_normal((O, C, 3, 3)) / np.sqrt(9 * C)
        b = rng.standard_normal(O)
        ref = conv_nd_reference(x, w, b, 1, ((1, 1), (1, 1)), 1, 1, "zeros", "NCHW")
        for dt in (np.float32, np.float64):
            errs = [rel_error(cconv.conv2d(x.astype(dt), w.astype(dt), b.astype(dt), padding=1,
                                           algorithm=a), ref)
                    for a in ("im2col", "winograd_f2", "winograd_f4")]
            print(f"{str((N, C, H, W, O)):<22}{np.dtype(dt).name:>9}"
                  + "".join(f"{e:14.2e}" for e in errs))


if __name__ == "__main__":
    main()
