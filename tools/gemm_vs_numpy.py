"""Single-thread GEMM throughput: cconv._gemm.matmul vs NumPy's ``@`` (OpenBLAS).

Run with OpenBLAS's own core detection (the environment may pin a slower one):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/gemm_vs_numpy.py

Options: --sizes 512 1024 2048, --repeat 7 (median of that many runs).
"""
import argparse
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from cconv import _gemm


def time_runs(fn, repeat):
    fn()  # warm up: page faults, thread pools, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def gflops(n, seconds):
    return 2.0 * n ** 3 / seconds / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()

    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"warning: {var}={os.environ[var]} is set; NumPy figures may be low")
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    arch = blas[0].get("architecture") if blas else "?"
    print(f"cconv ISA path: {_gemm.isa_name()}  tiles f32 {_gemm.tile_shape(np.float32)} "
          f"f64 {_gemm.tile_shape(np.float64)}; NumPy BLAS core: {arch}; 1 thread; "
          f"median (min..max) of {args.repeat} runs, GFLOP/s")
    header = f"{'dtype':7} {'n':>5} | {'cconv':>22} | {'numpy':>22} | cconv/numpy"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1):
        for dtype in (np.float32, np.float64):
            for n in args.sizes:
                a = rng.standard_normal((n, n)).astype(dtype)
                b = rng.standard_normal((n, n)).astype(dtype)
                res = {}
                for name, fn in (("cconv", lambda: _gemm.matmul(a, b, nthreads=1)),
                                 ("numpy", lambda: a @ b)):
                    ts = time_runs(fn, args.repeat)
                    res[name] = (gflops(n, statistics.median(ts)), gflops(n, max(ts)),
                                 gflops(n, min(ts)))
                cells = [f"{med:7.1f} ({lo:6.1f}..{hi:6.1f})" for med, lo, hi in
                         (res["cconv"], res["numpy"])]
                ratio = res["cconv"][0] / res["numpy"][0]
                print(f"{np.dtype(dtype).name:7} {n:5d} | {cells[0]:>22} | {cells[1]:>22} | "
                      f"{ratio:6.2f}")


if __name__ == "__main__":
    main()
