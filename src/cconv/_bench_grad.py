"""`python -m cconv bench --suite backward | transposed`: the backward passes (grad
input + grad weight + grad bias, `conv2d_backward`) and transposed convolution against
PyTorch (`torch.ops.aten.convolution_backward`, `conv_transpose{1,2}d`) when it is
installed, timed side by side in one process (the backward issue's suites). There is no
NumPy baseline here: NumPy has no gradient of its own to compare with."""
import sys
from collections import namedtuple

import numpy as np

from . import backward, functional
from ._bench import Shape, add_peer, print_geomeans, time_fn
from ._threads import get_num_threads, num_threads

GradShape = Shape  # a forward problem's fields (the backward passes of that forward)
TShape = namedtuple("TShape", "name N C H W O K stride pad")  # C in, O out; H == 1: 1-D

BACKWARD_SUITE = [
    GradShape("bwd_cifar_32to64_b16", 16, 32, 16, 16, 64, 3, 1, 1, 1, 1),
    GradShape("bwd_r50_3x3_128_28_b8", 8, 128, 28, 28, 128, 3, 1, 1, 1, 1),
    GradShape("bwd_r50_1x1_256to64_b8", 8, 256, 28, 28, 64, 1, 1, 0, 1, 1),
    GradShape("bwd_dw3x3_144_56_b8", 8, 144, 56, 56, 144, 3, 1, 1, 1, 144),
    GradShape("bwd_3x3s2_64_56_b8", 8, 64, 56, 56, 128, 3, 2, 1, 1, 1),
]
TRANSPOSED_SUITE = [
    TShape("convT_128to64_k4s2_16_b16", 16, 128, 16, 16, 64, 4, 2, 1),
    TShape("convT_dcgan_512to256_k4s2_4_b64", 64, 512, 4, 4, 256, 4, 2, 1),
    TShape("convT_64to3_k4s2_32_b16", 16, 64, 32, 32, 3, 4, 2, 1),
    TShape("convT1d_64to64_k4s2_L4000_b4", 4, 64, 1, 4000, 64, 4, 2, 1),
]


def _channels_last(a, weight=False):
    """A channels-first array (2-D or 1-D problem) in cconv's channels-last layout:
    x / grad_out (N, C, *sp) -> (N, *sp, C); a weight (A, B, *k) -> (*k, B, A)."""
    nd = a.ndim - 2
    if weight:
        perm = tuple(range(2, 2 + nd)) + (1, 0)
    else:
        perm = (0,) + tuple(range(2, 2 + nd)) + (1,)
    return np.ascontiguousarray(a.transpose(perm))


def make_backward_problem(s, layout="NCHW", seed=0):
    """Seeded float32 x, weight and grad_out of a backward suite shape, in `layout`
    (channels-first copies kept for PyTorch: returned second)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
    w = rng.standard_normal((s.O, s.C // s.groups, s.K, s.K)).astype(np.float32)
    y = functional.conv2d(x, w, None, s.stride, s.pad, s.dilation, s.groups)
    go = rng.standard_normal(y.shape).astype(np.float32)
    first = (x, w, go)
    if layout == "NHWC":
        x, w, go = _channels_last(x), _channels_last(w, True), _channels_last(go)
    return (x, w, go), first


def make_transposed_problem(s, layout="NCHW", seed=0):
    """Seeded float32 x (N, C, [H,] W) and weight (C, O, [K,] K) of a transposed suite
    shape, in `layout` (NHWC: channels-last, NLC for the 1-D case), and the
    channels-first copies."""
    rng = np.random.default_rng(seed)
    sp = (s.W,) if s.H == 1 else (s.H, s.W)
    x = rng.standard_normal((s.N, s.C) + sp).astype(np.float32)
    w = rng.standard_normal((s.C, s.O) + (s.K,) * len(sp)).astype(np.float32)
    first = (x, w)
    if layout == "NHWC":
        x, w = _channels_last(x), _channels_last(w, True)
    return (x, w), first


def _layout_of(layout, nd):
    return {("NCHW", 1): "NCL", ("NHWC", 1): "NLC"}.get((layout, nd), layout)


def _torch_tensors(torch, arrays, layout):
    ts = [torch.from_numpy(a) for a in arrays]
    if layout == "NHWC":
        ts = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
              for t in ts]
    return ts


def run_grad_bench(suite="backward", layout="NCHW", repeat=7, threads=None,
                   peers=("torch",), shapes=None, file=None):
    """Time the backward or transposed suite (float32); print a table; return a list of
    result dicts (cconv_ms, and torch_ms / cconv_over_torch when PyTorch runs).
    layout NHWC: cconv on channels-last arrays against PyTorch's channels_last tensors
    (the 1-D transposed case: NLC against PyTorch's NCL, which has no channels-last 1-D
    format)."""
    out = file or sys.stdout
    torch = None
    if "torch" in peers:
        try:
            import torch
        except ImportError:
            torch = None
    nt = threads or get_num_threads()
    if torch is not None:
        torch.set_num_threads(nt)
    table = BACKWARD_SUITE if suite == "backward" else TRANSPOSED_SUITE
    table = [s for s in table if shapes is None or any(k in s.name for k in shapes)]
    what = ("backward (grad input + grad weight + grad bias)" if suite == "backward"
            else "transposed convolution forward")
    print(f"cconv bench: {what}, float32 {layout}, {nt} threads, median of {repeat} runs "
          f"(spread = max/min - 1 of the cconv runs)", file=out)
    cols = ["cconv ms"] + (["torch ms", "cconv/torch"] if torch is not None else [])
    print(f"{'shape':<34}" + "".join(f"{c:>12}" for c in cols) + f"{'spread':>8}", file=out)
    results = []
    with num_threads(nt):
        for s in table:
            if suite == "backward":
                (x, w, go), (x0, w0, g0) = make_backward_problem(s, layout)
                cfn = (lambda x=x, w=w, go=go, s=s: backward.conv2d_backward(
                    go, x, w, s.stride, s.pad, s.dilation, s.groups, layout=layout))
                tfn = None
                if torch is not None:
                    tx, tw, tg = _torch_tensors(torch, (x0, w0, g0), layout)
                    st, pd, dl = [s.stride] * 2, [s.pad] * 2, [s.dilation] * 2
                    tfn = (lambda tx=tx, tw=tw, tg=tg, s=s, st=st, pd=pd, dl=dl:
                           torch.ops.aten.convolution_backward(
                               tg, tx, tw, [s.O], st, pd, dl, False, [0, 0], s.groups,
                               [True, True, True]))
            else:
                (x, w), (x0, w0) = make_transposed_problem(s, layout)
                nd = x.ndim - 2
                ct = backward.conv_transpose1d if nd == 1 else backward.conv_transpose2d
                lay = _layout_of(layout, nd)
                cfn = (lambda x=x, w=w, s=s, ct=ct, lay=lay:
                       ct(x, w, None, s.stride, s.pad, layout=lay))
                tfn = None
                if torch is not None:
                    tx, tw = _torch_tensors(torch, (x0, w0), layout)
                    tf = (torch.nn.functional.conv_transpose1d if nd == 1
                          else torch.nn.functional.conv_transpose2d)

                    def tfn(tx=tx, tw=tw, tf=tf, s=s):
                        with torch.no_grad():
                            return tf(tx, tw, None, s.stride, s.pad)
            med, lo, hi = time_fn(cfn, repeat)
            r = {"shape": s.name, "cconv_ms": med * 1e3, "spread": hi / lo - 1}
            row = [f"{med * 1e3:12.3f}"]
            if tfn is not None:
                add_peer(r, row, "torch", med, tfn, repeat)
            print(f"{s.name:<34}" + "".join(row) + f"{r['spread'] * 100:7.0f}%", file=out,
                  flush=True)
            results.append(r)
    print_geomeans(results, (("cconv_over_torch", "cconv/torch"),), out)
    return results
