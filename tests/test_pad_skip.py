"""Channels-last im2col skips, per MR-pixel tile, the taps that read only zero padding
(_im2col._indirect_tiles, on when _im2col.pad_fraction >= SKIP_PAD_MIN_FRACTION and the
weights are finite). With finite weights a skipped tap's products are w * 0, which leave
a running sum from +0 unchanged bit for bit, so skipping must give exactly the bits of
not skipping; a non-finite weight turns skipping off (the padded NaN model of the
README, "NaN and Inf")."""
import itertools

import numpy as np
import pytest

import cconv
from cconv import _im2col
from reference import conv_nd_reference, rel_error

# (N, C, O, groups, spatial, k, dilation, padding): large dilated kernels on small
# images; whole tiles in the padding (padding past the kernel's reach, first case);
# channels per group below KC (the several-taps kernel) and above it (per-tap segments)
CASES = [
    (2, 24, 40, 1, (3, 3), 3, 1, 4),
    (2, 24, 40, 1, (9, 9), 3, 6, 6),
    (1, 32, 20, 2, (11, 7), 5, 2, 4),
    (3, 300, 36, 1, (5, 6), 3, 3, 3),
    (1, 16, 16, 1, (6, 6, 6), 5, 2, 4),
    (2, 40, 24, 1, (4, 5, 3), 3, 2, 2),
    # packed rows (_nhwc_rows): few channels; channel rows 4 KB apart (whole tiles in
    # the padding again, and dilated)
    (2, 8, 40, 1, (3, 4), 3, 1, 4),
    (2, 8, 40, 1, (9, 10), 3, 4, 4),
    (1, 1024, 24, 1, (3, 3), 3, 1, 4),
]
LAYOUT = {2: "NHWC", 3: "NDHWC"}


def make(case, dtype, seed=0):
    N, C, O, g, sp, k, d, p = case
    nd = len(sp)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N,) + sp + (C,)).astype(dtype)
    w = rng.standard_normal((k,) * nd + (C // g, O)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    return x, w, b


def run(case, x, w, b, skip, nthreads=2, monkeypatch=None, rows=None):
    N, C, O, g, sp, k, d, p = case
    nd = len(sp)
    monkeypatch.setattr(_im2col, "SKIP_PAD_MIN_FRACTION", 0.0 if skip else 2.0)
    monkeypatch.setattr(_im2col, "SKIP_PAD_ROW_TILES", rows)
    monkeypatch.setattr(_im2col, "SKIP_PAD_MAX_EXEC", 1.0)
    monkeypatch.setattr(_im2col, "PIXROW", False)  # the indirect kernel, not pixel rows
    f = cconv.conv2d if nd == 2 else cconv.conv3d
    x0, w0 = x.copy(), w.copy()
    with cconv.num_threads(nthreads):
        y = f(x, w, b, 1, p, d, g, layout=LAYOUT[nd], algorithm="im2col")
    assert np.array_equal(x, x0) and np.array_equal(w, w0)
    return y


def test_pad_fraction():
    """Against counting the (output, tap) pairs that read the padding one by one."""
    rng = np.random.default_rng(5)
    for _ in range(60):
        isp = tuple(int(v) for v in rng.integers(1, 9, 3))
        ksp = tuple(int(v) for v in rng.integers(1, 5, 3))
        st = tuple(int(v) for v in rng.integers(1, 3, 3))
        dl = tuple(int(v) for v in rng.integers(1, 4, 3))
        pad = tuple(int(v) for v in rng.integers(0, 6, 3))
        osp = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                    for i, k, s, d, p in zip(isp, ksp, st, dl, pad))
        if min(osp) < 1:
            continue
        inside = total = 0
        for o in itertools.product(*[range(n) for n in osp]):
            for t in itertools.product(*[range(k) for k in ksp]):
                total += 1
                inside += all(0 <= oi * s + ti * d - p < n for oi, ti, s, d, p, n
                              in zip(o, t, st, dl, pad, isp))
        got = _im2col.pad_fraction(isp, osp, ksp, st, pad, dl)
        assert got == pytest.approx(1 - inside / total, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite(dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(1000).astype(dtype)
    a[::7] = -0.0
    a[3] = np.finfo(dtype).max
    a[5] = -np.finfo(dtype).max
    a[9] = np.finfo(dtype).smallest_subnormal
    for nth in (1, 2, 3):
        assert _im2col.all_finite(a, nth)
        for bad in (np.nan, np.inf, -np.inf):
            for pos in (0, 499, 999):
                b = a.copy()
                b[pos] = bad
                assert not _im2col.all_finite(b, nth)
    assert _im2col.all_finite(a[:0], 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[4])) + f"-C{c[1]}")
def test_skipping_padding_taps_is_bitwise_not_skipping(case, dtype, monkeypatch):
    x, w, b = make(case, dtype)
    N, C, O, g, sp, k, d, p = case
    one = (1,) * (3 - len(sp))  # as 3-D problems
    osp = tuple(n + 2 * p - d * (k - 1) for n in sp)
    frac = _im2col.pad_fraction(sp + one, osp + one, (k,) * len(sp) + one, (1, 1, 1),
                                (p,) * len(sp) + (0,) * len(one), (d,) * len(sp) + one)
    assert frac > 0.2  # these problems would skip under the default threshold too
    ref = conv_nd_reference(x, w, b, 1, ((p, p),) * len(sp), d, g, layout=LAYOUT[len(sp)])
    plain = run(case, x, w, b, False, monkeypatch=monkeypatch)
    for nth, rows in itertools.product((1, 2, 3), (False, True)):
        # tiles of MR pixels, or also ending at output rows
        y = run(case, x, w, b, True, nth, monkeypatch, rows)
        assert np.array_equal(y, plain), (nth, rows)
        assert np.array_equal(np.signbit(y), np.signbit(plain))
    assert rel_error(plain, ref) < (2e-5 if dtype == np.float32 else 1e-12)


def test_nonfinite_weight_turns_skipping_off(monkeypatch):
    """An Inf weight tap that lands only in the padding for a whole tile: with the check,
    every output that multiplies it by the zero padding is NaN (the padded model); with
    the check bypassed (tests only), the tiles that skipped it stay finite, which shows
    that the tiles did skip it."""
    case = CASES[0]  # 3x3 input, padding 4: output rows 0-1 read only padding
    x, w, b = make(case, np.float32)
    w[0, 0, 5, 7] = np.inf  # tap (0, 0), input channel 5, output channel 7
    y = run(case, x, w, b, True, monkeypatch=monkeypatch)
    ref = run(case, x, w, b, False, monkeypatch=monkeypatch)
    assert np.array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y[:, :2, :, 7]).all()  # rows 0-1: tap (0, 0) reads padding there
    monkeypatch.setattr(_im2col, "SKIP_PAD_ASSUME_FINITE", True)
    for rows in (False, True):
        y2 = run(case, x, w, b, True, monkeypatch=monkeypatch, rows=rows)
        # output rows 0-1 of image 0 (18 pixels, all reading padding only) hold the first
        # MR-pixel tile (MR <= 12 on every ISA path), which covers row 0
        assert np.isfinite(y2[0, 0, :, 7]).all()
        assert np.array_equal(y2[0, 0], b[None, :].repeat(y2.shape[2], 0))  # only the bias


def brute_exec_fraction(N, isp, ksp, st, pad, dl, MR):
    """The tile work left after skipping, counted pixel by pixel: tiles of MR consecutive
    output pixels of the batch from pixel 0, or tiles that also end at output rows,
    whichever makes fewer kernel calls, against the calls of the plain tiles."""
    osp = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                for i, k, s, d, p in zip(isp, ksp, st, dl, pad))
    if min(osp) < 1:
        return osp, None
    pix = [o for _ in range(N) for o in itertools.product(*[range(n) for n in osp])]
    runs = []
    for rowed in (False, True):
        starts, q = [], 0
        while q < len(pix):
            m = min(MR, len(pix) - q, osp[-1] - q % osp[-1] if rowed else MR)
            starts.append((q, m))
            q += m
        run = 0
        for q, m in starts:
            for t in itertools.product(*[range(k) for k in ksp]):
                run += any(all(0 <= oi * s + ti * d - p < n for oi, ti, s, d, p, n
                               in zip(o, t, st, dl, pad, isp)) for o in pix[q:q + m])
        runs.append(run)
    tot = -(-len(pix) // MR) * np.prod(ksp)
    return osp, min(runs) / tot


def test_skip_exec_fraction(monkeypatch):
    monkeypatch.setattr(_im2col, "SKIP_PAD_MIN_FRACTION", 0.0)
    monkeypatch.setattr(_im2col, "_EXEC_CACHE", {})
    MR = _im2col.tile_shape(np.float32)[0]
    rng = np.random.default_rng(7)
    for _ in range(25):
        N = int(rng.integers(1, 4))
        isp = (1,) + tuple(int(v) for v in rng.integers(2, 10, 2))
        ksp = (1,) + tuple(int(v) for v in rng.integers(1, 6, 2))
        st = (1,) + tuple(int(v) for v in rng.integers(1, 3, 2))
        dl = (1,) + tuple(int(v) for v in rng.integers(1, 4, 2))
        pad = (0,) + tuple(int(v) for v in rng.integers(0, 7, 2))
        osp, want = brute_exec_fraction(N, isp, ksp, st, pad, dl, MR)
        if min(osp) < 1:
            continue
        got = _im2col.skip_exec_fraction(isp, osp, ksp, st, pad, dl, N, np.float32)
        assert got == pytest.approx(want, abs=1e-12), (N, isp, ksp, st, dl, pad)


# channels-first problems that the plan sends channels-last for the skipped taps, and
# one that it keeps (a small image whose weights cost more to transpose than it saves)
@pytest.mark.parametrize("N, C, O, sp, k, d, via", [
    (4, 64, 48, (12, 12), 3, 8, True),
    (3, 48, 64, (13, 11), 3, 9, True),
    (1, 64, 64, (6, 6), 7, 2, False),
])
def test_channels_first_route_for_padding_taps(N, C, O, sp, k, d, via, monkeypatch):
    from cconv import _plan, _spec, functional
    rng = np.random.default_rng(N * C + O)
    x = rng.standard_normal((N, C) + sp)
    w = rng.standard_normal((O, C, k, k))
    b = rng.standard_normal(O)
    p = (k // 2) * d
    spec = _spec.forward_spec("conv2d", 2, x, w, None, 1, p, d, 1, "zeros", "NCHW", "auto")[0]
    assert _plan.nchw_forward_via_nhwc(spec) == via
    # other padding modes pad the input before the kernels: no padding taps to skip
    rspec = _spec.forward_spec("conv2d", 2, x, w, None, 1, min(p, min(sp) - 1), d, 1, "reflect",
                               "NCHW", "auto")[0]
    assert _plan.pad_skip_exec(rspec) == 1.0 and not _plan.nchw_forward_via_nhwc(rspec)
    ref = conv_nd_reference(x, w, b, 1, ((p, p),) * 2, d, 1, layout="NCHW")
    x0, w0 = x.copy(), w.copy()
    runs = []
    for nth in (1, 2, 3):
        with cconv.num_threads(nth):
            out = np.full(ref.shape, np.nan)
            runs.append(cconv.conv2d(x, w, b, 1, p, d, algorithm="im2col", out=out))
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])
    assert rel_error(runs[0], ref) <= 1e-13
    y32 = cconv.conv2d(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), 1, p,
                       d)
    assert y32.dtype == np.float32 and rel_error(y32, ref) <= 2e-6
    # the input gradient (stride 1: the flipped forward) and the transposed convolution
    g = rng.standard_normal(ref.shape)
    gi = cconv.conv2d_grad_input(g, w, x.shape, 1, p, d)
    t = cconv.conv_transpose2d(g, w, None, 1, p, 0, 1, d)
    # against the paths without skipping (channels-first in place)
    monkeypatch.setattr(_im2col, "SKIP_PAD_MIN_FRACTION", 2.0)
    functional._FAST.clear()
    _plan._auto_forward.cache_clear()
    assert not _plan.nchw_forward_via_nhwc(spec)
    gi_ref = cconv.conv2d_grad_input(g, w, x.shape, 1, p, d)
    assert rel_error(gi, gi_ref) <= 1e-13 and rel_error(t, gi_ref) <= 1e-13
    functional._FAST.clear()
    assert np.array_equal(x, x0) and np.array_equal(w, w0)
