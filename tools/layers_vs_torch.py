"""Real-network layers outside the public bench suite, cconv vs PyTorch side by side in
one process: forward, grad_input and grad_weight of each layer in both layouts
(float32, the libraries alternating, median of --repeat runs each).

    python tools/layers_vs_torch.py [--threads 2] [--repeat 5] [NAME ...]

Each line: layer, layout, then per operation cconv / PyTorch (cconv ms / PyTorch ms).
The layers: patch stems (ViT, ConvNeXt, Swin), wav2vec 2.0's and Whisper's 1-D
convolutions, a 3-D U-Net block, DeepLab's ASPP branch (dilation 12 on 33x33), a YOLO
stride-2 layer and a U-Net decoder layer.
"""
import argparse
import statistics
import time

import numpy as np
import torch

import cconv

LAYERS = [  # name, nd, N, C, O, kernel, stride, padding, dilation, size
    ("vit_patch16", 2, 8, 3, 768, 16, 16, 0, 1, 224),
    ("convnext_stem4", 2, 8, 3, 96, 4, 4, 0, 1, 224),
    ("swin_patch4", 2, 8, 3, 128, 4, 4, 0, 1, 224),
    ("wav2vec_conv0", 1, 4, 1, 512, 10, 5, 0, 1, 16000),
    ("wav2vec_conv1", 1, 4, 512, 512, 3, 2, 0, 1, 3199),
    ("whisper_conv1", 1, 4, 80, 384, 3, 1, 1, 1, 3000),
    ("whisper_conv2", 1, 4, 384, 384, 3, 2, 1, 1, 3000),
    ("unet3d_64_32", 3, 1, 64, 64, 3, 1, 1, 1, 32),
    ("deeplab_aspp_d12", 2, 4, 2048, 256, 3, 1, 12, 12, 33),
    ("yolo_3x3s2_64", 2, 8, 64, 128, 3, 2, 1, 1, 160),
    ("unet_decoder_128", 2, 4, 128, 64, 3, 1, 1, 1, 128),
]
LAYOUTS = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cconv.set_num_threads(a.threads)
    print(f"float32, {a.threads} threads, median of {a.repeat}: cconv / PyTorch "
          f"(cconv ms / PyTorch ms)")
    for name, nd, N, C, O, k, s, p, d, size in LAYERS:
        if a.names and name not in a.names:
            continue
        for lay in LAYOUTS[nd]:
            last = lay in ("NLC", "NHWC", "NDHWC")
            rng = np.random.default_rng(0)
            x = rng.standard_normal((N, C) + (size,) * nd).astype(np.float32)
            w = (rng.standard_normal((O, C) + (k,) * nd) * 0.1).astype(np.float32)
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            S, P, D, Z = [s] * nd, [p] * nd, [d] * nd, [0] * nd
            ty = torch.ops.aten.convolution(tx, tw, None, S, P, D, False, Z, 1)
            go = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
            tg = torch.from_numpy(go)
            if last:
                perm = (0,) + tuple(range(2, nd + 2)) + (1,)
                x = np.ascontiguousarray(x.transpose(perm))
                go = np.ascontiguousarray(go.transpose(perm))
                w = np.ascontiguousarray(w.transpose(tuple(range(2, nd + 2)) + (1, 0)))
                if nd > 1:  # PyTorch has no channels-last 1-D format
                    fmt = torch.channels_last if nd == 2 else torch.channels_last_3d
                    tx, tw, tg = (t.contiguous(memory_format=fmt) for t in (tx, tw, tg))
            f = getattr(cconv, f"conv{nd}d")
            gi = getattr(cconv, f"conv{nd}d_grad_input")
            gw = getattr(cconv, f"conv{nd}d_grad_weight")
            bwd = torch.ops.aten.convolution_backward
            ops = {
                "fwd": (lambda: f(x, w, None, s, p, d, layout=lay),
                        lambda: torch.ops.aten.convolution(tx, tw, None, S, P, D, False, Z, 1)),
                "gi": (lambda: gi(go, w, x.shape, s, p, d, layout=lay),
                       lambda: bwd(tg, tx, tw, None, S, P, D, False, Z, 1,
                                   [True, False, False])),
                "gw": (lambda: gw(x, go, w.shape, s, p, d, layout=lay),
                       lambda: bwd(tg, tx, tw, None, S, P, D, False, Z, 1,
                                   [False, True, False])),
            }
            cols = []
            for op, (fc, ft) in ops.items():
                fc()
                ft()
                cs, ts = [], []
                for _ in range(a.repeat):
                    cs.append(timed(fc))
                    ts.append(timed(ft))
                c, t = statistics.median(cs), statistics.median(ts)
                cols.append(f"{op} {c / t:4.2f} ({c * 1e3:.2f}/{t * 1e3:.2f})")
            print(f"{name:18s} {lay:5s} " + "  ".join(cols), flush=True)


if __name__ == "__main__":
    main()
