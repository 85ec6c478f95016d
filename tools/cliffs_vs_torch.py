"""Random convolution problems, cconv against PyTorch side by side: prints the ones where
cconv is much slower (a "cliff": a path that does not fit the problem). Forward,
grad_input and grad_weight; 1-D / 2-D / 3-D; both layouts; dense, grouped, depthwise and
depthwise with a channel multiplier; kernels 1-7, strides 1-2, dilations 1-2.

    python tools/cliffs_vs_torch.py [--seed 1] [--seconds 300] [--ratio 1.8]

Each line: cconv/PyTorch time ratio, operation, layout, N C O G k s d size, both times
(ms, medians of 9, re-measured after a first median of 5 above the ratio). Ratios of tiny
problems (well under 0.1 ms) are mostly fixed costs. The session that wrote this found
a PyTorch 2.13 heap corruption ("free(): invalid pointer") in one sequence of its own
convolution_backward calls (a grouped 3x3 channels-first grad_weight, then a 1x1 dilated
stride-2 channels_last one), reproduced without any cconv call: a crash here is not
necessarily cconv's; rerun the sequence with RUN-style isolation before blaming either.
Seed 43 (session 21) died the same way ("double free or corruption") after 240 lines;
the same problems without PyTorch ran clean under MALLOC_CHECK_=3 and AddressSanitizer.
"""
import argparse
import random
import statistics
import time

import numpy as np
import torch

import cconv


def med(fn, n):
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def problem(rnd):
    nd = rnd.choice([1, 2, 2, 2, 3])
    last = rnd.random() < 0.5
    N = rnd.choice([1, 2, 4, 8])
    kind = rnd.choice(["dense", "dense", "dw", "group", "dwm"])
    C = rnd.choice([3, 8, 16, 24, 32, 48, 64, 96, 128, 256])
    if kind == "dense":
        G, O = 1, rnd.choice([8, 16, 32, 64, 128, 256])
    elif kind == "dw":
        G, O = C, C
    elif kind == "dwm":
        G, O = C, 2 * C
    else:
        G = rnd.choice([2, 4, 8])
        C = max(G, C // G * G)
        O = G * rnd.choice([1, 2, 4, 8])
    k = rnd.choice([1, 3, 3, 3, 5, 7])
    s = rnd.choice([1, 1, 2])
    d = rnd.choice([1, 1, 2])
    sp = rnd.choice({1: [64, 256, 1000], 2: [7, 14, 28, 56], 3: [6, 12, 16]}[nd])
    if nd == 3 and C * O > 256 * 64:
        return None
    if nd == 2 and sp >= 56 and C * O > 64 * 64 and N > 2:
        N = 2
    return nd, last, N, C, O, G, k, s, d, sp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--ratio", type=float, default=1.8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cconv.set_num_threads(a.threads)
    rnd = random.Random(a.seed)
    rng = np.random.default_rng(0)
    end = time.time() + a.seconds
    fns = {1: (cconv.conv1d, cconv.conv1d_grad_input, cconv.conv1d_grad_weight),
           2: (cconv.conv2d, cconv.conv2d_grad_input, cconv.conv2d_grad_weight),
           3: (cconv.conv3d, cconv.conv3d_grad_input, cconv.conv3d_grad_weight)}
    while time.time() < end:
        pr = problem(rnd)
        if pr is None:
            continue
        nd, last, N, C, O, G, k, s, d, sp = pr
        if last and nd == 1:
            continue  # PyTorch has no channels-last 1-D format
        p = (k // 2) * d
        x = rng.standard_normal((N, C) + (sp,) * nd).astype(np.float32)
        w = rng.standard_normal((O, C // G) + (k,) * nd).astype(np.float32)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        S, P, D, Z = [s] * nd, [p] * nd, [d] * nd, [0] * nd
        try:
            ty = torch.ops.aten.convolution(tx, tw, None, S, P, D, False, Z, G)
        except RuntimeError:
            continue  # output empty for this size
        if ty.numel() == 0:
            continue
        go = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
        tg = torch.from_numpy(go)
        lay = ["", "NCL", "NCHW", "NCDHW"][nd]
        if last:
            fmt = torch.channels_last if nd == 2 else torch.channels_last_3d
            perm = (0,) + tuple(range(2, nd + 2)) + (1,)
            x = np.ascontiguousarray(x.transpose(perm))
            go = np.ascontiguousarray(go.transpose(perm))
            w = np.ascontiguousarray(w.transpose(tuple(range(2, nd + 2)) + (1, 0)))
            tx, tw, tg = (t.contiguous(memory_format=fmt) for t in (tx, tw, tg))
            lay = ["", "NLC", "NHWC", "NDHWC"][nd]
        f, gi, gw = fns[nd]
        ops = {
            "fwd": (lambda: f(x, w, None, s, p, d, G, layout=lay),
                    lambda: torch.ops.aten.convolution(tx, tw, None, S, P, D, False, Z, G)),
            "gi": (lambda: gi(go, w, x.shape, s, p, d, G, layout=lay),
                   lambda: torch.ops.aten.convolution_backward(
                       tg, tx, tw, None, S, P, D, False, Z, G, [True, False, False])),
            "gw": (lambda: gw(x, go, w.shape, s, p, d, G, layout=lay),
                   lambda: torch.ops.aten.convolution_backward(
                       tg, tx, tw, None, S, P, D, False, Z, G, [False, True, False])),
        }
        for name, (fc, ft) in ops.items():
            c, t = med(fc, 5), med(ft, 5)
            if c > 1e-4 and c / t > a.ratio:
                c, t = med(fc, 9), med(ft, 9)
                if c / t > a.ratio:
                    print(f"{c / t:6.2f} {name:3s} {lay:5s} N{N} C{C} O{O} G{G} k{k} s{s} d{d} "
                          f"sp{sp}  cconv {c * 1e3:.3f} torch {t * 1e3:.3f}", flush=True)


if __name__ == "__main__":
    main()
