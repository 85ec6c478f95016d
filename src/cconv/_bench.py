"""`python -m cconv bench`: cconv against a pure-NumPy im2col baseline and, when they
are installed, PyTorch and ONNX Runtime, on real network layers, timed side by side in
one process."""
import argparse
import statistics
import time
from collections import namedtuple

import numpy as np

from . import functional
from ._packed import pack_weights
from ._threads import get_num_threads, num_threads

Shape = namedtuple("Shape", "name N C H W O K stride pad dilation groups")

# The public benchmark suite (float32 by default).
SUITE = [
    Shape("cifar_b1_3to32", 16, 3, 32, 32, 32, 3, 1, 1, 1, 1),
    Shape("cifar_b2_32to64", 16, 32, 16, 16, 64, 3, 1, 1, 1, 1),
    Shape("cifar_b3_128to128", 16, 128, 8, 8, 128, 3, 1, 1, 1, 1),
    Shape("r50_stem_7x7s2", 1, 3, 224, 224, 64, 7, 2, 3, 1, 1),
    Shape("r50_3x3_64_56", 1, 64, 56, 56, 64, 3, 1, 1, 1, 1),
    Shape("r50_3x3_128_28", 1, 128, 28, 28, 128, 3, 1, 1, 1, 1),
    Shape("r50_3x3_256_14", 1, 256, 14, 14, 256, 3, 1, 1, 1, 1),
    Shape("r50_3x3_512_7", 1, 512, 7, 7, 512, 3, 1, 1, 1, 1),
    Shape("r50_1x1_256to64_56", 1, 256, 56, 56, 64, 1, 1, 0, 1, 1),
    Shape("r50_1x1_1024to256_14", 1, 1024, 14, 14, 256, 1, 1, 0, 1, 1),
    Shape("r50_3x3s2_128_56", 1, 128, 56, 56, 128, 3, 2, 1, 1, 1),
    Shape("mbv2_dw3x3_144_56", 1, 144, 56, 56, 144, 3, 1, 1, 1, 144),
    Shape("mbv2_dw3x3s2_96_112", 1, 96, 112, 112, 96, 3, 2, 1, 1, 96),
    Shape("resnext_g32_256_14", 1, 256, 14, 14, 256, 3, 1, 1, 1, 32),
    Shape("dilated_d2_256_28", 1, 256, 28, 28, 256, 3, 1, 2, 2, 1),
    Shape("convnext_dw7x7_96_56", 1, 96, 56, 56, 96, 7, 1, 3, 1, 96),
    Shape("effnet_dw5x5_240_28", 1, 240, 28, 28, 240, 5, 1, 2, 1, 240),
]


def make_problem(s, dtype=np.float32, layout="NCHW", seed=0):
    """Seeded inputs for a suite shape: x, weight (cconv's layout), bias."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(dtype)
    w = (rng.standard_normal((s.O, s.C // s.groups, s.K, s.K)) / np.sqrt(s.C // s.groups * s.K * s.K)).astype(dtype)
    b = rng.standard_normal(s.O).astype(dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        w = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    return x, w, b


def out_hw(s):
    span = (s.K - 1) * s.dilation + 1
    return ((s.H + 2 * s.pad - span) // s.stride + 1, (s.W + 2 * s.pad - span) // s.stride + 1)


def flops(s):
    oh, ow = out_hw(s)
    return 2.0 * s.N * s.O * (s.C // s.groups) * s.K * s.K * oh * ow


def problem_bytes(s, dtype=np.float32):
    """Bytes a call must move at least once: input, weight, bias and output."""
    oh, ow = out_hw(s)
    n = s.N * s.C * s.H * s.W + s.O * (s.C // s.groups) * s.K * s.K + s.O + s.N * s.O * oh * ow
    return n * np.dtype(dtype).itemsize


def machine_limits(nthreads, dtype=np.float32, repeat=9):
    """What this machine allows now, measured in-process with nthreads threads: the
    GFLOP/s of cconv's GEMM on a 1024^3 product (its practical compute peak), and the
    copy bandwidth (bytes read + written per second, one memcpy per thread) of 1 MiB per
    thread (inside the caches) and of 64 MiB (far larger than them)."""
    from . import _gemm

    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024)).astype(dtype)
    t = time_fn(lambda: _gemm.matmul(a, a, nthreads), repeat, cooldown=0)[0]
    gemm = 2.0 * 1024 ** 3 / t / 1e9
    bw = {}
    for key, n in (("copy_cache_gbs", nthreads << 20), ("copy_memory_gbs", 64 << 20)):
        bw[key] = n / time_fn(copy_fn(n, nthreads), repeat, cooldown=0)[0] / 1e9
    return {"gemm_gflops": gemm, **bw}


def copy_fn(nbytes, nthreads):
    """A threaded memcpy that reads nbytes / 2 and writes nbytes / 2 (the bandwidth
    probe: a convolution that moved only its compulsory bytes could not beat it)."""
    from . import _core

    src = np.ones(max(nbytes // 2, 1), np.uint8)
    dst = np.empty_like(src)
    return lambda: _core.stream_copy(src, dst, nthreads)


def roofline_ms(s, gemm_gflops, copy_ms):
    """The shortest time the machine allows for shape s (ms): the larger of its direct
    FLOPs at the GEMM rate and the time to copy its compulsory bytes (copy_ms, measured
    by copy_fn(problem_bytes) repeated as the shape's own timing is: the same caches)."""
    return max(flops(s) / (gemm_gflops * 1e9) * 1e3, copy_ms)


def numpy_conv2d(x, w, b, s, layout="NCHW"):
    """The pure-NumPy baseline a user would write: sliding_window_view + matmul."""
    from numpy.lib.stride_tricks import sliding_window_view

    p, d, st, g = s.pad, s.dilation, s.stride, s.groups
    oh, ow = out_hw(s)
    span = (s.K - 1) * d + 1
    if layout == "NCHW":
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        win = sliding_window_view(xp, (span, span), axis=(2, 3))[:, :, ::st, ::st, ::d, ::d]
        # win: (N, C, oh, ow, K, K)
        Cg, Og = s.C // g, s.O // g
        outs = []
        for gi in range(g):
            wg = win[:, gi * Cg:(gi + 1) * Cg]
            cols = wg.transpose(0, 2, 3, 1, 4, 5).reshape(s.N, oh * ow, Cg * s.K * s.K)
            wm = w[gi * Og:(gi + 1) * Og].reshape(Og, -1)
            outs.append(np.matmul(cols, wm.T))  # (N, P, Og)
        y = np.concatenate(outs, axis=2) + b
        return y.transpose(0, 2, 1).reshape(s.N, s.O, oh, ow)
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    win = sliding_window_view(xp, (span, span), axis=(1, 2))[:, ::st, ::st, :, ::d, ::d]
    # win: (N, oh, ow, C, K, K)
    Cg, Og = s.C // g, s.O // g
    outs = []
    for gi in range(g):
        wg = win[:, :, :, gi * Cg:(gi + 1) * Cg]
        cols = wg.transpose(0, 1, 2, 4, 5, 3).reshape(s.N, oh * ow, s.K * s.K * Cg)
        wm = w[:, :, :, gi * Og:(gi + 1) * Og].reshape(-1, Og)
        outs.append(np.matmul(cols, wm))
    return (np.concatenate(outs, axis=2) + b).reshape(s.N, oh, ow, s.O)


def _torch_fn(s, x, w, b, layout):
    import torch

    xt = torch.from_numpy(x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    wt = torch.from_numpy(w if layout == "NCHW" else np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    bt = torch.from_numpy(b)
    if layout == "NHWC":
        xt = xt.contiguous(memory_format=torch.channels_last)
        wt = wt.contiguous(memory_format=torch.channels_last)
    conv = torch.nn.functional.conv2d

    def run():
        with torch.no_grad():
            return conv(xt, wt, bt, s.stride, s.pad, s.dilation, s.groups)

    return run


def _ort_fn(s, x, w, b, layout, nthreads):
    """A one-node ONNX Conv model run by ONNX Runtime's CPU provider (its MLAS kernels),
    intra-op spinning off so that its idle threads do not slow the next library timed.
    ONNX's Conv is channels-first only: for NHWC the same problem is given in NCHW (the
    transposes are made once, outside the timing). None when the dtype is not supported."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if x.dtype != np.float32:
        return None  # ONNX Runtime's CPU Conv kernel is float32-only
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        w = np.ascontiguousarray(w.transpose(3, 2, 0, 1))
    oh, ow = out_hw(s)
    node = helper.make_node("Conv", ["X", "W", "B"], ["Y"], kernel_shape=[s.K, s.K],
                            strides=[s.stride] * 2, pads=[s.pad] * 4,
                            dilations=[s.dilation] * 2, group=s.groups)
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [s.N, s.O, oh, ow])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = nthreads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    feed = {"X": x}
    return lambda: sess.run(None, feed)


def time_fn(fn, repeat, min_time=0.02, cooldown=0.4):
    """Median and spread (min, max) of `repeat` timings, each an average over enough
    calls to last min_time seconds.

    Each library keeps its own thread pool (cconv's and PyTorch's OpenMP, NumPy's
    OpenBLAS) whose idle threads spin for a while after a call; the cooldown lets the
    previous library's threads go to sleep so they do not steal the cores."""
    time.sleep(cooldown)
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / once))
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return statistics.median(ts), min(ts), max(ts)


def run_bench(shapes=None, layout="NCHW", dtype=np.float32, repeat=7, threads=None,
              peers=("numpy", "torch", "ort"), file=None, algorithm="auto", roofline=False,
              packed=False):
    """Time the suite; print a table; return a list of result dicts. roofline: measure
    machine_limits first and add each shape's achieved GB/s (problem_bytes / time) and
    its share of the roofline (roofline_ms / time: 100% = as fast as the machine
    allows; above 100% where the algorithm does fewer multiplications than the direct
    count, as Winograd does). packed: cconv gets its weights packed once, outside the
    timing (cconv.pack_weights, as layers keep them; ONNX Runtime likewise prepacks its
    constant weights when the session is made), instead of a plain array per call."""
    import sys

    out = file or sys.stdout
    have_torch = have_ort = False
    if "torch" in peers:
        try:
            import torch

            have_torch = True
        except ImportError:
            pass
    if "ort" in peers:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            have_ort = np.dtype(dtype) == np.float32
        except ImportError:
            pass
    nt = threads or get_num_threads()
    if have_torch:
        torch.set_num_threads(nt)
    suite = [s for s in SUITE if shapes is None or any(k in s.name for k in shapes)]
    cols = ["cconv ms", "GFLOP/s"]
    if roofline:
        cols += ["GB/s", "of roof"]
    if "numpy" in peers:
        cols += ["numpy ms", "np/cconv"]
    if have_torch:
        cols += ["torch ms", "cconv/torch"]
    if have_ort:
        cols += ["ort ms", "cconv/ort"]
    print(f"cconv bench: conv2d {layout} {np.dtype(dtype).name}, algorithm={algorithm}, "
          f"{'weights packed once, ' if packed else ''}{nt} threads, median of "
          f"{repeat} runs (spread = max/min - 1 of the cconv runs)", file=out)
    limits = None
    if roofline:
        with num_threads(nt):
            limits = machine_limits(nt, dtype)
        print(f"machine now, {nt} threads: GEMM 1024^3 {limits['gemm_gflops']:.0f} GFLOP/s; "
              f"copy {limits['copy_cache_gbs']:.0f} GB/s (1 MiB/thread, in cache), "
              f"{limits['copy_memory_gbs']:.0f} GB/s (64 MiB); of roof = max(FLOPs at the "
              f"GEMM rate, a copy of the layer's bytes) / cconv time", file=out)
    print(f"{'shape':<22}" + "".join(f"{c:>12}" for c in cols) + f"{'spread':>8}", file=out)
    results = []
    with num_threads(nt):
        for s in suite:
            x, w, b = make_problem(s, dtype, layout)
            if algorithm != "auto" and not _supports(s, algorithm):
                continue
            wc = pack_weights(w, layout=layout, groups=s.groups) if packed else w
            cfn = lambda: functional.conv2d(x, wc, b, s.stride, s.pad, s.dilation, s.groups,
                                            layout=layout, algorithm=algorithm)
            med, lo, hi = time_fn(cfn, repeat)
            r = {"shape": s.name, "cconv_ms": med * 1e3, "gflops": flops(s) / med / 1e9,
                 "spread": hi / lo - 1}
            row = [f"{med * 1e3:12.3f}", f"{r['gflops']:12.1f}"]
            if limits is not None:
                nbytes = problem_bytes(s, dtype)
                copy_ms = time_fn(copy_fn(nbytes, nt), repeat, cooldown=0)[0] * 1e3
                r["gbs"] = nbytes / med / 1e9
                r["of_roof"] = roofline_ms(s, limits["gemm_gflops"], copy_ms) / (med * 1e3)
                row += [f"{r['gbs']:12.1f}", f"{r['of_roof'] * 100:11.0f}%"]
            if "numpy" in peers:
                nmed = time_fn(lambda: numpy_conv2d(x, w, b, s, layout), max(3, repeat // 2))[0]
                r["numpy_ms"] = nmed * 1e3
                r["numpy_over_cconv"] = nmed / med
                row += [f"{nmed * 1e3:12.3f}", f"{nmed / med:12.2f}"]
            if have_torch:
                add_peer(r, row, "torch", med, _torch_fn(s, x, w, b, layout), repeat)
            if have_ort:
                add_peer(r, row, "ort", med, _ort_fn(s, x, w, b, layout, nt), repeat)
            print(f"{s.name:<22}" + "".join(row) + f"{r['spread'] * 100:7.0f}%", file=out,
                  flush=True)
            results.append(r)
    print_geomeans(results, (("numpy_over_cconv", "numpy/cconv"),
                             ("cconv_over_torch", "cconv/torch"), ("cconv_over_ort", "cconv/ort")),
                   out)
    return results


def add_peer(r, row, peer, med, fn, repeat):
    """Time a peer library's fn; add its ms and cconv's time (med, s) over it to the
    result dict r and the table row."""
    pmed = time_fn(fn, repeat)[0]
    r[f"{peer}_ms"] = pmed * 1e3
    r[f"cconv_over_{peer}"] = med / pmed
    row += [f"{pmed * 1e3:12.3f}", f"{med / pmed:12.2f}"]


def print_geomeans(results, keys, out):
    """One line per (result key, label) present in results: geomean, min and max."""
    for key, label in keys:
        vals = [r[key] for r in results if key in r]
        if vals:
            gm = float(np.exp(np.mean(np.log(vals))))
            print(f"geomean {label}: {gm:.3f}  (min {min(vals):.2f}, max {max(vals):.2f})",
                  file=out)


def _supports(s, algorithm):
    """Whether an explicitly requested algorithm can run suite shape s (others skipped)."""
    if algorithm.startswith("winograd"):
        return s.K == 3 and s.stride == 1 and s.dilation == 1
    if algorithm == "depthwise":
        return s.groups == s.C
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m cconv bench")
    ap.add_argument("--suite", choices=["forward", "backward", "transposed"], default="forward",
                    help="forward: conv2d over the public shapes (default); backward: "
                         "conv2d_backward (all three gradients); transposed: "
                         "conv_transpose1d/2d (float32, PyTorch the only peer for both)")
    ap.add_argument("--layout", choices=["NCHW", "NHWC"], default="NCHW")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--shapes", nargs="*", default=None, help="substrings of shape names")
    ap.add_argument("--algorithm", default="auto",
                    help="cconv algorithm (auto, im2col, direct, winograd, winograd_f2, "
                         "winograd_f4, depthwise, fft); shapes it cannot run are skipped")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy baseline")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    ap.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    ap.add_argument("--packed", action="store_true",
                    help="give cconv its weights packed once (cconv.pack_weights, as layers "
                         "do and as ONNX Runtime prepacks constant weights) instead of a "
                         "plain array per call")
    ap.add_argument("--roofline", action="store_true",
                    help="measure the machine's GEMM rate and copy bandwidth first and add "
                         "each shape's GB/s and share of that roofline")
    a = ap.parse_args(argv)
    peers = tuple(p for p, off in (("numpy", a.no_numpy), ("torch", a.no_torch),
                                   ("ort", a.no_ort)) if not off)
    if a.suite != "forward":
        from ._bench_grad import run_grad_bench

        if a.dtype != "float32" or a.algorithm != "auto" or a.roofline or a.packed:
            ap.error(f"--suite {a.suite} runs float32, algorithm auto, without --roofline "
                     "or --packed")
        run_grad_bench(a.suite, a.layout, a.repeat, a.threads, peers, a.shapes)
        return
    run_bench(a.shapes, a.layout, np.dtype(a.dtype), a.repeat, a.threads, peers,
              algorithm=a.algorithm, roofline=a.roofline, packed=a.packed)
