"""Backward passes and transposed convolution, cconv vs PyTorch side by side in one
process (float32, median of --repeat runs). The suites are the backward issue's.

    python tools/backward_vs_torch.py [--threads 2] [--repeat 7] [--layout NCHW]

--layout NHWC runs cconv on channels-last arrays (weights (kh, kw, C/groups, O)) against
PyTorch on channels_last tensors (conv_transpose1d: NLC against PyTorch's NCL, which has
no channels-last 1-D format).
"""
import argparse
import statistics
import time

import numpy as np
import torch

import cconv

BWD = [  # name, N, C, H, W, O, K, stride, pad, dilation, groups
    ("bwd_cifar_32to64_b16", 16, 32, 16, 16, 64, 3, 1, 1, 1, 1),
    ("bwd_r50_3x3_128_28_b8", 8, 128, 28, 28, 128, 3, 1, 1, 1, 1),
    ("bwd_r50_1x1_256to64_b8", 8, 256, 28, 28, 64, 1, 1, 0, 1, 1),
    ("bwd_dw3x3_144_56_b8", 8, 144, 56, 56, 144, 3, 1, 1, 1, 144),
    ("bwd_3x3s2_64_56_b8", 8, 64, 56, 56, 128, 3, 2, 1, 1, 1),
]
TRANSPOSED = [  # name, N, C_in, H, W, C_out, K, stride, pad
    ("convT_128to64_k4s2_16_b16", 16, 128, 16, 16, 64, 4, 2, 1),
    ("convT_dcgan_512to256_k4s2_4_b64", 64, 512, 4, 4, 256, 4, 2, 1),
    ("convT_64to3_k4s2_32_b16", 16, 64, 32, 32, 3, 4, 2, 1),
]


def med(fn, repeat):
    fn()
    time.sleep(0.1)  # let the other library's idle threads go to sleep
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW")
    a = ap.parse_args()
    last = a.layout == "NHWC"

    def cl(t):  # a torch tensor in the layout's memory format
        return t.contiguous(memory_format=torch.channels_last) if last and t.dim() == 4 else t

    def hwc(arr, weight=False, transposed=False):  # a NumPy array in cconv's layout
        if not last:
            return arr
        if weight:  # conv (O, Cg, kh, kw) -> (kh, kw, Cg, O); transposed (Ci, Co, ...) too
            perm = (2, 3, 1, 0) if arr.ndim == 4 else (2, 1, 0)
        else:
            perm = (0, 2, 3, 1) if arr.ndim == 4 else (0, 2, 1)
        return np.ascontiguousarray(arr.transpose(perm))

    torch.set_num_threads(a.threads)
    cconv.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    ratios = []
    print(f"backward (grad input + grad weight + grad bias), float32 {a.layout}, {a.threads} threads, "
          f"median of {a.repeat}")
    print(f"{'shape':<34}{'cconv ms':>10}{'torch ms':>10}{'cconv/torch':>13}{'spread':>8}")
    for name, N, C, H, W, O, K, s, p, d, g in BWD:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = rng.standard_normal((O, C // g, K, K)).astype(np.float32)
        y = cconv.conv2d(x, w, None, s, p, d, g)
        go = rng.standard_normal(y.shape).astype(np.float32)
        tx, tw, tg = (cl(torch.from_numpy(v)) for v in (x, w, go))
        x, w, go = hwc(x), hwc(w, weight=True), hwc(go)
        c = med(lambda: cconv.conv2d_backward(go, x, w, s, p, d, g, layout=a.layout),
                a.repeat)
        t = med(lambda: torch.ops.aten.convolution_backward(
            tg, tx, tw, [O], [s, s], [p, p], [d, d], False, [0, 0], g, [True, True, True]),
            a.repeat)
        ratios.append(c[0] / t[0])
        print(f"{name:<34}{c[0] * 1e3:10.3f}{t[0] * 1e3:10.3f}{c[0] / t[0]:13.2f}"
              f"{(c[2] / c[1] - 1) * 100:7.0f}%")
    print(f"geomean cconv/torch: {np.exp(np.mean(np.log(ratios))):.3f}")
    ratios = []
    print(f"\ntransposed convolution forward, float32 {a.layout}, {a.threads} threads")
    cases = list(TRANSPOSED) + [("convT1d_64to64_k4s2_L4000_b4", 4, 64, 1, 4000, 64, 4, 2, 1)]
    for name, N, C, H, W, O, K, s, p in cases:
        oned = name.startswith("convT1d")
        if oned:
            x = rng.standard_normal((N, C, W)).astype(np.float32)
            w = rng.standard_normal((C, O, K)).astype(np.float32)
            xl, wl = hwc(x), hwc(w, weight=True)
            cf = lambda: cconv.conv_transpose1d(xl, wl, None, s, p,
                                                layout="NLC" if last else "NCL")
            tf = torch.nn.functional.conv_transpose1d
        else:
            x = rng.standard_normal((N, C, H, W)).astype(np.float32)
            w = rng.standard_normal((C, O, K, K)).astype(np.float32)
            xl, wl = hwc(x), hwc(w, weight=True)
            cf = lambda: cconv.conv_transpose2d(xl, wl, None, s, p, layout=a.layout)
            tf = torch.nn.functional.conv_transpose2d
        tx, tw = cl(torch.from_numpy(x)), cl(torch.from_numpy(w))

        def tfn():
            with torch.no_grad():
                return tf(tx, tw, None, s, p)

        c = med(cf, a.repeat)
        t = med(tfn, a.repeat)
        ratios.append(c[0] / t[0])
        print(f"{name:<34}{c[0] * 1e3:10.3f}{t[0] * 1e3:10.3f}{c[0] / t[0]:13.2f}"
              f"{(c[2] / c[1] - 1) * 100:7.0f}%")
    print(f"geomean cconv/torch: {np.exp(np.mean(np.log(ratios))):.3f}")


if __name__ == "__main__":
    main()
