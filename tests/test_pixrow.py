"""Pixel-row micro-kernels (cconv_pixrow_ukernel_*) and the channels-first im2col path
on them (_im2col: output pixels of a row as the GEMM's M dimension, NR-channel B panels
of the weights; chosen by _plan.nchw_pixrow)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import cconv
from cconv import _gemm, _im2col, _plan, _spec, functional

from reference import conv_nd_reference
from test_gemm import supported_isas

TOL = {np.float32: 2e-5, np.float64: 1e-12}
KCS = [0, 1, 7, 64, 300]


def _case(m, kc, dtype, seed=0):
    """x with NaN everywhere a tile must not read, offsets in any order (repeats too), a
    random B panel and C."""
    rng = np.random.default_rng(seed + 101 * m + kc)
    nr = _gemm.tile_shape(dtype)[1]
    x = np.full(kc * 5 + 40, np.nan, dtype)
    offs = rng.integers(0, len(x) - m, size=kc)
    for o in offs:
        x[o:o + m] = rng.standard_normal(m)
    b = rng.standard_normal((kc, nr)).astype(dtype)
    c = rng.standard_normal((m, nr)).astype(dtype)
    return x, offs, b, c


def _expect(x, offs, b, c, accumulate):
    m = c.shape[0]
    a = np.stack([x[offs + i] for i in range(m)]).astype(np.float64) if len(offs) else \
        np.zeros((m, 0))
    return (c.astype(np.float64) if accumulate else 0) + a @ b.astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kc", KCS)
@pytest.mark.parametrize("accumulate", [False, True])
def test_every_row_width(isa, dtype, kc, accumulate):
    assert _gemm.pixrow_max(dtype) == {"generic": 8, "avx2": 6, "avx512": 14}[isa]
    for m in range(1, _gemm.pixrow_max(dtype) + 1):
        x, offs, b, c = _case(m, kc, dtype)
        want = _expect(x, offs, b, c, accumulate)
        # C inside a larger array: the row stride is honoured, the rest left alone
        big = np.full((m + 2, b.shape[1] + 5), -7.0, dtype)
        big[1:m + 1, 2:2 + b.shape[1]] = c
        got = _gemm.pixrow_tile(x, offs, b, big[1:m + 1, 2:2 + b.shape[1]], accumulate)
        assert np.isfinite(got).all(), (m, kc)   # no NaN of x outside the runs was read
        scale = max(1.0, np.abs(want).max())
        assert np.abs(got - want).max() <= TOL[dtype] * scale * max(kc, 1) ** 0.5, (m, kc)
        assert (big[0] == -7).all() and (big[-1] == -7).all()
        assert (big[:, :2] == -7).all() and (big[:, 2 + b.shape[1]:] == -7).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kc", [0, 1, 64, 300])
@pytest.mark.parametrize("accumulate", [False, True])
def test_row_pairs(isa, dtype, kc, accumulate):
    rng = np.random.default_rng(kc)
    nr = _gemm.tile_shape(dtype)[1]
    for m1 in range(1, _gemm.pixrow_max(dtype) // 2 + 1):
        rs = int(rng.integers(m1, 3 * m1 + 5))
        x = np.full(kc * 6 + 4 * rs + 40, np.nan, dtype)
        offs = rng.integers(0, len(x) - rs - m1, size=kc)
        for o in offs:
            x[o:o + m1] = rng.standard_normal(m1)
            x[o + rs:o + rs + m1] = rng.standard_normal(m1)
        b = rng.standard_normal((kc, nr)).astype(dtype)
        c = rng.standard_normal((2 * m1, nr)).astype(dtype)
        a = np.stack([x[offs + i] for i in range(m1)] + [x[offs + rs + i] for i in range(m1)])
        want = (c.astype(np.float64) if accumulate else 0) + a.astype(np.float64) @ b
        got = _gemm.pixrow_tile(x, offs, b, c.copy(), accumulate, rs=rs)
        assert np.isfinite(got).all(), (m1, rs)
        scale = max(1.0, np.abs(want).max())
        assert np.abs(got - want).max() <= TOL[dtype] * scale * max(kc, 1) ** 0.5, (m1, rs)
        # the same chains as two single-row calls: bitwise equal
        lo = _gemm.pixrow_tile(x, offs, b, c[:m1].copy(), accumulate)
        hi = _gemm.pixrow_tile(x, offs + rs, b, c[m1:].copy(), accumulate)
        np.testing.assert_array_equal(got, np.concatenate([lo, hi]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("accumulate", [False, True])
def test_needed_columns(isa, dtype, accumulate):
    # n < NR needed columns (a last panel of few output channels): on AVX-512 at most
    # NR/2 run the half-width kernels; the needed columns are bitwise the full kernel's
    nr = _gemm.tile_shape(dtype)[1]
    rng = np.random.default_rng(17)
    for m in range(1, _gemm.pixrow_max(dtype) + 1):
        x, offs, b, c = _case(m, 70, dtype, seed=9)
        # row pairs read past the runs: finite everywhere, room for rs
        x = np.concatenate([np.nan_to_num(x, nan=0.25), np.full(3 * m + 20, 0.5, dtype)])
        full = _gemm.pixrow_tile(x, offs, b, c.copy(), accumulate)
        for n in sorted({1, nr // 2 - 1, nr // 2, nr // 2 + 1, nr - 1}):
            got = _gemm.pixrow_tile(x, offs, b, c.copy(), accumulate, n=n)
            np.testing.assert_array_equal(got[:, :n], full[:, :n])
        if m % 2 == 0:
            rs = int(rng.integers(m, 2 * m + 9))
            pair = _gemm.pixrow_tile(x, offs, b, c.copy(), accumulate, rs=rs)
            for n in (1, nr // 2, nr - 1):
                got = _gemm.pixrow_tile(x, offs, b, c.copy(), accumulate, rs=rs, n=n)
                np.testing.assert_array_equal(got[:, :n], pair[:, :n])
    with pytest.raises(ValueError, match="n=0"):
        _gemm.pixrow_tile(x, offs, b, c.copy(), n=0)
    with pytest.raises(ValueError, match=f"n={nr + 1}"):
        _gemm.pixrow_tile(x, offs, b, c.copy(), n=nr + 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_splitting_k_is_bitwise_identical(isa, dtype):
    m = _gemm.pixrow_max(dtype)
    x, offs, b, c = _case(m, 300, dtype, seed=5)
    one = _gemm.pixrow_tile(x, offs, b, np.zeros_like(c))
    two = _gemm.pixrow_tile(x, offs[:123], b[:123], np.zeros_like(c))
    two = _gemm.pixrow_tile(x, offs[123:], b[123:], two, True)
    np.testing.assert_array_equal(one, two)


def test_errors():
    dt = np.float32
    nr = _gemm.tile_shape(dt)[1]
    x = np.zeros(50, dt)
    b = np.zeros((3, nr), dt)
    with pytest.raises(ValueError, match="m=0"):
        _gemm.pixrow_tile(x, [0, 1, 2], b, np.zeros((0, nr), dt))
    with pytest.raises(IndexError):
        _gemm.pixrow_tile(x, [0, 1, 48], b, np.zeros((3, nr), dt))
    with pytest.raises(TypeError):
        _gemm.pixrow_tile(x, [0, 1, 2], b.astype(np.float64), np.zeros((3, nr), dt))


# ----------------------------------------------------------------------------- convolution

def _spec_of(x, w, stride, pad, dil, groups, nd):
    layout = _spec.LAYOUTS[nd][0]
    return _spec.forward_spec(f"conv{nd}d", nd, x, w, None, stride, pad, dil, groups,
                              "zeros", layout, "im2col")[0]


# (N, C, O, groups, spatial, kernel, stride, pad, dilation): every output width 1..30
# below, so each tile width 1..14 and the splits of a row into 2 or 3 tiles occur; O not
# a multiple of NR (a partial last panel); 1-D and 3-D.
CONV_CASES = [
    (1, 16, 40, 1, (9, 30), 3, 1, 1, 1),
    (2, 12, 33, 1, (7, 16), 3, 1, ((0, 2), (1, 0)), 1),
    (3, 8, 64, 1, (11, 29), 3, 2, 1, 1),
    (1, 24, 32, 1, (12, 21), 3, 3, 2, 1),
    (2, 16, 48, 2, (10, 19), 3, 1, 2, 2),
    (1, 10, 70, 1, (6, 15), (2, 5), (1, 2), (1, 2), 1),
    (2, 20, 36, 1, (40,), 5, 1, 2, 1),
    (1, 9, 34, 1, (4, 6, 13), 3, 1, 1, 1),
    # output rows of at most 7 pixels run in row pairs (an odd last row alone; pairs
    # that cross a depth step in 3-D)
    (2, 16, 40, 1, (7, 7), 3, 1, 1, 1),
    (1, 12, 24, 1, (3, 3), 3, 1, 1, 1),
    (1, 8, 20, 1, (3, 5, 5), 3, 1, 1, 1),
    (3, 10, 36, 1, (9, 4), 3, 1, (1, 0), 1),
]


def _set_pixrow(v):
    _im2col.PIXROW = v
    functional._FAST.clear()   # remembered plans hold the route chosen under the old value


def _conv(nd):
    return {1: cconv.conv1d, 2: cconv.conv2d, 3: cconv.conv3d}[nd]


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_on_pixel_rows(isa, dtype, case, with_bias):
    # channels-first outputs leave the pixel-major tiles through unpack.h's register
    # transposes: whole blocks of V pixels x V channels, the pixels past them and the
    # channels of a partial panel element by element, with and without a bias
    N, C, O, G, sp, k, stride, pad, dil = case
    nd = len(sp)
    k = (k,) * nd if np.isscalar(k) else k
    rng = np.random.default_rng(len(sp) * 1000 + C * 7 + O)
    x = rng.standard_normal((N, C) + sp).astype(dtype)
    w = rng.standard_normal((O, C // G) + k).astype(dtype)
    b = rng.standard_normal(O).astype(dtype) if with_bias else None
    x0, w0 = x.copy(), w.copy()
    spec = _spec_of(x, w, stride, pad, dil, G, nd)
    out = np.full(spec.out_shape, np.nan, dtype)
    _set_pixrow(True)   # wherever they can run, not only where the model picks them
    try:
        assert _plan.nchw_pixrow(spec), (case, isa)
        y = _conv(nd)(x, w, b, stride, pad, dil, G, algorithm="im2col", out=out)
    finally:
        _set_pixrow(None)
    assert y is out
    ref = conv_nd_reference(x.astype(np.float64), w.astype(np.float64),
                            None if b is None else b.astype(np.float64),
                            stride, spec.pads, dil, G, "zeros", spec.layout)
    assert np.abs(y - ref).max() <= TOL[dtype] * np.abs(ref).max()
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    # the padded-grid panels compute the same FMA chains: bitwise equal
    _set_pixrow(False)
    try:
        assert not _plan.nchw_pixrow(spec)
        y2 = _conv(nd)(x, w, b, stride, pad, dil, G, algorithm="im2col")
    finally:
        _set_pixrow(None)
    np.testing.assert_array_equal(y, y2)


def test_threads_do_not_change_bits():
    rng = np.random.default_rng(3)
    for N, C, O, hw in [(1, 64, 96, (7, 7)), (3, 32, 64, (14, 14)), (1, 16, 64, (28, 28))]:
        x = rng.standard_normal((N, C) + hw).astype(np.float32)
        w = rng.standard_normal((O, C, 3, 3)).astype(np.float32)
        # picked by the model on the SIMD paths; forced on the portable one
        assert _plan.nchw_pixrow(_spec_of(x, w, 1, 1, 1, 1, 2)) or _gemm.isa_name() == "generic"
        outs = []
        _set_pixrow(True)
        try:
            for t in (1, 2, 3):
                with cconv.num_threads(t):
                    outs.append(cconv.conv2d(x, w, None, 1, 1, algorithm="im2col"))
        finally:
            _set_pixrow(None)
        for o in outs[1:]:
            np.testing.assert_array_equal(outs[0], o)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_weights_keep_pixel_row_panels(dtype):
    # the MR-row panels of pack_weights do not fit the pixel rows: the first call that
    # runs them packs their NR panels into the PackedWeights, later calls reuse them
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 64, 7, 7)).astype(dtype)
    w = rng.standard_normal((128, 32, 3, 3)).astype(dtype)
    b = rng.standard_normal(128).astype(dtype)
    pw = cconv.pack_weights(w, groups=2)
    assert pw._pixrow is None
    want = cconv.conv2d(x, w, b, 1, 1, 1, 2, algorithm="im2col")
    np.testing.assert_array_equal(cconv.conv2d(x, pw, b, 1, 1, 1, 2, algorithm="im2col"), want)
    panels = pw._pixrow
    if _gemm.isa_name() != "generic":
        assert panels is not None and not panels.flags.writeable
        assert panels.size == _im2col.packed_size((128, 32, 1, 3, 3), 2, False, dtype, True)
    out = np.full_like(want, np.nan)
    cconv.conv2d(x, pw, b, 1, 1, 1, 2, algorithm="im2col", out=out)
    assert pw._pixrow is panels
    np.testing.assert_array_equal(out, want)


_CROSS_ISA = """
import sys, numpy as np, cconv
from cconv import _gemm
assert _gemm.isa_name() == sys.argv[2]
rng = np.random.default_rng(9)
for i, (C, O, hw, s) in enumerate([(64, 96, (7, 7), 1), (16, 40, (14, 13), 1),
                                   (24, 64, (16, 28), 2)]):
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((2, C) + hw).astype(dt)
        w = rng.standard_normal((O, C, 3, 3)).astype(dt)
        np.save(f"{sys.argv[1]}/y{i}_{dt.__name__}_{sys.argv[2]}.npy",
                cconv.conv2d(x, w, None, s, 1, algorithm="im2col"))
"""


def test_bitwise_identical_across_isa_paths(tmp_path):
    isas = supported_isas()
    if len(isas) < 2:
        pytest.skip("this CPU supports only the generic path")
    for name in isas:
        r = subprocess.run([sys.executable, "-c", _CROSS_ISA, str(tmp_path), name],
                           env={**os.environ, "CCONV_ISA": name}, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
    for i in range(3):
        for dt in ("float32", "float64"):
            ref = np.load(tmp_path / f"y{i}_{dt}_{isas[0]}.npy")
            for name in isas[1:]:
                np.testing.assert_array_equal(ref, np.load(tmp_path / f"y{i}_{dt}_{name}.npy"))


# Channels-last on the pixel rows (_im2col._use_pixrow_nhwc): a channels-first copy of
# the input, the channels-last weight panels, K in (tap, channel) order like the indirect
# kernel, so the bits match it.
NHWC_CASES = [
    # N, C, O, spatial, kernel, stride, padding, dilation, groups
    (1, 32, 40, (7, 7), 3, 1, 1, 1, 1),
    (2, 16, 33, (14, 13), 3, 1, 1, 1, 1),
    (1, 16, 64, (9, 30), 3, 2, 1, 1, 1),
    (3, 24, 20, (11, 17), 5, 1, 2, 2, 1),
    (2, 64, 512, (7, 7), 3, 1, 1, 1, 1),
    (1, 16, 48, (5, 6), 3, 1, ((0, 1), (2, 0)), 1, 1),
    (2, 64, 96, (7, 7), 3, 1, 1, 1, 2),
    (1, 48, 36, (9, 6), 3, 2, 1, 1, 3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", NHWC_CASES)
def test_channels_last_on_pixel_rows(isa, dtype, case):
    N, C, O, hw, k, stride, pad, dil, G = case
    rng = np.random.default_rng(C * 31 + O)
    x = rng.standard_normal((N,) + hw + (C,)).astype(dtype)
    w = rng.standard_normal((k, k, C // G, O)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    x0 = x.copy()
    spec = _spec.forward_spec("conv2d", 2, x, w, b, stride, pad, dil, G, "zeros", "NHWC",
                              "im2col")[0]
    out = np.full(spec.out_shape, np.nan, dtype)
    pw = cconv.pack_weights(w, layout="NHWC", groups=G)
    _set_pixrow(True)
    try:
        y = cconv.conv2d(x, w, b, stride, pad, dil, G, layout="NHWC", algorithm="im2col",
                         out=out)
        yp = cconv.conv2d(x, pw, b, stride, pad, dil, G, layout="NHWC", algorithm="im2col")
    finally:
        _set_pixrow(None)
    assert y is out
    ref = conv_nd_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                            stride, spec.pads, dil, G, "zeros", "NHWC")
    assert np.abs(y - ref).max() <= TOL[dtype] * np.abs(ref).max()
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, yp)
    _set_pixrow(False)
    try:
        y2 = cconv.conv2d(x, w, b, stride, pad, dil, G, layout="NHWC", algorithm="im2col")
    finally:
        _set_pixrow(None)
    np.testing.assert_array_equal(y, y2)


def test_float64_pointwise_takes_pixel_rows():
    """float64 1x1 problems follow the same rule as float32 (_im2col._use_pixrow): once
    excluded (their element-by-element channels-first write-out made them up to 1.9x
    slower), they measured 0.69-0.93x the panels' time with unpack.h; PIXROW = False
    still turns pixel rows off."""
    from cconv import _im2col
    sp, one = (1, 56, 56), (1, 1, 1)
    if _im2col.pixrow_path(sp, (3, 3, 3), one, one, 64, 64, np.float64):  # a SIMD path
        assert _im2col.pixrow_path(sp, one, one, one, 256, 64, np.float64)
    old = _im2col.PIXROW
    try:
        _im2col.PIXROW = False
        assert not _im2col.pixrow_path(sp, one, one, one, 256, 64, np.float64)
    finally:
        _im2col.PIXROW = old
