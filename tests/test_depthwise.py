"""Depthwise convolution (groups == C, channel multiplier M = O / C): the dedicated
direct kernels (algorithm="depthwise", also reached by "direct" and "auto") against the
float64 reference, partial SIMD vectors and tiles, NaN-prefilled out=, and bitwise
reproducibility across thread counts and ISA paths."""
import itertools
import textwrap

import numpy as np
import pytest

from conftest import conv_fn, run_python
from reference import (LAST_LAYOUT, DEFAULT_LAYOUT, aligned_full, conv_nd_reference,
                       input_shape, rel_error, resolve_padding, weight_shape)
from test_isa import cpu_supports

cconv = pytest.importorskip("cconv")

TOL = {np.float32: 2e-5, np.float64: 1e-11}


def _case(rng, nd, layout, N, C, M, sp, k, stride, padding, dilation, dtype, bias=True,
          algorithm="depthwise", out_nan=False, batched=True):
    x = rng.standard_normal(input_shape(layout, N, C, sp, batched)).astype(dtype)
    w = rng.standard_normal(weight_shape(layout, C * M, 1, k)).astype(dtype)
    b = rng.standard_normal(C * M).astype(dtype) if bias else None
    pairs = resolve_padding(padding, sp, k, stride, dilation)
    ref = conv_nd_reference(x, w, b, stride, pairs, dilation, C, layout=layout)
    kw = {}
    if out_nan:
        kw["out"] = np.full(ref.shape, np.nan, dtype=dtype)
    y = conv_fn(nd)(x, w, b, stride, padding, dilation, C, layout=layout,
                    algorithm=algorithm, **kw)
    assert y.shape == ref.shape and y.dtype == dtype
    if out_nan:
        assert y is kw["out"]
    assert np.all(np.isfinite(y))
    err = rel_error(y, ref)
    assert err <= TOL[dtype], (err, layout, N, C, M, sp, k, stride, padding, dilation)
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_2d_kernels_strides(rng, layout, dtype, k, stride):
    for C, M, (H, W), dil, pad in [(17, 1, (13, 37), 1, k // 2), (3, 2, (9, 21), 2, "same"),
                                   (33, 1, (7, 70), 1, ((0, 2), (3, 1))),
                                   (16, 3, (11, 16), 1, "valid")]:
        span = (k - 1) * dil + 1
        if pad == "valid" and (H < span or W < span):
            continue
        _case(rng, 2, layout, 2, C, M, (H, W), (k, k), stride, pad, dil, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("C", [1, 3, 7, 16, 17, 33, 65])
def test_channel_counts(rng, layout, dtype, C):
    for M in (1, 2, 3):
        _case(rng, 2, layout, 1, C, M, (6, 19), (3, 3), 1, 1, 1, dtype, bias=(M != 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_paddings_wider_than_a_vector(rng, k, stride, dtype):
    # channels-first tiles read x in place: padding up to 30 columns on either side and
    # widths that leave 1-4 vectors per column tile, against the float64 reference
    for W, pads in [(30, k - 1), (10, ((1, 1), (20, 19))), (50, ((k // 2, k // 2), (0, 30))),
                    (17, ((0, 2), (30, 1))), (40, ((2, 0), (5, 12)))]:
        _case(rng, 2, "NCHW", 1, 3, 1, (6, W), (k, k), stride, pads, 1, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_widths(rng, layout, stride, dtype):
    # every width 1..70: full and partial vectors, 1..3-vector column tiles, row tiles;
    # stride 2 also runs the scratch fill's deinterleave with every tail length
    for W in range(1, 71):
        k = 3 if W >= 2 else 1
        _case(rng, 2, layout, 1, 5 + W % 3, 1, (1 + W % 6, W), (k, k), stride,
              ["same", 1, ((0, 2), (1, 0))][W % 3], 1, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_nhwc_tiles_reaching_into_padding(rng, k, stride, dtype):
    # channels-last rows run as 8-pixel tiles whatever the padding: tiles partly or wholly
    # in wide padding, rows above and below the input, the last tile moved back
    for W in (8, 9, 15, 16, 23):
        pad = ((k + 1, 1), (k + 2, k - 1))
        _case(rng, 2, "NHWC", 1, 19, 1, (5, W), (k, k), stride, pad, 1, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [16, 48])
def test_nhwc_inputs_at_every_alignment(rng, C, dtype):
    # NumPy aligns large arrays to 16 bytes only: the channels-last tiles load the input
    # straight from the array, at any element offset from a 64-byte boundary
    size = np.dtype(dtype).itemsize
    for off in range(64 // size):
        for k, (H, W), pad, bias in [(3, (5, 29), 1, True), (5, (4, 21), 2, False),
                                     (7, (7, 27), 0, True)]:
            n = 2 * H * W * C
            buf = np.empty(n * size + 128, np.uint8)
            start = (-buf.ctypes.data) % 64 + off * size
            x = buf[start:start + n * size].view(dtype).reshape(2, H, W, C)
            x[...] = rng.standard_normal(x.shape)
            w = rng.standard_normal((k, k, 1, C)).astype(dtype)
            b = rng.standard_normal(C).astype(dtype) if bias else None
            x0, w0 = x.copy(), w.copy()
            ref = conv_nd_reference(x, w, b, 1, ((pad, pad), (pad, pad)), 1, C, layout="NHWC")
            y = cconv.conv2d(x, w, b, 1, pad, 1, C, layout="NHWC", algorithm="depthwise")
            assert rel_error(y, ref) <= TOL[dtype], (off, k, H, W)
            assert np.array_equal(x, x0) and np.array_equal(w, w0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, stride", [(3, 1), (5, 1), (7, 1), (5, 2)])
def test_nhwc_packed_rows(rng, k, stride, dtype):
    # the channels-last packed-row path (2-D square 3/5/7 kernels, dw = 1): every
    # last-block width (1..2 vectors, partial lanes), rows dilated (ring spans of
    # (k-1)*dh+1 rows), widths below and across 8-pixel tiles, rows wholly in padding,
    # padding rows far above the input (the ring's row tags)
    for C, (H, W), pad, dil in [(1, (9, 11), k // 2, 1), (5, (6, 8), ((k, 0), (1, k)), 1),
                                (17, (10, 23), k // 2, (2, 1)), (40, (7, 3), k - 1, 1),
                                (48, (20, 17), ((0, 1), (k // 2, k // 2)), (3, 1)),
                                (100, (5, 30), k // 2, 1), (3, (2, 9), ((12, 11), (1, 1)), 1)]:
        for N in (1, 3):
            _case(rng, 2, "NHWC", N, C, 1, (H, W), (k, k), stride, pad, dil, dtype,
                  bias=C % 2 == 0, out_nan=N == 3)


def test_nhwc_packed_rows_split_over_threads_and_channels(rng):
    # items split the rows by lcm(N, threads) and, where one item's rings would pass
    # 1 MB, the channels into groups of whole blocks: same bits for every split
    # (3x3 on images over 1 MB too: 64 x 70 x 70 floats, and 512 channels 400 wide,
    # whose rings pass 1 MB)
    for N, C, (H, W), k in [(1, 160, (9, 300), 7), (3, 50, (13, 20), 3), (2, 33, (4, 9), 5),
                            (1, 64, (70, 70), 3), (1, 512, (5, 400), 3)]:
        x = rng.standard_normal((N, H, W, C)).astype(np.float32)
        w = rng.standard_normal((k, k, 1, C)).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32)
        ref = conv_nd_reference(x, w, b, 1, ((k // 2,) * 2,) * 2, 1, C, layout="NHWC")
        ys = []
        for n in (1, 2, 3):
            with cconv.num_threads(n):
                ys.append(cconv.conv2d(x, w, b, 1, k // 2, 1, C, layout="NHWC",
                                       algorithm="depthwise"))
        assert rel_error(ys[0], ref) <= TOL[np.float32]
        for y in ys[1:]:
            np.testing.assert_array_equal(y, ys[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nhwc_prefetching(rng, monkeypatch, dtype):
    # large channels-last arrays prefetch rows ahead (_depthwise.prefetch_min_bytes): run
    # that on small ones, against the reference and bitwise against no prefetching. Packed
    # rows (whole and split channel groups, chunks of 1..16 rows, rows in the padding,
    # partial last chunks) and the strided tiles (3x3 stride 2, dilation, channel blocks
    # of 256, 3-D, a one-plane kernel over planes in the depth padding), streaming
    # stores into aligned outputs
    from cconv import _depthwise
    for N, C, sp, k, s, pad, d in [
            (2, 48, (37, 20), 3, 1, 1, 1), (1, 512, (9, 400), 3, 1, 1, 1),
            (3, 20, (23, 9), 5, 2, ((3, 0), (2, 2)), 1), (1, 100, (30, 300), 7, 1, 3, 1),
            (2, 7, (5, 5), 3, 1, 4, 1), (2, 40, (17, 15), 3, 2, 1, 1),
            (1, 300, (6, 9), 3, 1, 2, 2), (2, 24, (5, 6, 7), 3, (2, 1, 1), 1, 1),
            (2, 40, (3, 9, 10), (1, 3, 3), 2, 1, 1),  # KD 1: rows in the depth padding
            (2, 32, (19, 18), 3, 2, 1, 1), (2, 80, (9, 17), 5, 1, 2, 1)]:
        nd = len(sp)
        ks = k if isinstance(k, tuple) else (k,) * nd
        x = rng.standard_normal((N,) + sp + (C,)).astype(dtype)
        w = rng.standard_normal(ks + (1, C)).astype(dtype)
        b = rng.standard_normal(C).astype(dtype)
        pairs = resolve_padding(pad, sp, ks, s, d)
        layout = LAST_LAYOUT[nd]
        ref = conv_nd_reference(x, w, b, s, pairs, d, C, layout=layout)
        ys = []
        for bar in (1 << 62, 0):
            monkeypatch.setattr(_depthwise, "prefetch_min_bytes", bar)
            ys.append(conv_fn(nd)(x, w, b, s, pad, d, C, layout=layout,
                                  algorithm="depthwise"))
        assert rel_error(ys[1], ref) <= TOL[dtype], (N, C, sp, k, s, d)
        np.testing.assert_array_equal(ys[1], ys[0])
        # into a 64-byte aligned out= (2-D rows stream their stores when C is a multiple
        # of the vector) and a misaligned one, pre-filled with NaN
        for off in (0, 1):
            o = aligned_full(ys[0].shape, dtype, np.nan, off)
            conv_fn(nd)(x, w, b, s, pad, d, C, layout=layout, algorithm="depthwise", out=o)
            np.testing.assert_array_equal(o, ys[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd", [1, 3])
@pytest.mark.parametrize("last", [False, True])
def test_1d_3d(rng, nd, last, dtype):
    layout = LAST_LAYOUT[nd] if last else DEFAULT_LAYOUT[nd]
    if nd == 1:
        for C, M, L, k, s, d, p in [(7, 1, 50, 5, 1, 1, "same"), (17, 2, 33, 3, 2, 2, 2),
                                    (16, 1, 70, 7, 3, 1, "causal")]:
            _case(rng, 1, layout, 2, C, M, (L,), (k,), s, p, d, dtype)
    else:
        for C, M, sp, k, s, d, p in [(7, 1, (5, 6, 19), (3, 3, 3), 1, 1, 1),
                                     (17, 2, (4, 9, 8), (2, 3, 5), (1, 2, 1), 1, "same"),
                                     (16, 1, (6, 7, 9), (3, 1, 3), 2, (2, 1, 1),
                                      ((1, 0), (0, 0), (2, 1)))]:
            _case(rng, 3, layout, 2, C, M, sp, k, s, p, d, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ndhwc_3x3x3_tiles_all_planes(rng, dtype):
    # channels-last 3-D 3x3 stride-1 rows of 8-pixel tiles run every kernel plane in one
    # call (nhwc_tile8_3d): depth padding (planes outside the input), depth dilation and
    # stride, rows in the padding, edge tiles, partial channel vectors, 1 and 2 vectors;
    # bitwise the channels-first result (same arithmetic contract)
    for C, sp, s, d, p in [(5, (4, 5, 11), 1, 1, 1), (40, (6, 3, 9), (2, 1, 1), (2, 1, 1), 1),
                           (33, (3, 7, 17), 1, 1, ((2, 0), (1, 1), (0, 3))),
                           (16, (2, 4, 8), 1, (1, 2, 1), ((3, 3), (2, 2), (1, 1)))]:
        y = _case(rng, 3, "NDHWC", 2, C, 1, sp, (3, 3, 3), s, p, d, dtype, bias=C % 2 == 1,
                  out_nan=True)
        x = rng.standard_normal((2,) + sp + (C,)).astype(dtype)
        w = rng.standard_normal((3, 3, 3, 1, C)).astype(dtype)
        yl = cconv.conv3d(x, w, None, s, p, d, C, layout="NDHWC", algorithm="depthwise")
        yf = cconv.conv3d(np.ascontiguousarray(np.moveaxis(x, -1, 1)),
                          np.ascontiguousarray(w.transpose(4, 3, 0, 1, 2)), None, s, p, d, C,
                          algorithm="depthwise")
        assert y.shape[-1] == C
        np.testing.assert_array_equal(np.moveaxis(yl, -1, 1), yf)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("algorithm", ["auto", "direct", "depthwise"])
def test_nan_prefilled_out_and_algorithm_names(rng, layout, algorithm):
    for dtype in (np.float32, np.float64):
        _case(rng, 2, layout, 2, 24, 1, (10, 23), (3, 3), 1, 1, 1, dtype, algorithm=algorithm,
              out_nan=True)
        _case(rng, 2, layout, 1, 5, 2, (10, 23), (5, 5), 2, 2, 1, dtype, algorithm=algorithm,
              out_nan=True, batched=False)


def test_plan_picks_depthwise():
    from cconv import _plan, _spec

    x = np.zeros((1, 8, 10, 10), np.float32)
    w = np.zeros((16, 1, 3, 3), np.float32)
    for algo in ("auto", "direct", "depthwise"):
        spec = _spec.forward_spec("conv2d", 2, x, w, None, 1, 1, 1, 8, "zeros", "NCHW",
                                  algo)[0]
        assert _plan.choose_forward(spec, algo) is _plan.Algorithm.DEPTHWISE
    assert _plan.explain(spec, "auto")["algorithm"] == "depthwise"


def test_depthwise_rejects_other_groupings():
    x = np.zeros((1, 8, 10, 10), np.float32)
    w = np.zeros((8, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="depthwise"):
        cconv.conv2d(x, w, groups=4, algorithm="depthwise")


def test_padding_modes_and_small_integers_exact(rng):
    # non-zero padding modes are materialised before the kernel; small integers are exact
    x = rng.integers(-3, 4, (2, 9, 12, 17)).astype(np.float32)
    w = rng.integers(-3, 4, (18, 1, 3, 3)).astype(np.float32)
    for mode in ("zeros", "reflect", "replicate", "circular"):
        y = cconv.conv2d(x, w, None, 1, 1, 1, 9, padding_mode=mode, algorithm="depthwise")
        ref = conv_nd_reference(x, w, None, 1, ((1, 1), (1, 1)), 1, 9, padding_mode=mode)
        np.testing.assert_array_equal(y, ref.astype(np.float32))


def test_nonfinite_propagates(rng):
    x = rng.standard_normal((1, 4, 9, 40)).astype(np.float32)
    x[0, 1, 4, 20] = np.nan
    x[0, 2, 0, 0] = np.inf
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    for layout in ("NCHW", "NHWC"):
        xi = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        wi = w if layout == "NCHW" else np.ascontiguousarray(w.transpose(2, 3, 1, 0))
        y = cconv.conv2d(xi, wi, None, 1, 1, 1, 4, layout=layout, algorithm="depthwise")
        if layout == "NHWC":
            y = y.transpose(0, 3, 1, 2)
        assert np.isnan(y[0, 1, 3:6, 19:22]).all()
        assert np.isfinite(y[0, 1, :3]).all() and np.isfinite(y[0, 1, 6:]).all()
        assert not np.isfinite(y[0, 2, 0:2, 0:2]).any()
        assert np.isfinite(y[0, 0]).all() and np.isfinite(y[0, 3]).all()


THREAD_CASES = [("NCHW", 2, 17, 2, (19, 45), 3, 1, 1), ("NHWC", 2, 33, 1, (19, 45), 3, 1, 1),
                ("NCHW", 1, 8, 1, (40, 37), 5, 2, 2), ("NHWC", 1, 70, 3, (17, 23), 7, 2, 3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", THREAD_CASES)
def test_bitwise_identical_across_threads(rng, case, dtype):
    layout, N, C, M, sp, k, s, p = case
    x = rng.standard_normal(input_shape(layout, N, C, sp)).astype(dtype)
    w = rng.standard_normal(weight_shape(layout, C * M, 1, (k, k))).astype(dtype)
    b = rng.standard_normal(C * M).astype(dtype)
    ys = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            ys.append(cconv.conv2d(x, w, b, s, p, 1, C, layout=layout, algorithm="depthwise"))
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])


ISA_COMPUTE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import cconv
    rng = np.random.default_rng(99)
    arrays = {}
    cases = [
        (2, "NCHW", 2, 17, 1, (13, 45), (3, 3), 1, 1, 1),
        (2, "NHWC", 2, 17, 1, (13, 45), (3, 3), 1, 1, 1),
        (2, "NCHW", 1, 9, 2, (21, 37), (5, 5), 2, 2, 1),
        (2, "NHWC", 1, 9, 2, (21, 37), (5, 5), 2, 2, 1),
        (2, "NCHW", 1, 33, 1, (15, 70), (7, 7), 1, 3, 2),
        (2, "NHWC", 1, 65, 1, (15, 19), (7, 7), 3, 3, 1),
        (2, "NHWC", 2, 40, 1, (9, 21), (5, 5), 1, 2, (2, 1)),
        (2, "NHWC", 1, 160, 1, (9, 300), (7, 7), 1, 3, 1),
        (2, "NHWC", 3, 5, 1, (6, 7), (5, 5), 2, ((1, 3), (0, 2)), 1),
        # channels-first tiles that read x in place (unit dilation, strides 1 / 2):
        # two column tiles, rows and columns wholly in the padding, odd widths
        (2, "NCHW", 2, 5, 2, (9, 70), (7, 7), 1, 3, 1),
        (2, "NCHW", 1, 6, 1, (11, 23), (3, 3), 2, ((0, 2), (3, 1)), 1),
        (2, "NCHW", 1, 4, 1, (5, 9), (5, 5), 1, 4, 1),
        (2, "NCHW", 1, 3, 1, (10, 131), (3, 3), 2, 1, 1),
        (2, "NCHW", 1, 3, 2, (7, 41), (5, 5), 2, ((2, 1), (0, 2)), 1),
        # paddings that reach past the tiles' end vectors (as in grad_input through a
        # reflect / replicate / circular padding: the kernel's full reach)
        (2, "NCHW", 1, 4, 1, (6, 30), (5, 5), 1, 4, 1),
        (2, "NCHW", 1, 3, 1, (5, 10), (3, 3), 1, ((1, 1), (20, 19)), 1),
        (2, "NCHW", 1, 3, 1, (5, 50), (7, 7), 1, ((3, 3), (0, 30)), 1),
        (1, "NCL", 2, 7, 3, (67,), (3,), 2, 1, 1),
        (3, "NDHWC", 1, 19, 1, (5, 6, 7), (3, 3, 3), 1, 1, 1),
        (3, "NCDHW", 1, 19, 1, (5, 6, 7), (3, 3, 3), 1, 1, 1),
    ]
    for i, (nd, layout, N, C, M, sp, k, s, p, d) in enumerate(cases):
        last = layout[-1] == "C"
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((N,) + sp + (C,) if last else (N, C) + sp)
            w = rng.standard_normal(k + (1, C * M) if last else (C * M, 1) + k)
            b = rng.standard_normal(C * M)
            f = {1: cconv.conv1d, 2: cconv.conv2d, 3: cconv.conv3d}[nd]
            y = f(x.astype(dtype), w.astype(dtype), b.astype(dtype), s, p, d, C,
                  layout=layout, algorithm="depthwise")
            arrays[f"c{i}_{np.dtype(dtype).name}"] = y
    # channels-last inputs at every element offset from a 64-byte boundary (the tiles
    # load them straight from the array)
    for j, (nd, C, sp, k, p) in enumerate([(2, 16, (7, 27), (7, 7), 0), (2, 48, (6, 40), (5, 5), 2),
                                           (2, 32, (3, 30), (3, 3), 1),
                                           (3, 16, (3, 4, 19), (3, 3, 3), 1)]):
        for dtype in (np.float32, np.float64):
            size = np.dtype(dtype).itemsize
            n = 2 * C * int(np.prod(sp))
            for off in range(64 // size):
                buf = np.empty(n * size + 128, np.uint8)
                start = (-buf.ctypes.data) % 64 + off * size
                x = buf[start:start + n * size].view(dtype).reshape((2,) + sp + (C,))
                x[...] = rng.standard_normal(x.shape)
                w = rng.standard_normal(k + (1, C)).astype(dtype)
                b = rng.standard_normal(C).astype(dtype)
                f = {2: cconv.conv2d, 3: cconv.conv3d}[nd]
                y = f(x, w, b, 1, p, 1, C, layout="NHWC" if nd == 2 else "NDHWC",
                      algorithm="depthwise")
                arrays[f"m{j}_{np.dtype(dtype).name}_{off}"] = y
    np.savez(OUTPATH, **arrays)
    """
)


def test_bitwise_identical_across_isa_paths(tmp_path):
    results = {}
    for isa in ("avx512", "avx2", "generic"):
        if cpu_supports(isa) is False:
            continue
        path = tmp_path / f"{isa}.npz"
        r = run_python(ISA_COMPUTE.replace("OUTPATH", repr(str(path))), CCONV_ISA=isa)
        assert r.returncode == 0, r.stderr
        results[isa] = dict(np.load(path))
    if len(results) < 2:
        pytest.skip("only one ISA path on this CPU")
    first = next(iter(results.values()))
    for isa, got in results.items():
        assert set(got) == set(first)
        for key in first:
            assert np.all(np.isfinite(first[key])), key
            np.testing.assert_array_equal(got[key], first[key], err_msg=f"{isa}: {key}")


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sweep_slow(rng, layout, dtype):
    for k, s, d, M, C in itertools.product((1, 2, 3, 5, 7), (1, 2, 3), (1, 2), (1, 2, 3),
                                           (1, 7, 17, 33, 65)):
        H = int(rng.integers((k - 1) * d + 1, 20))
        W = int(rng.integers((k - 1) * d + 1, 71))
        pad = [k // 2 * d, "same", "valid", ((1, 0), (0, 2))][int(rng.integers(4))]
        _case(rng, 2, layout, 1, C, M, (H, W), (k, k), s, pad, d, dtype,
              bias=bool(rng.integers(2)))


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("D,pd", [(2, 0), (3, 0), (1, 1), (3, 1)])
def test_nhwc_one_plane_kernel_on_3d_input(rng, k, D, pd):
    """A 3-D channels-last problem whose kernel has one plane (KD == 1) but several
    input or output planes is not a 2-D problem: the packed-row path (2-D only) must not
    take it. It did, and wrote only the first plane of the first image (found by the
    backward adjoint sweep: NDHWC, (1, 3, 3) kernel, D = 2)."""
    C = 16
    x = rng.standard_normal((2, D, 9, 10, C))
    w = rng.standard_normal((1, k, k, 1, C))
    pad = ((pd, pd), (k // 2, k // 2), (k // 2, k // 2))
    ref = conv_nd_reference(x, w, None, 1, pad, 1, C, "zeros", "NDHWC")
    out = np.full(ref.shape, np.nan)
    y = cconv.conv3d(x, w, None, 1, pad, 1, C, layout="NDHWC", algorithm="depthwise", out=out)
    assert y is out and np.isfinite(y).all()
    assert rel_error(y, ref) <= 1e-11


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,M,sp,k,stride,padding,mode", [
    (2, 8, 200, 1, (7, 7), (3, 3), 1, 1, "zeros"),
    (2, 16, 67, 2, (13, 11), (5, 5), 2, 2, "reflect"),           # multiplier 2, 6 columns
    (3, 2, 48, 1, (8, 9, 10), (3, 3, 3), 1, 1, "zeros"),
    (3, 2, 32, 1, (6, 9, 22), (3, 3, 3), 1, ((1, 1), (1, 1), (0, 2)), "zeros"),  # 3-D: 22
    (3, 2, 64, 2, (9, 10, 40), (2, 3, 3), 2, 1, "reflect"),                    # columns
    (1, 96, 64, 1, (12,), (5,), 1, "same", "circular"),
])
def test_channels_first_short_rows_via_channels_last(rng, monkeypatch, dtype, nd, N, C, M, sp,
                                                     k, stride, padding, mode):
    """Channels-first depthwise problems with output rows of at most 12 pixels (24 with a
    kernel depth over 1; and 65536 or more outputs) run the channels-last kernels between
    transposes
    (_plan.nchw_depthwise_via_nhwc): bitwise the channels-first kernels' result (one
    arithmetic for both layouts), with bias, into a NaN-filled out=, for 1-3 threads,
    against the float64 reference; inputs unchanged."""
    from cconv import _core, _plan, functional
    layout = DEFAULT_LAYOUT[nd]
    x = rng.standard_normal(input_shape(layout, N, C, sp)).astype(dtype)
    w = rng.standard_normal(weight_shape(layout, C * M, 1, k)).astype(dtype)
    b = rng.standard_normal(C * M).astype(dtype)
    x0, w0 = x.copy(), w.copy()
    fn = conv_fn(nd)
    args = (stride, padding, 1, C)
    calls = []
    real = _core.to_channels_last
    monkeypatch.setattr(_core, "to_channels_last", lambda *a: (calls.append(1), real(*a))[1])
    functional._FAST.clear()
    runs = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            runs.append(fn(x, w, b, *args, padding_mode=mode, layout=layout))
    out = np.full(runs[0].shape, np.nan, dtype)
    assert fn(x, w, b, *args, padding_mode=mode, layout=layout, out=out) is out
    assert len(calls) == 4 and N * C * M * np.prod(runs[0].shape[2:]) >= 65536
    assert runs[0].shape[-1] <= (_plan.NCHW_DW_VIA_MAX_W_3D if nd == 3 and k[0] > 1
                                 else _plan.NCHW_DW_VIA_MAX_W)
    for r in runs[1:] + [out]:
        np.testing.assert_array_equal(r, runs[0])
    monkeypatch.setattr(_plan, "NCHW_DW_VIA_MAX_W", 0)
    monkeypatch.setattr(_plan, "NCHW_DW_VIA_MAX_W_3D", 0)
    functional._FAST.clear()
    direct = fn(x, w, b, *args, padding_mode=mode, layout=layout)
    assert len(calls) == 4
    np.testing.assert_array_equal(direct, runs[0])
    functional._FAST.clear()
    pairs = resolve_padding(padding, sp, k, stride, 1)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0)) + tuple(pairs),
                mode={"zeros": "constant", "reflect": "reflect", "circular": "wrap"}[mode])
    ref = conv_nd_reference(xp, w.astype(np.float64), b.astype(np.float64), stride,
                            [(0, 0)] * nd, 1, C, layout=layout)
    assert rel_error(runs[0], ref) <= TOL[dtype]
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [1, 2, 3, 8])
def test_repeat_channels(dtype, m):
    """_core.repeat_channels is np.repeat along the last axis (a depthwise channel
    multiplier's inputs, channels-last), for 1-3 threads; a wrong dst is a ValueError."""
    from cconv import _core
    x = np.random.default_rng(m).standard_normal((37, 5)).astype(dtype)
    for nth in (1, 2, 3):
        out = np.full((37, 5 * m), np.nan, dtype)
        _core.repeat_channels(x, out, m, nth)
        np.testing.assert_array_equal(out, np.repeat(x, m, axis=1))
    with pytest.raises(ValueError, match=r"expected \(37, "):
        _core.repeat_channels(x, np.empty((37, 5 * m + 1), dtype), m, 1)


@pytest.mark.parametrize("nd,m,k", [(2, 2, 3), (2, 8, 5), (3, 3, 3), (1, 4, 7)])
def test_multiplier_backward_channels_last(rng, nd, m, k):
    """Channels-last depthwise with a channel multiplier (the inputs repeated once, one
    kernel pass over C * m lanes): forward, grad_weight and the bias gradient riding on
    it against the channels-first results (float64), 1-3 threads bitwise; the bias
    gradient bitwise equal with and without the weight gradient."""
    import cconv
    C, N = 3, 2
    sp = {1: (23,), 2: (9, 11), 3: (5, 6, 7)}[nd]
    first, last = DEFAULT_LAYOUT[nd], LAST_LAYOUT[nd]
    x = rng.standard_normal(input_shape(first, N, C, sp))
    w = rng.standard_normal(weight_shape(first, C * m, 1, (k,) * nd))
    y = conv_fn(nd)(x, w, None, 1, k // 2, 1, C, layout=first)
    g = rng.standard_normal(y.shape)
    perm = (0,) + tuple(range(2, nd + 2)) + (1,)
    xl, gl = np.ascontiguousarray(x.transpose(perm)), np.ascontiguousarray(g.transpose(perm))
    wl = np.ascontiguousarray(w.transpose(tuple(range(2, nd + 2)) + (1, 0)))
    bwd = getattr(cconv, f"conv{nd}d_backward")
    gw_fn = getattr(cconv, f"conv{nd}d_grad_weight")
    yl = conv_fn(nd)(xl, wl, None, 1, k // 2, 1, C, layout=last)
    assert rel_error(yl, y.transpose(perm)) <= 1e-13
    ref_w = gw_fn(x, g, w.shape, 1, k // 2, 1, C, layout=first)
    runs = []
    for nth in (1, 2, 3):
        with cconv.num_threads(nth):
            runs.append(bwd(gl, xl, wl, 1, k // 2, 1, C, layout=last,
                            need=("weight", "bias")))
    for r in runs[1:]:
        np.testing.assert_array_equal(r[1], runs[0][1])
        np.testing.assert_array_equal(r[2], runs[0][2])
    gwl = runs[0][1]
    assert rel_error(gwl, ref_w.transpose(tuple(range(2, nd + 2)) + (1, 0))) <= 1e-13
    gb_alone = bwd(gl, xl, wl, 1, k // 2, 1, C, layout=last, need=("bias",))[2]
    np.testing.assert_array_equal(runs[0][2], gb_alone)
    assert rel_error(runs[0][2], g.sum(axis=(0,) + tuple(range(2, nd + 2)))) <= 1e-13
