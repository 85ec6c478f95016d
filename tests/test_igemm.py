"""Tests of the indirect micro-kernel (cconv_igemm_ukernel_*) through _gemm.igemm_tile.

igemm_tile(a, rows, b, c, accumulate) runs one tile with row pointers &a[rows[i], 0]
(the MR - m unused pointers are NULL), b packed into one zero-padded NR panel, and c
written in place with its own row stride.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from cconv import _gemm

from test_gemm import supported_isas

KCS = [0, 1, 7, 64, 300]
TOL = {np.float32: 2e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
SENTINEL = 12345.0


def make_case(m, n, kc, dtype, seed=0):
    """Source rows (more than m, with columns past kc), a row choice (permuted, repeated),
    B and a random C to accumulate into."""
    rng = np.random.default_rng(seed + 1009 * m + 37 * n + kc)
    src = rng.standard_normal((m + 5, kc + 3)).astype(dtype)
    rows = rng.integers(0, m + 5, size=m)
    b = rng.standard_normal((kc, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    return src, rows, b, c0


def run_tile(src, rows, b, c0, accumulate, pad=3):
    """Run on a view into a larger C (ldc = n + pad); the border must stay untouched."""
    m, n = c0.shape
    big = np.full((m + pad, n + pad), SENTINEL, dtype=c0.dtype)
    big[:m, :n] = c0
    _gemm.igemm_tile(src, rows, b, big[:m, :n], accumulate)
    assert np.all(big[m:, :] == SENTINEL) and np.all(big[:, n:] == SENTINEL)
    return big[:m, :n].copy()


def packed_reference(a_rows, b, c0, accumulate):
    """The same running FMA sums through the packed path (matmul).

    Accumulating: [I | A] @ [C0 ; B] starts from 0, its first m terms add 1 * C0[i, j]
    exactly once (the zero terms leave the sum unchanged), then the B terms follow in the
    same order, so it is bitwise the sum that starts from C0."""
    if not accumulate:
        return _gemm.matmul(a_rows, b)
    m = a_rows.shape[0]
    dt = a_rows.dtype
    return _gemm.matmul(np.concatenate([np.eye(m, dtype=dt), a_rows], axis=1),
                        np.concatenate([c0, b], axis=0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kc", KCS)
@pytest.mark.parametrize("accumulate", [False, True])
def test_every_tile_shape(isa, dtype, kc, accumulate):
    mr, nr = _gemm.tile_shape(dtype)
    for m in range(1, mr + 1):
        for n in range(1, nr + 1):
            src, rows, b, c0 = make_case(m, n, kc, dtype)
            c = run_tile(src, rows, b, c0, accumulate)
            a_rows = np.ascontiguousarray(src[rows, :kc])
            want = a_rows.astype(np.float64) @ b.astype(np.float64)
            if accumulate:
                want += c0
            den = max(np.linalg.norm(want), 1.0)
            assert np.linalg.norm(c - want) / den <= TOL[dtype], (m, n)
            if kc == 0:
                assert np.array_equal(c, c0 if accumulate else np.zeros_like(c0))
            assert np.array_equal(c, packed_reference(a_rows, b, c0, accumulate)), (m, n)


@pytest.mark.parametrize("dtype", DTYPES)
def test_splitting_k_is_bitwise_identical(isa, dtype):
    mr, nr = _gemm.tile_shape(dtype)
    for m, n in [(mr, nr), (1, 1), (mr - 1, nr - 1), (max(mr // 2, 1), nr)]:
        for kc in (1, 7, 300):
            src, rows, b, c0 = make_case(m, n, kc, dtype, seed=3)
            whole = run_tile(src, rows, b, c0, False)
            for cuts in ([kc // 2], [1, kc // 3, kc - 1], list(range(1, kc, 5))):
                cuts = sorted({k for k in cuts if 0 < k < kc})
                bounds = [0] + cuts + [kc]
                c = c0.copy()
                for j, (k0, k1) in enumerate(zip(bounds[:-1], bounds[1:])):
                    c = run_tile(src[:, k0:], rows, b[k0:k1], c, j > 0)
                assert np.array_equal(c, whole), (m, n, kc, cuts)
            # accumulating from C == continuing a sum that started at C
            acc = run_tile(src, rows, b, c0, True)
            a_rows = np.ascontiguousarray(src[rows, :kc])
            assert np.array_equal(acc, packed_reference(a_rows, b, c0, True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ntaps,kc", [(1, 5), (3, 1), (4, 16), (27, 3), (5, 0)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_taps_kernel_is_one_call_per_tap(isa, dtype, ntaps, kc, accumulate):
    """cconv_igemm_taps_ukernel (the taps in one call, accumulators kept in registers)
    is bitwise ntaps one-tap calls that accumulate, for every tile shape; rows past m
    (pointing at the tap's row 0) leave no trace, nor does C's border."""
    mr, nr = _gemm.tile_shape(dtype)
    rng = np.random.default_rng(ntaps * 100 + kc)
    for m in range(1, mr + 1):
        for n in range(1, nr + 1):
            src = rng.standard_normal((m + 7, kc + 2)).astype(dtype)
            rows = rng.integers(0, m + 7, size=(ntaps, m))
            b = rng.standard_normal((ntaps * kc, n)).astype(dtype)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            big = np.full((m + 2, n + 3), SENTINEL, dtype=dtype)
            big[:m, :n] = c0
            _gemm.igemm_taps_tile(src, rows, b, big[:m, :n], accumulate)
            assert np.all(big[m:, :] == SENTINEL) and np.all(big[:, n:] == SENTINEL)
            want = c0.copy() if accumulate else np.zeros_like(c0)
            for t in range(ntaps):
                want = run_tile(src, rows[t], b[t * kc:(t + 1) * kc], want,
                                accumulate or t > 0)
            assert np.array_equal(big[:m, :n], want), (m, n)


def test_taps_kernel_errors():
    a = np.zeros((4, 4), np.float32)
    c = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="multiple of 2 taps"):
        _gemm.igemm_taps_tile(a, [[0, 1], [2, 3]], np.zeros((5, 3), np.float32), c)
    with pytest.raises(IndexError):
        _gemm.igemm_taps_tile(a, [[0, 9]], np.zeros((2, 3), np.float32), c)
    with pytest.raises(TypeError):
        _gemm.igemm_taps_tile(a, [[0, 1]], np.zeros((2, 3)), c)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_on_small_integers(isa, dtype):
    mr, nr = _gemm.tile_shape(dtype)
    rng = np.random.default_rng(11)
    src = rng.integers(-4, 5, size=(40, 500)).astype(dtype)
    rows = rng.integers(0, 40, size=mr)
    b = rng.integers(-4, 5, size=(500, nr)).astype(dtype)
    c0 = rng.integers(-50, 50, size=(mr, nr)).astype(dtype)
    c = run_tile(src, rows, b, c0, True)
    assert np.array_equal(c, c0 + src[rows] @ b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa_name", ["generic", "avx2", "avx512"])
def test_unused_row_pointers_are_null_and_untouched(dtype, isa_name):
    if isa_name not in supported_isas():
        pytest.skip(f"this CPU lacks the {isa_name} path")
    # igemm_tile passes NULL for rows m..MR-1: dereferencing one would crash the process,
    # so run in a subprocess and require a clean exit.
    code = (
        "import numpy as np; from cconv import _gemm\n"
        f"dt = np.{np.dtype(dtype).name}\n"
        "mr, nr = _gemm.tile_shape(dt)\n"
        "a = np.ones((3, 300), dt); b = np.ones((300, nr), dt)\n"
        "for m in range(1, mr):\n"
        "    for acc in (0, 1):\n"
        "        c = np.zeros((m, nr), dt)\n"
        "        _gemm.igemm_tile(a, [m % 3] * m, b, c, acc)\n"
        "        assert np.all(c == 300), (m, c)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "CCONV_ISA": isa_name})
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr)


def test_errors():
    f32 = np.ones((4, 8), np.float32)
    mr, nr = _gemm.tile_shape(np.float32)
    with pytest.raises(TypeError):
        _gemm.igemm_tile(f32, [0], np.ones((8, 2)), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError):
        _gemm.igemm_tile(f32, [], f32[:, :2].T.copy(), np.zeros((0, 2), np.float32))
    with pytest.raises(ValueError):
        _gemm.igemm_tile(f32, [0] * (mr + 1), np.ones((8, 2), np.float32),
                         np.zeros((mr + 1, 2), np.float32))
    with pytest.raises(ValueError):
        _gemm.igemm_tile(f32, [0], np.ones((8, nr + 1), np.float32),
                         np.zeros((1, nr + 1), np.float32))
    with pytest.raises(ValueError):  # kc > a's columns
        _gemm.igemm_tile(f32, [0], np.ones((9, 2), np.float32), np.zeros((1, 2), np.float32))
    with pytest.raises(IndexError):
        _gemm.igemm_tile(f32, [4], np.ones((8, 2), np.float32), np.zeros((1, 2), np.float32))


_CROSS_ISA_SCRIPT = r"""
import sys, numpy as np
from cconv import _gemm
d, name = sys.argv[1], sys.argv[2]
assert _gemm.isa_name() == name, _gemm.isa_name()
for dt in (np.float32, np.float64):
    rng = np.random.default_rng(2024)
    src = rng.standard_normal((20, 300)).astype(dt)
    out = []
    # tiles of the smallest geometry (generic 4x8) run on every path
    for m, n, kc, acc in [(1, 1, 1, 0), (4, 8, 300, 1), (3, 5, 64, 1), (2, 8, 7, 0),
                          (4, 3, 257, 0)]:
        rows = rng.integers(0, 20, size=m)
        b = rng.standard_normal((kc, n)).astype(dt)
        c = rng.standard_normal((m, n)).astype(dt)
        _gemm.igemm_tile(src, rows, b, c, acc)
        out.append(c.ravel())
    np.save(f"{d}/igemm_{np.dtype(dt).name}_{name}.npy", np.concatenate(out))
"""


def test_bitwise_identical_across_isa_paths(tmp_path):
    isas = supported_isas()
    if len(isas) < 2:
        pytest.skip("this CPU supports only the generic path")
    for name in isas:
        r = subprocess.run(
            [sys.executable, "-c", _CROSS_ISA_SCRIPT, str(tmp_path), name],
            env={**os.environ, "CCONV_ISA": name},
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
    for dt in ("float32", "float64"):
        ref = np.load(tmp_path / f"igemm_{dt}_{isas[0]}.npy")
        assert np.all(np.isfinite(ref))
        for name in isas[1:]:
            assert np.array_equal(ref, np.load(tmp_path / f"igemm_{dt}_{name}.npy")), (dt, name)


def test_micro_benchmark_runs():
    # smoke test of the benchmark hook (numbers are reported, not asserted)
    for kind in ("igemm", "packed"):
        assert _gemm._bench_tile(np.float32, kind, 16, reps=10, repeat=1) > 0
