"""Tests of the GEMM core through cconv._gemm.matmul."""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from cconv import _gemm

SIZES = [1, 2, 3, 7, 13, 17, 31, 33, 65, 100, 257, 300, 513]
ALL_ISAS = ["generic", "avx2", "avx512"]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def supported_isas():
    """ISA paths this CPU runs (probed in subprocesses: the path is chosen at import)."""
    out = []
    for name in ALL_ISAS:
        r = subprocess.run(
            [sys.executable, "-c", "import cconv._gemm"],
            env={**os.environ, "CCONV_ISA": name},
            capture_output=True,
        )
        if r.returncode == 0:
            out.append(name)
    return out


def sampled_shapes(count=40, seed=1234):
    rng = np.random.default_rng(seed)
    allc = list(itertools.product(SIZES, repeat=3))
    # keep the big ones rare so the generic path stays quick
    small = [s for s in allc if np.prod(s) <= 20_000_000]
    picks = rng.choice(len(small), size=count, replace=False)
    shapes = [small[i] for i in picks]
    # every size appears in every position at least once
    shapes += [(s, 17, 33) for s in SIZES] + [(31, s, 13) for s in SIZES]
    shapes += [(7, 65, s) for s in SIZES]
    return sorted(set(shapes))


SHAPES = sampled_shapes()


def operands(m, n, k, dtype, seed=0):
    rng = np.random.default_rng(seed + 7919 * m + 31 * n + k)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    return a, b


def rel_err(c, a, b):
    ref = a.astype(np.float64) @ b.astype(np.float64)
    den = np.linalg.norm(ref)
    return np.linalg.norm(c.astype(np.float64) - ref) / (den if den > 0 else 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matches_numpy(m, n, k, dtype):
    a, b = operands(m, n, k, dtype)
    c = _gemm.matmul(a, b)
    assert c.shape == (m, n) and c.dtype == dtype and c.flags.c_contiguous
    assert rel_err(c, a, b) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n", [(1, 1), (13, 33), (0, 5), (5, 0)])
def test_k_zero_gives_zeros(m, n, dtype):
    a = np.empty((m, 0), dtype)
    b = np.empty((0, n), dtype)
    c = _gemm.matmul(a, b)
    assert c.shape == (m, n)
    assert np.all(c == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_m_n(dtype):
    assert _gemm.matmul(np.ones((0, 4), dtype), np.ones((4, 3), dtype)).shape == (0, 3)
    assert _gemm.matmul(np.ones((2, 4), dtype), np.ones((4, 0), dtype)).shape == (2, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [255, 256, 257, 511, 513, 1000, 1300])
def test_k_spanning_several_kc_blocks(k, dtype):
    a, b = operands(37, 45, k, dtype)
    assert rel_err(_gemm.matmul(a, b), a, b) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_single_running_sum_is_exact_on_integers(dtype):
    # small integers: every partial sum is exact, so the result is exact
    rng = np.random.default_rng(5)
    a = rng.integers(-4, 5, size=(29, 700)).astype(dtype)
    b = rng.integers(-4, 5, size=(700, 41)).astype(dtype)
    assert np.array_equal(_gemm.matmul(a, b), a @ b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 300, 33), (300, 7, 600), (257, 513, 300),
                                   (2, 1500, 65), (1500, 2, 65), (600, 4200, 40)])
def test_bitwise_identical_across_thread_counts(m, n, k, dtype):
    a, b = operands(m, n, k, dtype)
    c1 = _gemm.matmul(a, b, nthreads=1)
    for nt in (2, 3):
        assert np.array_equal(c1, _gemm.matmul(a, b, nthreads=nt)), nt
    assert rel_err(c1, a, b) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_inputs(dtype):
    rng = np.random.default_rng(3)
    base_a = rng.standard_normal((80, 130)).astype(dtype)
    base_b = rng.standard_normal((130, 90)).astype(dtype)
    cases = [
        (base_a[::2, 1::3], base_b[:43, ::2]),  # strided both ways
        (base_a[:40, :50].T.copy().T, base_b[:50, :30]),  # Fortran-ordered A
        (base_a[:33, :50], np.asfortranarray(base_b[:50, :31])),  # Fortran-ordered B
        (base_a[::-1, :17], base_b[:17, ::-1]),  # negative strides
        (base_a.T[:60, :80], base_b[:80, :70]),  # transposed view
    ]
    for a, b in cases:
        c = _gemm.matmul(a, b)
        ca = _gemm.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b))
        assert np.array_equal(c, ca)
        assert c.flags.c_contiguous
        assert rel_err(c, a, b) <= TOL[dtype]


def test_errors():
    f32 = np.ones((3, 4), np.float32)
    f64 = np.ones((4, 2), np.float64)
    with pytest.raises(TypeError):
        _gemm.matmul(f32, f64)
    with pytest.raises(TypeError):
        _gemm.matmul(np.ones((3, 4), np.int64), np.ones((4, 2), np.int64))
    with pytest.raises(TypeError):
        _gemm.matmul(np.ones((3, 4), np.float16), np.ones((4, 2), np.float16))
    with pytest.raises(ValueError):
        _gemm.matmul(np.ones((3, 4)), np.ones((5, 2)))
    with pytest.raises(ValueError):
        _gemm.matmul(np.ones(4), np.ones((4, 2)))
    with pytest.raises(ValueError):
        _gemm.matmul(np.ones((3, 4)), np.ones((4, 2)), nthreads=0)
    with pytest.raises(ValueError):
        _gemm.select_isa("sse9")
    with pytest.raises(TypeError):
        _gemm.tile_shape(np.int32)


def test_isa_queries():
    assert _gemm.isa_name() in ALL_ISAS
    assert _gemm.isa_best_name() in ALL_ISAS
    for dt in (np.float32, np.float64):
        mr, nr = _gemm.tile_shape(dt)
        assert mr >= 1 and nr >= 1


def test_select_isa_and_unsupported():
    old = _gemm.isa_name()
    try:
        for name in ALL_ISAS:
            if ALL_ISAS.index(name) <= ALL_ISAS.index(_gemm.isa_best_name()):
                _gemm.select_isa(name)
                assert _gemm.isa_name() == name
            else:
                with pytest.raises(RuntimeError):
                    _gemm.select_isa(name)
                assert _gemm.isa_name() != name
    finally:
        _gemm.select_isa(old)


def test_env_var_unknown_name_fails_at_import():
    r = subprocess.run(
        [sys.executable, "-c", "import cconv._gemm"],
        env={**os.environ, "CCONV_ISA": "bogus"},
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "ValueError" in r.stderr


_CROSS_ISA_SHAPES = [(1, 1, 1), (13, 31, 7), (65, 100, 257), (100, 513, 300), (33, 65, 1100),
                     # AVX-512 edge kernels (4 / 8 / 12 rows x 1 / 2 vectors), on C where a
                     # partial tile fills one exactly and through the local tile where not
                     (16, 48, 50), (20, 16, 40), (8, 40, 9), (28, 23, 70)]

_CROSS_ISA_SCRIPT = r"""
import sys, numpy as np
from cconv import _gemm
d = sys.argv[1]
assert _gemm.isa_name() == sys.argv[2], _gemm.isa_name()
n = int(sys.argv[3])
for i in range(n):
    a = np.load(f"{d}/a{i}.npy"); b = np.load(f"{d}/b{i}.npy")
    np.save(f"{d}/c{i}_{sys.argv[2]}.npy", _gemm.matmul(a, b, nthreads=2))
"""


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_across_isa_paths(tmp_path, dtype):
    isas = supported_isas()
    assert "generic" in isas
    if len(isas) < 2:
        pytest.skip("this CPU supports only the generic path")
    cases = []
    for i, (m, n, k) in enumerate(_CROSS_ISA_SHAPES):
        a, b = operands(m, n, k, dtype, seed=99)
        np.save(tmp_path / f"a{i}.npy", a)
        np.save(tmp_path / f"b{i}.npy", b)
        cases.append((a, b))
    for name in isas:
        r = subprocess.run(
            [sys.executable, "-c", _CROSS_ISA_SCRIPT, str(tmp_path), name, str(len(cases))],
            env={**os.environ, "CCONV_ISA": name},
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
    for i, (a, b) in enumerate(cases):
        ref = np.load(tmp_path / f"c{i}_{isas[0]}.npy")
        assert rel_err(ref, a, b) <= TOL[dtype]
        for name in isas[1:]:
            other = np.load(tmp_path / f"c{i}_{name}.npy")
            assert np.array_equal(ref, other), (i, name)
