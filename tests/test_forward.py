"""Forward conv1d / conv2d / conv3d against the float64 reference.

* a hypothesis sweep over every option (a short one by default, a long one marked slow);
* explicit cases for every padding form x padding mode x algorithm;
* partial-tile channel counts and widths;
* small-integer inputs, for which float32 direct / im2col must be exact;
* non-finite propagation.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, assume, HealthCheck

from conftest import conv_fn, exact_algorithm, small_int_array, tolerance, xfail_if_unimplemented
from reference import (CHANNELS_LAST, DEFAULT_LAYOUT, LAST_LAYOUT, conv_nd_reference,
                       input_shape, output_spatial, rel_error, resolve_padding, weight_shape)

PARTIAL = (1, 3, 7, 17, 19, 33)
MAX_SPATIAL = {1: 33, 2: 12, 3: 6}
MAX_K = {1: 5, 2: 3, 3: 3}
MODES = ("zeros", "reflect", "replicate", "circular")
ALGOS = ("auto", "direct", "im2col")


def _pad_ok(mode, pairs, in_sizes):
    """PyTorch's limits: reflect needs pad < size, circular pad <= size."""
    for (b, a), n in zip(pairs, in_sizes):
        if mode == "reflect" and (b >= n or a >= n):
            return False
        if mode == "circular" and (b > n or a > n):
            return False
    return True


def run_case(case):
    """Run one configuration through cconv and the reference; check shape, dtype, layout
    and the error bound (exactness for small-integer float32 on direct/im2col)."""
    (nd, layout, x, w, b, stride, padding, dilation, groups, mode, algorithm) = case
    in_sizes = x.shape[-nd:] if layout not in CHANNELS_LAST else x.shape[-nd - 1:-1]
    k = w.shape[-nd:] if layout not in CHANNELS_LAST else w.shape[:nd]
    pairs = resolve_padding(padding, in_sizes, k, stride, dilation)
    ref = conv_nd_reference(x, w, b, stride, pairs, dilation, groups, mode, layout)
    fn = conv_fn(nd)
    try:
        y = fn(x, w, b, stride, padding, dilation, groups, padding_mode=mode, layout=layout,
               algorithm=algorithm)
    except Exception as exc:  # noqa: BLE001
        xfail_if_unimplemented(exc, algorithm)
    assert isinstance(y, np.ndarray)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert y.dtype == x.dtype, (y.dtype, x.dtype)
    assert y.flags.c_contiguous
    assert np.all(np.isfinite(y))
    err = rel_error(y, ref)
    assert err <= tolerance(x.dtype, algorithm), (err, case_repr(case))
    return y, ref


def case_repr(case):
    (nd, layout, x, w, b, stride, padding, dilation, groups, mode, algorithm) = case
    return (f"conv{nd}d(x{x.shape} {x.dtype}, w{w.shape}, bias={b is not None}, "
            f"stride={stride}, padding={padding}, dilation={dilation}, groups={groups}, "
            f"padding_mode={mode!r}, layout={layout!r}, algorithm={algorithm!r})")


@st.composite
def conv_cases(draw, nds=(1, 2, 3)):
    nd = draw(st.sampled_from(nds))
    layout = draw(st.sampled_from([DEFAULT_LAYOUT[nd], LAST_LAYOUT[nd]]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    algorithm = draw(st.sampled_from(ALGOS))
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    if kind == "plain":
        groups = 1
        cg = draw(st.sampled_from(PARTIAL[:5] + (2, 4, 8, 16)))
        og = draw(st.sampled_from(PARTIAL[:5] + (2, 4, 8, 16)))
    elif kind == "grouped":
        groups = draw(st.integers(2, 4))
        cg = draw(st.integers(1, 5))
        og = draw(st.integers(1, 5))
    else:  # depthwise, with an optional channel multiplier
        groups = draw(st.sampled_from([1, 2, 3, 7, 16, 17]))
        cg = 1
        og = draw(st.sampled_from([1, 1, 2, 3]))
    C, O = cg * groups, og * groups
    if nd == 3:  # keep 3-D cheap
        assume(C <= 12 and O <= 12)
    k = tuple(draw(st.integers(1, MAX_K[nd])) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    sizes = tuple(draw(st.integers(1, MAX_SPATIAL[nd])) for _ in range(nd))
    form = draw(st.sampled_from(["int", "tuple", "pairs", "valid", "same"]
                                + (["causal"] if nd == 1 else [])))
    if form == "int":
        padding = draw(st.integers(0, 3))
    elif form == "tuple":
        padding = tuple(draw(st.integers(0, 3)) for _ in range(nd))
    elif form == "pairs":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(nd))
    else:
        padding = form
    mode = draw(st.sampled_from(MODES))
    pairs = resolve_padding(padding, sizes, k, stride, dilation)
    assume(_pad_ok(mode, pairs, sizes))
    assume(all(o >= 1 for o in output_spatial(sizes, k, stride, pairs, dilation)))
    # sometimes collapse tuples to plain ints (the int form of stride / dilation)
    if draw(st.booleans()) and len(set(stride)) == 1:
        stride = stride[0]
    if draw(st.booleans()) and len(set(dilation)) == 1:
        dilation = dilation[0]
    batched = draw(st.sampled_from([True, True, True, False]))
    N = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    integer = draw(st.booleans())
    rng = np.random.default_rng(seed)
    xs = input_shape(layout, N, C, sizes, batched)
    ws = weight_shape(layout, O, cg, k)
    if integer:
        x = small_int_array(rng, xs, dtype)
        w = small_int_array(rng, ws, dtype)
        b = small_int_array(rng, (O,), dtype) if draw(st.booleans()) else None
    else:
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal(ws).astype(dtype)
        b = rng.standard_normal(O).astype(dtype) if draw(st.booleans()) else None
    return (nd, layout, x, w, b, stride, padding, dilation, groups, mode, algorithm), integer


def _check(case_int):
    case, integer = case_int
    y, ref = run_case(case)
    x, algorithm = case[2], case[-1]
    if integer and exact_algorithm(algorithm):
        np.testing.assert_array_equal(y, ref.astype(x.dtype), err_msg=case_repr(case))


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(conv_cases())
def test_forward_sweep(case_int):
    _check(case_int)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(conv_cases())
def test_forward_sweep_long(case_int):
    _check(case_int)


# --------------------------------------------------------------------------- explicit cases

PADDINGS = {
    1: [0, 2, (1,), ((2, 0),), ((0, 3),), "valid", "same", "causal"],
    2: [0, 1, (1, 2), ((1, 0), (0, 2)), ((2, 1), (1, 1)), "valid", "same"],
    3: [0, 1, (1, 0, 2), ((1, 0), (0, 1), (1, 1)), "valid", "same"],
}
SIZES = {1: (13,), 2: (7, 9), 3: (4, 5, 6)}
KS = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}


def _explicit_params():
    out = []
    for nd, pads in PADDINGS.items():
        for padding in pads:
            for mode in MODES:
                out.append(pytest.param(nd, padding, mode, id=f"{nd}d-{padding}-{mode}"))
    return out


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("nd,padding,mode", _explicit_params())
def test_padding_forms(rng, nd, padding, mode, last, algorithm):
    layout = LAST_LAYOUT[nd] if last else DEFAULT_LAYOUT[nd]
    for dtype in (np.float32, np.float64):
        stride = 1 if padding == "causal" else (2,) + (1,) * (nd - 1)
        dilation = (2,) + (1,) * (nd - 1)
        x = rng.standard_normal(input_shape(layout, 2, 4, SIZES[nd])).astype(dtype)
        w = rng.standard_normal(weight_shape(layout, 6, 2, KS[nd])).astype(dtype)
        b = rng.standard_normal(6).astype(dtype)
        run_case((nd, layout, x, w, b, stride, padding, dilation, 2, mode, algorithm))


@pytest.mark.parametrize("algorithm", ("direct", "im2col"))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("C", PARTIAL)
@pytest.mark.parametrize("O", PARTIAL)
def test_partial_tile_channels_exact(rng, layout, C, O, algorithm):
    """Channel counts that are not multiples of any SIMD width: float32 exact on small ints."""
    x = small_int_array(rng, input_shape(layout, 2, C, (5, 6)), np.float32)
    w = small_int_array(rng, weight_shape(layout, O, C, (3, 3)), np.float32)
    b = small_int_array(rng, (O,), np.float32)
    y, ref = run_case((2, layout, x, w, b, 1, 1, 1, 1, "zeros", algorithm))
    np.testing.assert_array_equal(y, ref.astype(np.float32))


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("W", PARTIAL + (65,))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_partial_tile_widths(rng, layout, W, algorithm, dtype):
    x = rng.standard_normal(input_shape(layout, 1, 3, (4, W))).astype(dtype)
    w = rng.standard_normal(weight_shape(layout, 5, 3, (3, 3))).astype(dtype)
    run_case((2, layout, x, w, None, 1, "same", 1, 1, "zeros", algorithm))


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("L", PARTIAL + (65, 129))
def test_partial_tile_lengths_1d(rng, layout, L, algorithm):
    x = rng.standard_normal(input_shape(layout, 2, 5, (L,))).astype(np.float32)
    w = rng.standard_normal(weight_shape(layout, 7, 5, (3,))).astype(np.float32)
    run_case((1, layout, x, w, None, 1, "causal", 2, 1, "zeros", algorithm))


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    "C,O,groups",
    [(8, 8, 8), (17, 17, 17), (16, 32, 16), (7, 21, 7), (12, 8, 4), (33, 33, 33), (6, 9, 3)],
    ids=lambda v: str(v),
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_groups_and_depthwise(rng, layout, C, O, groups, algorithm, dtype):
    for stride, pad in [(1, 1), (2, "same")]:
        x = rng.standard_normal(input_shape(layout, 2, C, (9, 10))).astype(dtype)
        w = rng.standard_normal(weight_shape(layout, O, C // groups, (3, 3))).astype(dtype)
        b = rng.standard_normal(O).astype(dtype)
        run_case((2, layout, x, w, b, stride, pad, 1, groups, "zeros", algorithm))


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    "k,stride,dilation,padding",
    [((1, 1), 1, 1, 0), ((1, 1), 2, 1, 0), ((2, 2), 5, 1, 0), ((3, 3), 4, 1, 1),
     ((3, 3), 1, 4, 4), ((3, 1), (1, 3), (3, 1), "same"), ((1, 5), 1, (1, 2), ((0, 0), (4, 4))),
     ((5, 5), 1, 1, 2), ((7, 7), 2, 1, 3)],
    ids=lambda v: str(v),
)
def test_stride_dilation_extremes(rng, layout, k, stride, dilation, padding, algorithm):
    """Stride larger than the kernel, large dilation, 1x1 (the plain-GEMM path)."""
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(input_shape(layout, 2, 5, (11, 12))).astype(dtype)
        w = rng.standard_normal(weight_shape(layout, 6, 5, k)).astype(dtype)
        run_case((2, layout, x, w, None, stride, padding, dilation, 1, "zeros", algorithm))


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("layout", ["NCDHW", "NDHWC"])
@pytest.mark.parametrize("mode", MODES)
def test_conv3d_small_int_exact(rng, layout, mode, algorithm):
    x = small_int_array(rng, input_shape(layout, 2, 3, (5, 4, 6)), np.float32)
    w = small_int_array(rng, weight_shape(layout, 4, 3, (3, 2, 3)), np.float32)
    b = small_int_array(rng, (4,), np.float32)
    y, ref = run_case((3, layout, x, w, b, (1, 2, 1), 1, (1, 1, 2), 1, mode, algorithm))
    if exact_algorithm(algorithm):
        np.testing.assert_array_equal(y, ref.astype(np.float32))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_eligible(rng, layout, dtype):
    """3x3 stride 1 dilation 1: winograd within its tolerance (xfail if not implemented)."""
    for C, O, H, W in [(3, 5, 8, 8), (17, 19, 9, 11), (32, 16, 13, 7)]:
        x = rng.standard_normal(input_shape(layout, 2, C, (H, W))).astype(dtype)
        w = rng.standard_normal(weight_shape(layout, O, C, (3, 3))).astype(dtype)
        b = rng.standard_normal(O).astype(dtype)
        for pad in (0, 1, "same"):
            run_case((2, layout, x, w, b, 1, pad, 1, 1, "zeros", "winograd"))


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_propagates(rng, layout, algorithm, bad):
    """A non-finite input pixel reaches every output that reads it, and no other one
    (direct / im2col: no transform to spread it)."""
    C, O, H, W = 3, 4, 8, 9
    x = rng.standard_normal(input_shape(layout, 1, C, (H, W)))
    w = rng.uniform(0.5, 1.5, weight_shape(layout, O, C, (3, 3)))  # no zero weights
    idx = (0, 1, 3, 4) if layout == "NCHW" else (0, 3, 4, 1)
    x[idx] = bad
    mask = np.zeros_like(x)
    mask[idx] = 1.0
    reads = conv_nd_reference(mask, np.abs(w), None, 1, ((1, 1), (1, 1)), 1, 1, "zeros",
                              layout) > 0
    fn = conv_fn(2)
    for dtype in (np.float32, np.float64):
        y = fn(x.astype(dtype), w.astype(dtype), None, 1, 1, layout=layout, algorithm=algorithm)
        assert np.all(~np.isfinite(y[reads]))
        if algorithm != "auto":
            assert np.all(np.isfinite(y[~reads]))


# Channels-first im2col on small images with a batch runs the channels-last kernel
# (pixel blocks across the batch) between two transposes (_plan.nchw_via_nhwc), unless
# the pixel-row kernels run (via=False: _plan.nchw_forward_via_nhwc) other than thanks
# to the AVX-512 half-width tiles (one panel of at most NR/2 output channels: via=True).
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,O,G,hw,k,stride,pad,mode,via", [
    (16, 32, 40, 1, (8, 8), 3, 1, 1, "zeros", (False, False)),
    (64, 48, 24, 2, (4, 4), 2, 1, ((1, 0), (0, 1)), "zeros", (True, False)),
    (12, 16, 20, 1, (15, 13), 3, 2, 1, "reflect", (True, False)),
    (64, 64, 16, 1, (4, 4), 3, 1, 1, "zeros", (True, False)),
])
def test_nchw_small_images_via_channels_last(dtype, N, C, O, G, hw, k, stride, pad, mode,
                                             via, monkeypatch):
    import cconv
    from cconv import _im2col, _plan, _spec, functional
    rng = np.random.default_rng(12)
    x = rng.standard_normal((N, C) + hw).astype(dtype)
    w = rng.standard_normal((O, C // G, k, k)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    spec = _spec.forward_spec("conv2d", 2, x, w, b, stride, pad, 1, G, mode, "NCHW",
                              "im2col")[0]
    assert _plan.nchw_via_nhwc(spec)
    via = via[dtype == np.float64] if _im2col.tile_shape(np.float32)[1] == 32 else None
    if via is None:  # another ISA path: other tile widths
        via = _plan.nchw_forward_via_nhwc(spec)
    assert _plan.nchw_forward_via_nhwc(spec) == via
    if not via:
        assert _plan.nchw_pixrow(spec)
    out = np.full(spec.out_shape, np.nan, dtype)
    y = cconv.conv2d(x, w, b, stride, pad, 1, G, padding_mode=mode, algorithm="im2col",
                     out=out)
    assert y is out
    if via:
        # the same kernel as the channels-last call (kept channels-last: few output
        # channels per group would send it channels-first): bitwise equal
        monkeypatch.setattr(_plan, "nhwc_via_nchw", lambda spec: False)
        functional._FAST.clear()
        yl = cconv.conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                          np.ascontiguousarray(w.transpose(2, 3, 1, 0)), b, stride, pad, 1,
                          G, padding_mode=mode, layout="NHWC", algorithm="im2col")
        np.testing.assert_array_equal(y, yl.transpose(0, 3, 1, 2))
    ref = cconv.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                       stride, pad, 1, G, padding_mode=mode, algorithm="direct")
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.abs(y - ref).max() <= tol * np.abs(ref).max()


# ----------------------------------------------------------------------------- few channels
# Channels-last, groups == 1, at most 4 input channels: the direct few-channel kernel
# (direct_fewc.h; auto picks it). Output-channel counts cover whole and partial SIMD
# vectors and the 1..4-vector passes, widths cover whole and partial pixel tiles.

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,O", [(1, 1), (3, 5), (3, 16), (2, 17), (3, 32), (4, 40), (3, 64),
                                 (3, 70), (1, 130)])
@pytest.mark.parametrize("k,stride,dil,padding", [(3, 1, 1, 1), (7, 2, 1, 3), (5, 2, 2, "same"),
                                                  (3, (1, 2), 1, ((2, 0), (0, 1))),
                                                  (1, 1, 1, 0)])
def test_few_channel_nhwc_direct(dtype, C, O, k, stride, dil, padding):
    rng = np.random.default_rng(C * 1000 + O)
    if padding == "same":
        stride = 1
    x = rng.standard_normal((2, 13, 27, C)).astype(dtype)
    w = rng.standard_normal((k, k, C, O)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    from cconv import conv2d
    pairs = resolve_padding(padding, (13, 27), (k, k), stride, dil)
    ref = conv_nd_reference(x, w, b, stride, pairs, dil, 1, "zeros", "NHWC")
    outs = []
    for threads in (1, 2):
        import cconv
        with cconv.num_threads(threads):
            out = np.full(ref.shape, np.nan, dtype)
            y = conv2d(x, w, b, stride, padding, dil, layout="NHWC", algorithm="direct",
                       out=out)
        assert y is out
        outs.append(y)
    np.testing.assert_array_equal(outs[0], outs[1])  # thread-count independent
    assert rel_error(outs[0], ref) <= tolerance(dtype, "direct"), rel_error(outs[0], ref)
    # auto picks the same kernel for these problems on a SIMD path
    import cconv
    if cconv._direct.fewc_lanes(dtype) > 1:
        np.testing.assert_array_equal(
            conv2d(x, w, b, stride, padding, dil, layout="NHWC"), outs[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,C,O,k,dil,take", [
    (3, 8, 8, 5, 2, True), (3, 15, 3, 4, 1, True), (2, 12, 16, 7, 1, True),
    (2, 5, 9, 9, 2, True), (1, 8, 8, 49, 1, True),
    (2, 8, 8, 5, 1, False),       # 25 taps: im2col
    (3, 16, 8, 5, 1, False),      # 16 channels: the indirect kernel
    (2, 8, 17, 7, 1, False),      # more than one vector of outputs (float32: 16 lanes)
])
def test_few_channel_kernel_for_large_kernels(dtype, nd, C, O, k, dil, take):
    """Channels-last with 5-15 input channels, at most one vector of output channels
    and at least 49 taps: "auto" runs the few-channel direct kernel (im2col would build
    a row block per pixel); against the reference, 1-3 threads bitwise into NaN-filled
    out=, bitwise the explicit "direct" call."""
    import cconv
    from cconv import _plan, _spec
    layout = LAST_LAYOUT[nd]
    rng = np.random.default_rng(C * 100 + O + k)
    sp = {1: (70,), 2: (13, 15), 3: (9, 8, 10)}[nd]
    x = rng.standard_normal(input_shape(layout, 2, C, sp)).astype(dtype)
    w = rng.standard_normal(weight_shape(layout, O, C, (k,) * nd)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    pad = (k // 2) * dil
    spec = _spec.forward_spec(f"conv{nd}d", nd, x, w, b, 1, pad, dil, 1, "zeros", layout,
                              "auto")[0]
    lanes = cconv._direct.fewc_lanes(dtype)
    expect = take and lanes > 1 and O <= lanes
    assert (_plan.choose_forward(spec, "auto") is _plan.Algorithm.DIRECT) == expect
    pairs = resolve_padding(pad, sp, (k,) * nd, 1, dil)
    ref = conv_nd_reference(x, w, b, 1, pairs, dil, 1, "zeros", layout)
    outs = []
    for nth in (1, 2, 3):
        with cconv.num_threads(nth):
            out = np.full(ref.shape, np.nan, dtype)
            assert conv_fn(nd)(x, w, b, 1, pad, dil, layout=layout, out=out) is out
            outs.append(out)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    assert rel_error(outs[0], ref) <= tolerance(dtype, "direct")
    if expect:
        np.testing.assert_array_equal(
            conv_fn(nd)(x, w, b, 1, pad, dil, layout=layout, algorithm="direct"), outs[0])


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("groups,Cg,Og", [(4, 3, 5), (32, 8, 8), (2, 15, 16)])
def test_grouped_channels_last_few_channels_per_group(nd, groups, Cg, Og):
    """Channels-last grouped im2col with < 16 channels per group runs the channels-first
    kernel between transposes (_plan.nhwc_via_nchw): same results as the reference."""
    layout = LAST_LAYOUT[nd]
    rng = np.random.default_rng(groups + Cg)
    sp = {1: (11,), 2: (7, 9), 3: (4, 5, 6)}[nd]
    x = rng.standard_normal(input_shape(layout, 2, groups * Cg, sp)).astype(np.float32)
    w = rng.standard_normal(weight_shape(layout, groups * Og, Cg, (3,) * nd)).astype(np.float32)
    b = rng.standard_normal(groups * Og).astype(np.float32)
    pairs = resolve_padding(1, sp, (3,) * nd, 1, 1)
    ref = conv_nd_reference(x, w, b, 1, pairs, 1, groups, "zeros", layout)
    for algorithm in ("auto", "im2col"):
        y = conv_fn(nd)(x, w, b, 1, 1, 1, groups, layout=layout, algorithm=algorithm)
        assert y.shape == ref.shape and y.flags.c_contiguous
        assert rel_error(y, ref) <= tolerance(np.float32, algorithm)


@pytest.mark.parametrize("nd,C,O,k,stride,sp,via", [
    (2, 24, 8, 3, 1, (23, 25), True), (2, 16, 16, 7, 1, (23, 25), True),
    (1, 8, 5, 3, 1, (600,), True), (3, 12, 16, 3, 1, (8, 9, 10), True),
    (2, 24, 8, 3, 2, (46, 50), False), (2, 24, 40, 3, 1, (23, 25), False),
    (1, 8, 16, 3, 1, (600,), False), (3, 12, 8, 5, 1, (8, 9, 10), False),
    (2, 3, 8, 3, 1, (23, 25), False), (2, 24, 8, 3, 1, (11, 9), False),
    (3, 16, 16, 3, 1, (8, 9, 10), True), (2, 32, 12, 5, 1, (23, 25), True),
])
def test_dense_channels_last_few_outputs_via_channels_first(nd, C, O, k, stride, sp, via):
    """Stride-1 channels-last im2col with few output channels runs the channels-first
    kernel between transposes (_plan.nhwc_via_nchw); strided problems, more outputs,
    3-D kernels above 3x3x3, fewer than 4 input channels and small problems (under
    1024 output pixels in the batch) stay channels-last, and so, on the AVX-512 path
    (half-width tiles), do problems with at least 16 input channels and more than NR/4
    outputs (`via` below is the rule without half-width tiles). Both against the float64
    reference, into a NaN-prefilled out=."""
    from cconv import _im2col, _plan, _spec
    layout = LAST_LAYOUT[nd]
    rng = np.random.default_rng(C + O + k)
    x = rng.standard_normal(input_shape(layout, 2, C, sp)).astype(np.float32)
    w = rng.standard_normal(weight_shape(layout, O, C, (k,) * nd)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    spec = _spec.forward_spec(f"conv{nd}d", nd, x, w, b, stride, k // 2, 1, 1, "zeros",
                              layout, "im2col")[0]
    half = (_im2col.isa_active() == "avx512" and C >= 16
            and O > _im2col.tile_shape(np.float32)[1] // 4)
    assert _plan.nhwc_via_nchw(spec) == (via and not half)
    pairs = resolve_padding(k // 2, sp, (k,) * nd, stride, 1)
    ref = conv_nd_reference(x, w, b, stride, pairs, 1, 1, "zeros", layout)
    out = np.full(ref.shape, np.nan, np.float32)
    y = conv_fn(nd)(x, w, b, stride, k // 2, 1, 1, layout=layout, algorithm="im2col",
                    out=out)
    assert y is out
    assert rel_error(y, ref) <= tolerance(np.float32, "im2col")


# ----------------------------------------------------------------------------- dilation phases
# A dilated stride-1 convolution is one undilated convolution over the batch of the
# padded input's stride phases (_plan.stride_phase_spec, functional._run_phases); "auto"
# takes that route where Winograd on the phases pays (_plan.dilation_phase_spec). Sizes
# leave phases of unequal length (odd sizes, dilation 3), asymmetric padding, every
# padding mode.
def _thread_counts_agree(call, shape, dtype):
    """call(out) with a NaN-prefilled `out` under 1, 2 and 3 threads: each call returns
    `out`, and the results are bitwise equal. Returns them."""
    import cconv
    outs = []
    for threads in (1, 2, 3):
        with cconv.num_threads(threads):
            out = np.full(shape, np.nan, dtype)
            y = call(out)
        assert y is out
        outs.append(y)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])  # thread-count independent
    return outs


PHASE_CASES = [
    # nd, N, C, O, groups, spatial, kernel, dilation, padding, mode
    (2, 2, 16, 24, 1, (28, 28), 3, 2, 2, "zeros"),
    (2, 1, 8, 9, 1, (31, 29), 3, (2, 3), ((1, 3), (0, 2)), "zeros"),
    (2, 2, 8, 8, 2, (40, 37), (3, 5), (3, 1), "same", "reflect"),
    (2, 3, 32, 32, 1, (33, 33), 3, 2, 2, "circular"),
    (2, 1, 20, 12, 4, (35, 36), 2, 4, 0, "replicate"),
    (1, 2, 16, 16, 1, (400,), 3, 4, "causal", "zeros"),
    (1, 3, 5, 7, 1, (101,), 5, 3, ((7, 2),), "reflect"),
    (3, 1, 6, 6, 1, (20, 21, 22), 3, 2, 1, "zeros"),
    (3, 1, 5, 6, 1, (19, 20, 18), 3, (2, 1, 2), 1, "replicate"),
    # where "auto" takes the phases (the test drops the copies' cost so that both layouts
    # take them at this size), also where the channels-first pixel rows would read the
    # dilated taps in place
    (2, 1, 64, 64, 1, (30, 30), 3, 2, 2, "zeros"),
    (2, 1, 128, 96, 1, (39, 45), 3, (2, 3), "same", "reflect"),
]


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", PHASE_CASES)
def test_dilated_convolution_on_stride_phases(case, dtype, last, monkeypatch):
    from cconv import _plan, _spec, functional
    auto_case = case in PHASE_CASES[-2:]
    if auto_case:
        monkeypatch.setattr(_plan, "PHASE_COPY_COST", {False: 0.0, True: 0.0})
    nd, N, C, O, groups, sp, k, dil, padding, mode = case
    layout = (LAST_LAYOUT if last else DEFAULT_LAYOUT)[nd]
    k = (k,) * nd if isinstance(k, int) else k
    rng = np.random.default_rng(PHASE_CASES.index(case) * 2 + last)
    x = rng.standard_normal(input_shape(layout, N, C, sp)).astype(dtype)
    w = rng.standard_normal(weight_shape(layout, O, C // groups, k)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    x0, w0 = x.copy(), w.copy()
    spec = _spec.forward_spec("conv", nd, x, w, b, 1, padding, dil, groups, mode, layout,
                              "auto")[0]
    pairs = resolve_padding(padding, sp, k, 1, dil)
    ref = conv_nd_reference(x, w, b, 1, pairs, dil, groups, mode, layout)
    # the phase route itself, on the algorithm "auto" picks for the phases
    pspec = _plan.stride_phase_spec(spec)
    assert pspec.N == N * int(np.prod(pspec.as3d(spec.dilation, 1)))
    algo = _plan.choose_forward(pspec, "auto")
    outs = _thread_counts_agree(
        lambda out: functional._run_phases(spec, pspec, algo, x, w, b, out) or out,
        ref.shape, dtype)
    assert rel_error(outs[0], ref) <= tolerance(dtype, "auto"), rel_error(outs[0], ref)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    # "auto" takes it only for Winograd on the phases
    auto = _plan.dilation_phase_spec(spec)
    if auto is not None or auto_case:
        assert auto == pspec and algo.winograd_m
    y = conv_fn(nd)(x, w, b, 1, padding, dil, groups, padding_mode=mode, layout=layout)
    if auto is not None:
        np.testing.assert_array_equal(y, outs[0])
    assert rel_error(y, ref) <= tolerance(dtype, "auto")
    # unbatched input, no bias: the same route
    y1 = conv_fn(nd)(x[0], w, None, 1, padding, dil, groups, padding_mode=mode, layout=layout)
    ref1 = conv_nd_reference(x[:1], w, None, 1, pairs, dil, groups, mode, layout)[0]
    assert y1.shape == ref1.shape
    assert rel_error(y1, ref1) <= tolerance(dtype, "auto")


# Stride-2 widths on every edge of the padded phase copy (pack.c, cconv_pad_phases: the
# two column phases of one input row written in one pass, cconv_split2): widths below,
# at and past a vector of either phase, odd and even, zero to three columns of padding
# on either side (a phase then starts or ends a column early), kernels 1-5, and a batch
# of 1 (one shared copy) and of 3 (a copy per image).
STRIDE2_COPY_CASES = [
    # nd, N, spatial, kernel, stride, padding
    (2, 1, (5, 1), 1, 2, 0),
    (2, 1, (6, 2), 3, 2, 1),
    (2, 3, (7, 3), 3, 2, ((1, 1), (2, 0))),
    (2, 1, (9, 5), 3, 2, ((0, 3), (3, 0))),
    (2, 1, (8, 16), 3, 2, 1),
    (2, 3, (8, 17), 2, 2, ((0, 0), (0, 1))),
    (2, 1, (9, 18), 5, 2, 2),
    (2, 1, (7, 19), 3, 2, ((2, 1), (1, 3))),
    (2, 3, (6, 33), 3, 2, ((1, 1), (3, 2))),
    (2, 1, (6, 34), 4, (1, 2), ((1, 2), (2, 1))),
    (2, 1, (5, 56), 3, 2, 1),
    (2, 1, (5, 57), 3, 2, ((1, 1), (0, 0))),
    (1, 2, (37,), 3, 2, 1),
    (1, 1, (64,), 5, 2, ((3, 0),)),
    (3, 1, (4, 5, 35), 3, 2, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", STRIDE2_COPY_CASES)
def test_stride2_phase_copy_edges(case, dtype):
    """Channels-first im2col with column stride 2: exact on small integers against the
    reference, under 1, 2 and 3 threads, output pre-filled with NaN, inputs untouched."""
    nd, N, sp, k, stride, padding = case
    layout = DEFAULT_LAYOUT[nd]
    k = (k,) * nd
    rng = np.random.default_rng(sum(sp) * 10 + N)
    x = small_int_array(rng, input_shape(layout, N, 5, sp), dtype)
    w = small_int_array(rng, weight_shape(layout, 7, 5, k), dtype)
    b = small_int_array(rng, (7,), dtype)
    x0 = x.copy()
    pairs = resolve_padding(padding, sp, k, stride, 1)
    ref = conv_nd_reference(x, w, b, stride, pairs, 1, 1, "zeros", layout)
    outs = _thread_counts_agree(
        lambda out: conv_fn(nd)(x, w, b, stride, padding, layout=layout, algorithm="im2col",
                                out=out),
        ref.shape, dtype)
    np.testing.assert_array_equal(outs[0], ref)
    np.testing.assert_array_equal(x, x0)


def test_dilation_phase_route_limits():
    """No phase route for stride > 1, depthwise or few-channel grouped problems (their
    direct kernels take dilation as is), kernels Winograd cannot run, phases shorter than
    PHASE_MIN_OUT, or copies that cost more than Winograd saves; explicit algorithms
    keep the dilated kernels."""
    from cconv import _plan, _spec

    def ps(w, stride=1, dil=2, groups=1, x=np.zeros((2, 64, 40, 40), np.float32),
           layout="NCHW"):
        return _plan.dilation_phase_spec(_spec.forward_spec(
            "conv2d", 2, x, w, None, stride, dil, dil, groups, "zeros", layout, "auto")[0])
    w = np.zeros((64, 64, 3, 3), np.float32)
    monkey = _plan.PHASE_COPY_COST
    _plan.PHASE_COPY_COST = {False: 0.0, True: 0.0}
    try:
        assert ps(w) is not None and ps(w).N == 8 and ps(w).dilation == (1, 1)
        assert ps(w, stride=2) is None
        assert ps(w, dil=1) is None
        assert ps(np.zeros((64, 1, 3, 3), np.float32), groups=64) is None   # depthwise
        assert ps(np.zeros((64, 8, 3, 3), np.float32), groups=8) is None    # grouped direct
        assert ps(np.zeros((64, 64, 5, 5), np.float32)) is None             # no Winograd
        assert ps(w, dil=6) is None                                # 52 / 6 -> 9 - 2 < 8
        xl = np.zeros((2, 40, 40, 64), np.float32)
        assert ps(np.zeros((3, 3, 64, 64), np.float32), x=xl, layout="NHWC").N == 8
        assert _plan.stride_phase_spec(_spec.forward_spec(
            "conv2d", 2, xl, np.zeros((5, 5, 64, 64), np.float32), None, 1, 1, 2, 1,
            "zeros", "NHWC", "auto")[0]).N == 8                      # the geometry alone
        _plan.PHASE_COPY_COST = {False: 1e6, True: 1e6}
        assert ps(w) is None
        assert ps(np.zeros((3, 3, 64, 64), np.float32), x=xl, layout="NHWC") is None
    finally:
        _plan.PHASE_COPY_COST = monkey


# ----------------------------------------------------------------------------- grouped direct
# The direct grouped kernel (depthwise.h, cconv_gconv_nchw): "direct" on grouped problems
# and "auto" with <= 16 channels per group. Register tiles of 4 (AVX2: 2) rows x 4 output
# channels x one vector: rows, output channels per group and widths that leave partial
# tiles and partial vectors; strides, dilation, asymmetric padding; 1-D / 2-D / 3-D.
GROUPED_CASES = [
    # nd, N, C, O, groups, spatial, kernel, stride, padding, dilation
    (2, 1, 256, 256, 32, (14, 14), 3, 1, 1, 1),
    (2, 2, 24, 20, 4, (17, 19), 3, 2, 1, 1),
    (2, 1, 16, 12, 2, (9, 33), (5, 3), 1, ((2, 1), (0, 3)), (1, 2)),
    (2, 3, 6, 9, 3, (7, 5), 1, 1, 0, 1),
    (2, 2, 12, 18, 6, (6, 70), 3, (1, 3), "same", 1),
    (1, 2, 16, 40, 8, (37,), 5, 1, 2, 2),
    (3, 1, 8, 12, 4, (5, 7, 9), 3, (1, 2, 1), 1, 1),
    # channels-last tiles: 16 and 20 output channels per group (two vectors, a masked
    # one), rows past the 4-row tile, widths past the 7-pixel tile, stride 2 phases
    (2, 1, 64, 64, 4, (9, 23), 3, 2, 1, 1),
    (2, 2, 32, 40, 2, (10, 12), 3, 1, 1, 2),
    # groups of 8 output channels, two per register tile (gconv_pair.h; channels-first
    # only at stride 1 with 8 input channels per group): an odd group left over, 5 and
    # 16 input channels per group, stride 2 phases, dilation, rows past the 3-row tile,
    # rows past one 16-pixel transpose, 1-D and 3-D
    (2, 1, 24, 24, 3, (9, 11), 3, 2, 1, 1),
    (2, 2, 20, 32, 4, (8, 15), 3, 1, 2, 2),
    (3, 1, 32, 16, 2, (4, 6, 7), 3, 1, 1, 1),
    (1, 2, 48, 48, 6, (29,), 3, 2, 1, 1),
    (2, 1, 40, 40, 5, (5, 37), 3, 1, 1, 1),
    (2, 2, 32, 32, 4, (8, 9), 3, 1, ((0, 2), (1, 0)), (2, 1)),
    (3, 1, 16, 16, 2, (3, 5, 6), 3, 1, 1, 1),
    (1, 1, 16, 16, 2, (40,), 3, 1, 1, 1),
    # groups of 4 output channels, four per register tile: 4 and 6 input channels per
    # group, two groups left over, stride 2, dilation, 1-D and 3-D
    (2, 1, 64, 64, 16, (9, 10), 3, 1, 1, 1),
    (2, 2, 24, 24, 6, (8, 9), 3, 2, 1, 1),
    (2, 1, 36, 24, 6, (7, 7), 3, 1, 1, 2),
    (1, 1, 32, 16, 4, (30,), 3, 1, 1, 1),
    (3, 1, 16, 16, 4, (3, 4, 5), 3, 1, 1, 1),
]


# Channels-last grouped problems with 1-2 output channels per group run the channels-
# first grouped kernel between transposes (_plan.nhwc_grouped_via_nchw): bitwise the
# channels-last kernel's result. 1-3-D, stride, dilation, asymmetric padding, bias.
GROUPED_VIA_CASES = [
    # nd, N, C, O, groups, spatial, kernel, stride, padding, dilation
    (2, 1, 128, 32, 32, (28, 28), 3, 1, 1, 1),
    (2, 2, 64, 32, 16, (20, 23), 3, 2, 1, 1),
    (2, 1, 96, 48, 24, (17, 30), (3, 5), 1, ((0, 2), (1, 3)), (2, 1)),
    (1, 4, 64, 32, 16, (300,), 3, 1, 2, 2),
    (3, 2, 64, 16, 16, (9, 8, 10), 3, (1, 2, 1), 1, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GROUPED_VIA_CASES)
def test_grouped_channels_last_via_channels_first(case, dtype, monkeypatch):
    import cconv
    from cconv import _plan, _spec, functional
    nd, N, C, O, groups, sp, k, stride, padding, dil = case
    k = (k,) * nd if isinstance(k, int) else k
    lay = LAST_LAYOUT[nd]
    rng = np.random.default_rng(C + O + nd)
    x = rng.standard_normal(input_shape(lay, N, C, sp)).astype(dtype)
    w = rng.standard_normal(weight_shape(lay, O, C // groups, k)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    x0, w0 = x.copy(), w.copy()
    spec = _spec.forward_spec("conv", nd, x, w, b, stride, padding, dil, groups, "zeros",
                              lay, "auto")[0]
    assert _plan.nhwc_grouped_via_nchw(spec)
    assert _plan.choose_forward(spec, "auto") is _plan.Algorithm.DIRECT
    outs = _thread_counts_agree(
        lambda out: conv_fn(nd)(x, w, b, stride, padding, dil, groups, layout=lay, out=out),
        conv_fn(nd)(x, w, b, stride, padding, dil, groups, layout=lay).shape, dtype)
    pairs = resolve_padding(padding, sp, k, stride, dil)
    ref = conv_nd_reference(x, w, b, stride, pairs, dil, groups, "zeros", lay)
    assert rel_error(outs[0], ref) <= tolerance(dtype, "direct")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    # the channels-last kernel in place: the same bits
    functional._FAST.clear()
    monkeypatch.setattr(_plan, "NHWC_GROUPED_VIA_MAX_OG", 0)
    assert not _plan.nhwc_grouped_via_nchw(spec)
    np.testing.assert_array_equal(
        conv_fn(nd)(x, w, b, stride, padding, dil, groups, layout=lay), outs[0])
    functional._FAST.clear()


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GROUPED_CASES)
def test_grouped_direct_kernel(case, dtype, last):
    from cconv import _plan, _spec
    nd, N, C, O, groups, sp, k, stride, padding, dil = case
    layout = (LAST_LAYOUT if last else DEFAULT_LAYOUT)[nd]
    k = (k,) * nd if isinstance(k, int) else k
    rng = np.random.default_rng(C * 100 + O + nd)
    x = small_int_array(rng, input_shape(layout, N, C, sp), dtype)
    w = small_int_array(rng, weight_shape(layout, O, C // groups, k), dtype)
    b = small_int_array(rng, (O,), dtype)
    pairs = resolve_padding(padding, sp, k, stride, dil)
    ref = conv_nd_reference(x, w, b, stride, pairs, dil, groups, "zeros", layout)
    outs = _thread_counts_agree(
        lambda out: conv_fn(nd)(x, w, b, stride, padding, dil, groups, layout=layout,
                                algorithm="direct", out=out), ref.shape, dtype)
    np.testing.assert_array_equal(outs[0], ref)    # small integers: exact
    spec = _spec.forward_spec("conv", nd, x, w, b, stride, padding, dil, groups, "zeros",
                              layout, "auto")[0]
    if _plan.dilation_phase_spec(spec) is None:
        # auto takes the same kernel for few channels per group
        assert _plan.choose_forward(spec, "auto") is _plan.Algorithm.DIRECT
        np.testing.assert_array_equal(
            conv_fn(nd)(x, w, b, stride, padding, dil, groups, layout=layout), outs[0])
    # float, no bias: against the float64 reference
    xf = rng.standard_normal(x.shape).astype(dtype)
    wf = rng.standard_normal(w.shape).astype(dtype)
    yf = conv_fn(nd)(xf, wf, None, stride, padding, dil, groups, layout=layout,
                     algorithm="direct")
    reff = conv_nd_reference(xf, wf, None, stride, pairs, dil, groups, "zeros", layout)
    assert rel_error(yf, reff) <= tolerance(dtype, "direct")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GROUPED_CASES)
def test_grouped_direct_layouts_agree(case, dtype):
    """The channels-first and channels-last grouped kernels sum in the same order: the
    same bits on float data, with and without bias."""
    nd, N, C, O, groups, sp, k, stride, padding, dil = case
    k = (k,) * nd if isinstance(k, int) else k
    rng = np.random.default_rng(C * 10 + O + nd)
    x = rng.standard_normal(input_shape(DEFAULT_LAYOUT[nd], N, C, sp)).astype(dtype)
    w = rng.standard_normal(weight_shape(DEFAULT_LAYOUT[nd], O, C // groups, k)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    xl = np.moveaxis(x, 1, -1)
    wl = np.transpose(w, tuple(range(2, nd + 2)) + (1, 0))
    for bias in (b, None):
        yf = conv_fn(nd)(x, w, bias, stride, padding, dil, groups, algorithm="direct")
        yl = conv_fn(nd)(xl, wl, bias, stride, padding, dil, groups,
                         layout=LAST_LAYOUT[nd], algorithm="direct")
        np.testing.assert_array_equal(np.moveaxis(yl, -1, 1), yf)


FEW_CHANNEL_NCHW_CASES = [
    # nd, N, C, O, spatial, kernel, stride, padding, dilation, padding_mode
    (2, 3, 3, 32, (17, 19), 3, 1, 1, 1, "zeros"),          # CIFAR-style, edge tiles
    (2, 1, 3, 20, (37, 41), 7, 2, 3, 1, "zeros"),          # stem, 20 = partial lanes
    (2, 2, 1, 8, (23, 16), (5, 3), (1, 2), ((2, 0), (1, 3)), 1, "zeros"),
    (2, 2, 4, 17, (30, 31), 3, 1, 2, 2, "reflect"),
    (1, 2, 2, 33, (101,), 10, 5, 0, 1, "zeros"),           # wav2vec-style 1-D
    (1, 1, 1, 16, (64,), 3, 1, "same", 3, "circular"),
    (3, 1, 4, 9, (9, 8, 10), 3, 2, 1, 1, "replicate"),
    (3, 2, 1, 16, (7, 9, 8), (3, 1, 3), 1, "same", 1, "zeros"),
    # few outputs
    (2, 2, 64, 1, (21, 18), 3, 1, 1, 1, "zeros"),
    (2, 1, 48, 3, (13, 33), (3, 5), (2, 1), "same", (1, 2), "reflect"),
    (2, 3, 130, 4, (9, 9), 3, 1, ((0, 2), (1, 1)), 1, "zeros"),
    (1, 2, 40, 2, (77,), 7, 3, 3, 2, "replicate"),
    (3, 1, 24, 3, (6, 7, 5), 3, 1, 1, 1, "circular"),
]


def _one_group_exact(case, layout, dtype, seed):
    """Small-integer arrays for a one-group case (nd, N, C, O, spatial, kernel, stride,
    padding, dilation, padding_mode); checks "direct" and "auto" exact against the
    reference under 1, 2 and 3 threads. Returns (spec, kernel tuple, resolved pads, x)."""
    from cconv import _spec
    nd, N, C, O, sp, k, stride, padding, dil, mode = case
    k = (k,) * nd if isinstance(k, int) else k
    rng = np.random.default_rng(seed)
    x = small_int_array(rng, input_shape(layout, N, C, sp), dtype)
    w = small_int_array(rng, weight_shape(layout, O, C, k), dtype)
    b = small_int_array(rng, (O,), dtype)
    x0, w0 = x.copy(), w.copy()
    spec = _spec.forward_spec("conv", nd, x, w, b, stride, padding, dil, 1, mode, layout,
                              "auto")[0]
    pairs = resolve_padding(padding, sp, k, stride, dil)
    ref = conv_nd_reference(x, w, b, stride, pairs, dil, 1, mode, layout)
    for algorithm in ("direct", "auto"):
        outs = _thread_counts_agree(
            lambda out: conv_fn(nd)(x, w, b, stride, padding, dil, 1, padding_mode=mode,
                                    layout=layout, algorithm=algorithm, out=out),
            ref.shape, dtype)
        np.testing.assert_array_equal(outs[0], ref)    # small integers: exact
    np.testing.assert_array_equal(x, x0)               # inputs untouched
    np.testing.assert_array_equal(w, w0)
    return spec, k, pairs, x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", FEW_CHANNEL_NCHW_CASES)
def test_few_channel_nchw_grouped_kernel(case, dtype):
    """Channels-first problems with at most _plan.NCHW_FEW_CHANNELS_MAX_C input channels
    or _plan.NCHW_FEW_OUTPUTS_MAX_O output channels (one group) run on the grouped
    kernel with output columns as lanes, under "direct"
    and "auto" on the SIMD paths: exact on small integers, thread-count independent,
    the same bits as im2col on float data, and within the float64 reference's
    tolerance."""
    import cconv
    from cconv import _plan
    nd, N, C, O, sp, _, stride, padding, dil, mode = case
    layout = DEFAULT_LAYOUT[nd]
    spec, k, pairs, x = _one_group_exact(case, layout, dtype, C * 100 + O + nd)
    simd = cconv._im2col.isa_active() != "generic"
    assert _plan.nchw_few_channels(spec) == simd
    if simd:
        assert _plan.grouped_direct(spec) and _plan.grouped_width_lanes(spec)
        if _plan.dilation_phase_spec(spec) is None:
            assert _plan.choose_forward(spec, "auto") is _plan.Algorithm.DIRECT
    rng = np.random.default_rng(1)
    xf = rng.standard_normal(x.shape).astype(dtype)
    wf = rng.standard_normal(weight_shape(layout, O, C, k)).astype(dtype)
    bf = rng.standard_normal(O).astype(dtype)
    y = conv_fn(nd)(xf, wf, bf, stride, padding, dil, 1, padding_mode=mode, layout=layout)
    np.testing.assert_array_equal(
        y, conv_fn(nd)(xf, wf, bf, stride, padding, dil, 1, padding_mode=mode,
                       layout=layout, algorithm="im2col"))
    reff = conv_nd_reference(xf, wf, bf, stride, pairs, dil, 1, mode, layout)
    assert rel_error(y, reff) <= tolerance(dtype, "direct")


FEW_OUTPUT_NHWC_CASES = [
    # nd, N, C, O, spatial, kernel, stride, padding, dilation, padding_mode
    (2, 2, 64, 1, (29, 31), 3, 1, 1, 1, "zeros"),
    (2, 1, 160, 4, (15, 40), (3, 5), (1, 2), "same", (2, 1), "reflect"),
    (1, 2, 48, 3, (400,), 5, 2, ((3, 1),), 1, "zeros"),
    (3, 1, 32, 2, (6, 8, 24), 3, 1, 1, 1, "replicate"),
]


# Channels-last 1x1 layers with few outputs (_kernels/pwfew.h): pixel counts off the
# 16- and 8-pixel blocks, channel counts below, at and past a vector (a channel block past
# C is staged), every output count up to the per-dtype limit, 1-D, 2-D and 3-D.
PWFEW_CASES = [
    # nd, N, C, O, spatial
    (2, 2, 64, 1, (9, 13)),
    (2, 1, 17, 3, (11, 7)),
    (2, 3, 3, 2, (5, 6)),
    (2, 1, 40, 8, (16, 17)),
    (2, 2, 130, 5, (4, 9)),
    (1, 3, 24, 2, (37,)),
    (3, 1, 16, 3, (3, 5, 7)),
]


def _clear_plan_caches():
    from cconv import _plan, functional
    _plan._auto_forward.cache_clear()
    _plan._dilation_phase_spec.cache_clear()
    functional._FAST.clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", PWFEW_CASES)
def test_pointwise_few_outputs_channels_last(case, dtype, monkeypatch):
    """The few-output 1x1 kernel: taken on the SIMD paths up to the per-dtype limit; exact
    on small integers against the reference, equal for 1, 2 and 3 threads, NaN-prefilled
    out, inputs untouched; on float data the same bits as the GEMM it replaced."""
    import cconv
    from cconv import _im2col, _plan, _spec
    nd, N, C, O, sp = case
    limit = _im2col.PWFEW_MAX_O[np.dtype(dtype).itemsize]
    O = min(O, limit)
    layout = LAST_LAYOUT[nd]
    rng = np.random.default_rng(C * 10 + O)
    x = small_int_array(rng, input_shape(layout, N, C, sp), dtype)
    w = small_int_array(rng, weight_shape(layout, O, C, (1,) * nd), dtype)
    b = small_int_array(rng, (O,), dtype)
    x0, w0 = x.copy(), w.copy()
    spec = _spec.forward_spec("conv", nd, x, w, b, 1, 0, 1, 1, "zeros", layout, "auto")[0]
    simd = _im2col.isa_active() != "generic"
    assert _plan.pointwise_few_outputs(spec) == simd
    wide = _spec.forward_spec("conv", nd, x, np.concatenate([w] * (limit + 1), axis=-1)[
        ..., :limit + 1], None, 1, 0, 1, 1, "zeros", layout, "auto")[0]
    assert not _plan.pointwise_few_outputs(wide)
    ref = conv_nd_reference(x, w, b, 1, [(0, 0)] * nd, 1, 1, "zeros", layout)
    outs = _thread_counts_agree(
        lambda out: conv_fn(nd)(x, w, b, layout=layout, out=out), ref.shape, dtype)
    np.testing.assert_array_equal(outs[0], ref)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    xf = rng.standard_normal(x.shape).astype(dtype)
    wf = rng.standard_normal(w.shape).astype(dtype)
    got = conv_fn(nd)(xf, wf, b, layout=layout)
    monkeypatch.setattr(_im2col, "PWFEW", False)
    _clear_plan_caches()
    try:
        assert not _plan.pointwise_few_outputs(spec)
        gemm = conv_fn(nd)(xf, wf, b, layout=layout)
    finally:
        monkeypatch.undo()
        _clear_plan_caches()
    np.testing.assert_array_equal(got, gemm)
    ref = conv_nd_reference(xf, wf, b, 1, [(0, 0)] * nd, 1, 1, "zeros", layout)
    assert rel_error(got, ref) <= tolerance(dtype, "im2col")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", FEW_OUTPUT_NHWC_CASES)
def test_few_output_nhwc_through_channels_first(case, dtype):
    """Channels-last problems with at most _plan.NCHW_FEW_OUTPUTS_MAX_O outputs (one
    group) run the channels-first one-group kernel between transposes under "direct"
    and "auto" on the SIMD paths: exact on small integers, thread-count independent,
    the channels-first layout's bits, within the float64 reference's tolerance; the
    inputs are left as they were."""
    import cconv
    from cconv import _plan
    nd, N, C, O, sp, _, stride, padding, dil, mode = case
    layout = LAST_LAYOUT[nd]
    spec, k, pairs, x = _one_group_exact(case, layout, dtype, C + O + nd)
    simd = cconv._im2col.isa_active() != "generic"
    assert _plan.nhwc_few_outputs(spec) == simd
    if simd:
        assert _plan.grouped_direct(spec) and _plan.nhwc_grouped_via_nchw(spec)
        assert _plan.choose_forward(spec, "auto") is _plan.Algorithm.DIRECT
    rng = np.random.default_rng(2)
    b = rng.standard_normal(O).astype(dtype)
    xf = rng.standard_normal(x.shape).astype(dtype)
    wf = rng.standard_normal(weight_shape(layout, O, C, k)).astype(dtype)
    y = conv_fn(nd)(xf, wf, b, stride, padding, dil, 1, padding_mode=mode, layout=layout)
    if simd:  # the channels-first call runs the same kernel
        yc = conv_fn(nd)(np.moveaxis(xf, -1, 1),
                         np.transpose(wf, (nd + 1, nd) + tuple(range(nd))), b, stride,
                         padding, dil, 1, padding_mode=mode, layout=DEFAULT_LAYOUT[nd])
        np.testing.assert_array_equal(np.moveaxis(yc, 1, -1), y)
    reff = conv_nd_reference(xf, wf, b, stride, pairs, dil, 1, mode, layout)
    assert rel_error(y, reff) <= tolerance(dtype, "direct")


def test_few_channel_nchw_limits():
    """The one-group route stops past NCHW_FEW_CHANNELS_MAX_C input channels and
    NCHW_FEW_OUTPUTS_MAX_O output channels (8 float32, 4 float64), and at 1x1 kernels,
    channels-last layouts and the portable path."""
    import cconv
    from cconv import _plan, _spec

    def spec_of(x, w, layout="NHWC"):
        k = w.shape[0] if layout == "NHWC" else w.shape[-1]
        return _spec.forward_spec("conv2d", 2, x, w, None, 1, k // 2, 1, 1, "zeros", layout,
                                  "auto")[0]

    def few(C, O, dtype=np.float32, layout="NCHW", k=3):
        last = layout == "NHWC"
        x = np.zeros((1, 16, 16, C) if last else (1, C, 16, 16), dtype)
        w = np.zeros((k, k, C, O) if last else (O, C, k, k), dtype)
        return _plan.nchw_few_channels(spec_of(x, w, layout))

    if cconv._im2col.isa_active() == "generic":
        assert not few(3, 32) and not few(64, 1)
        return
    lim = _plan.NCHW_FEW_CHANNELS_MAX_C
    assert few(lim, 32) and not few(lim + 1, 32)
    assert few(64, 8) and not few(64, 9)
    assert few(64, 4, np.float64) and not few(64, 5, np.float64)
    assert not few(3, 32, layout="NHWC") and not few(64, 1, layout="NHWC")
    assert not few(3, 32, k=1) and not few(64, 1, k=1)
    # channels-last few outputs: through channels-first from 32768 input elements and
    # 16-wide outputs
    x, w = np.zeros((2, 16, 16, 64), np.float32), np.zeros((3, 3, 64, 4), np.float32)
    assert _plan.nhwc_few_outputs(spec_of(x, w))
    assert not _plan.nhwc_few_outputs(spec_of(x[:1], w))      # 16384 input elements
    assert not _plan.nhwc_few_outputs(spec_of(np.zeros((4, 16, 15, 64), np.float32), w))
    # channels-first few outputs narrower than 16: up to batch 8
    wc = np.zeros((4, 64, 3, 3), np.float32)
    assert _plan.nchw_few_channels(spec_of(np.zeros((8, 64, 7, 7), np.float32), wc, "NCHW"))
    assert not _plan.nchw_few_channels(spec_of(np.zeros((9, 64, 7, 7), np.float32), wc,
                                               "NCHW"))
    assert _plan.nchw_few_channels(spec_of(np.zeros((9, 64, 7, 16), np.float32), wc, "NCHW"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, O, k, stride, size, expect", [
    (16, 4, 7, 1, 6, "im2col"),     # 343 taps over rows of 6
    (32, 4, 3, 2, 14, "im2col"),    # stride 2: rows of 7
    (16, 4, 3, 1, 8, "direct"),     # 27 taps, stride 1: the kernel
    (16, 4, 7, 1, 16, "direct"),    # rows of 16: the kernel
    (3, 4, 7, 1, 6, "direct"),      # few input channels: the kernel, whatever the rows
])
def test_narrow_3d_few_outputs_auto(dtype, C, O, k, stride, size, expect):
    """Channels-first 3-D layers with few outputs and rows narrower than
    _plan.NCHW_FEW_OUTPUTS_MIN_OW take the grouped kernel only at stride 1 with at most
    _plan.NARROW_3D_MAX_TAPS taps ("auto"; "direct" still runs it); results match the
    reference either way."""
    import cconv
    from cconv import _plan, _spec
    rng = np.random.default_rng(C + k + size)
    x = rng.standard_normal((2, C, size, size, size)).astype(dtype)
    w = rng.standard_normal((O, C, k, k, k)).astype(dtype)
    pad = k // 2
    spec = _spec.forward_spec("conv3d", 3, x, w, None, stride, pad, 1, 1, "zeros", "NCDHW",
                              "auto")[0]
    if cconv._im2col.isa_active() == "generic":
        expect = "im2col"
    assert _plan.choose_forward(spec, "auto").value == expect
    ref = conv_nd_reference(x, w, None, stride, ((pad, pad),) * 3, 1, 1, "zeros", "NCDHW")
    for algo in ("auto", "direct"):
        y = cconv.conv3d(x, w, None, stride, pad, algorithm=algo)
        assert rel_error(y, ref) <= tolerance(dtype, "direct")


def _grouped_spec(layout, C, O, groups, size):
    """The ConvSpec of a 3x3, padding-1 conv2d of a (1, C, size, size) input."""
    from cconv import _spec
    last = layout == "NHWC"
    x = np.zeros((1, size, size, C) if last else (1, C, size, size), np.float32)
    w = np.zeros((3, 3, C // groups, O) if last else (O, C // groups, 3, 3), np.float32)
    return _spec.forward_spec("conv2d", 2, x, w, None, 1, 1, 1, groups, "zeros", layout,
                              "auto")[0]


def test_grouped_direct_auto_limits():
    """"auto" takes the grouped kernel up to 16 channels per group channels-first and
    up to 32 channels-last (where it measured faster than im2col)."""
    from cconv import _plan
    def algo(layout, C, groups):
        return _plan.choose_forward(_grouped_spec(layout, C, C, groups, 14), "auto")
    D = _plan.Algorithm.DIRECT
    assert algo("NCHW", 64, 4) is D and algo("NHWC", 64, 4) is D       # 16 per group
    assert algo("NCHW", 64, 2) is not D and algo("NHWC", 64, 2) is D   # 32 per group
    assert algo("NHWC", 128, 2) is not D                               # 64 per group


def test_grouped_kernel_choice():
    """Channels-first groups of fewer than 8 output channels take the kernel with output
    columns as lanes; everything else the one with a group's channels as lanes (the
    GROUPED_CASES run both, and test_grouped_direct_layouts_agree checks their bits)."""
    from cconv import _plan
    def lanes(layout, C, O, groups):
        return _plan.grouped_width_lanes(_grouped_spec(layout, C, O, groups, 9))
    assert lanes("NCHW", 128, 128, 32) and not lanes("NHWC", 128, 128, 32)
    assert not lanes("NCHW", 256, 256, 32) and not lanes("NCHW", 32, 40, 2)
    assert sum(c[3] // c[4] < 8 for c in GROUPED_CASES) >= 3
    assert sum(c[3] // c[4] >= 8 for c in GROUPED_CASES) >= 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,groups,k,stride", [(1024, 1, 1, 1), (1024, 2, 3, 1),
                                                (512, 1, 3, 2), (2048, 4, 1, 2)])
def test_channels_last_rows_4k_apart(rng, dtype, C, groups, k, stride):
    """Channels-last im2col whose pixel rows are a multiple of 4 KB apart packs its A
    rows (read in place, a tile's rows would share one L1 set): the packed-rows route
    for many channels per tap, small-integer data, exact."""
    x = small_int_array(rng, (2, 5, 7, C), dtype)
    w = small_int_array(rng, (k, k, C // groups, 24), dtype)
    b = small_int_array(rng, (24,), dtype)
    y = conv_fn(2)(x, w, b, stride, k // 2, 1, groups, layout="NHWC", algorithm="im2col")
    ref = conv_nd_reference(x, w, b, (stride, stride), ((k // 2,) * 2,) * 2, (1, 1), groups,
                            layout="NHWC")
    np.testing.assert_array_equal(y, ref.astype(dtype))


def test_layout_routes_stand_aside_for_huge_tensors():
    """The routes through the other layout copy input and output: past
    _plan.VIA_MAX_COPY_BYTES they are not taken (a huge tensor runs in place)."""
    from cconv import _plan, _spec
    def spec(N, L, layout, C=16, O=8, groups=1, k=3):
        last = layout == "NLC"
        x = np.broadcast_to(np.float32(0), (N, L, C) if last else (N, C, L))  # no memory
        w = np.zeros((k, C // groups, O) if last else (O, C // groups, k), np.float32)
        return _spec.forward_spec("conv1d", 1, x, w, None, 1, k // 2, 1, groups, "zeros",
                                  layout, "im2col")[0]
    assert _plan.nhwc_via_nchw(spec(4, 4096, "NLC"))
    assert not _plan.nhwc_via_nchw(spec(4, 2**23, "NLC"))            # 3 GiB of copies
    assert _plan.nhwc_via_nchw(spec(4, 4096, "NLC", C=32, O=32, groups=8))
    assert not _plan.nhwc_via_nchw(spec(64, 2**20, "NLC", C=32, O=32, groups=8))
    assert _plan.nchw_via_nhwc(spec(64, 8, "NCL", C=64, O=64))
    assert not _plan.nchw_via_nhwc(spec(2**17, 8, "NCL", C=256, O=256))
    assert _plan.copies_fit(spec(4, 4096, "NLC"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("C,O", [(1, 1), (3, 7), (64, 256), (128, 33), (129, 40)])
def test_channels_last_pointwise_plain_gemm(dtype, nd, C, O):
    # channels-last 1x1, stride 1, unpadded, one group, at most 128 input channels: one
    # plain GEMM over the input (_im2col._run); 129 channels keep the tile kernels. The
    # same bits as the tile kernels' sums (an output computed through a strided view of
    # the input, which the plain GEMM does not take, agrees exactly), NaN-prefilled out,
    # bias, every thread count
    import cconv
    rng = np.random.default_rng(C * 7 + O + nd)
    sp = (2, 3, 5, 7)[:nd] if nd > 1 else (37,)
    x = rng.standard_normal((3,) + sp + (C,)).astype(dtype)
    w = rng.standard_normal((1,) * nd + (C, O)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    layout = LAST_LAYOUT[nd]
    fn = (cconv.conv1d, cconv.conv2d, cconv.conv3d)[nd - 1]
    ref = conv_nd_reference(x, w, b, 1, ((0, 0),) * nd, 1, 1, "zeros", layout)
    outs = []
    for threads in (1, 2, 3):
        with cconv.num_threads(threads):
            out = np.full(ref.shape, np.nan, dtype)
            y = fn(x, w, b, layout=layout, algorithm="im2col", out=out)
        assert y is out
        outs.append(y)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])
    assert rel_error(outs[0], ref) <= tolerance(dtype, "im2col"), rel_error(outs[0], ref)
    # stride 2 over an input twice as long reads the same pixels through the tile kernels
    xs = np.zeros((3,) + tuple(2 * n - 1 for n in sp) + (C,), dtype)
    xs[(slice(None),) + (slice(None, None, 2),) * nd] = x
    np.testing.assert_array_equal(fn(xs, w, b, 2, layout=layout, algorithm="im2col"), outs[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,C,O,G", [(2, 16, 256, 2), (2, 64, 128, 4), (1, 12, 42, 3),
                                      (3, 24, 48, 3), (2, 256, 8, 8), (2, 64, 96, 4)])
def test_channels_last_grouped_pointwise_gemms(dtype, nd, C, O, G):
    # channels-last grouped 1x1, stride 1, unpadded (under 16 channels per group, or 16
    # with at least 32 outputs each): a GEMM per group and block of 256 pixels, in place
    # (_im2col._pointwise_groups; a partial last block here). The same bits as the
    # grouped direct kernel (both sum each output's channels in order from +0, then add
    # the bias), NaN-prefilled out, every thread count; 32 channels per group, or 16
    # with 24 outputs, keep the tile kernels.
    import cconv
    from cconv import _plan, _spec
    rng = np.random.default_rng(C + O + G + nd)
    sp = {1: (301,), 2: (17, 19), 3: (5, 7, 9)}[nd]
    x = rng.standard_normal((3,) + sp + (C,)).astype(dtype)
    w = rng.standard_normal((1,) * nd + (C // G, O)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    layout = LAST_LAYOUT[nd]
    fn = (cconv.conv1d, cconv.conv2d, cconv.conv3d)[nd - 1]
    spec = _spec.forward_spec(fn.__name__, nd, x, w, None, 1, 0, 1, G, "zeros", layout,
                              "im2col")[0]
    Cg, Og = C // G, O // G
    assert _plan.pointwise_groups(spec) == (Cg < 16 or (Cg == 16 and Og >= 32))
    assert not _plan.nhwc_via_nchw(spec)
    ref = conv_nd_reference(x, w, b, 1, ((0, 0),) * nd, 1, G, "zeros", layout)
    outs = []
    for threads in (1, 2, 3):
        with cconv.num_threads(threads):
            out = np.full(ref.shape, np.nan, dtype)
            y = fn(x, w, b, 1, 0, 1, G, layout=layout, algorithm="im2col", out=out)
        assert y is out
        outs.append(y)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])
    assert rel_error(outs[0], ref) <= tolerance(dtype, "im2col"), rel_error(outs[0], ref)
    if C // G <= 32:
        np.testing.assert_array_equal(
            fn(x, w, b, 1, 0, 1, G, layout=layout, algorithm="direct"), outs[0])


def test_grouped_pointwise_auto_route():
    # "auto" gives channels-last grouped 1x1 problems to im2col when strided or with at
    # least 16 outputs per group in at most 16 groups (_plan.grouped_pointwise_im2col)
    from cconv import _plan, _spec

    def algo(C, O, G, stride=1, layout="NHWC", k=1):
        last = layout == "NHWC"
        x = np.zeros((2, 12, 12, C) if last else (2, C, 12, 12), np.float32)
        w = np.zeros((k, k, C // G, O) if last else (O, C // G, k, k), np.float32)
        return _plan.choose_forward(_spec.forward_spec(
            "conv2d", 2, x, w, None, stride, 0, 1, G, "zeros", layout, "auto")[0], "auto")

    A = _plan.Algorithm
    assert algo(16, 256, 2) is A.IM2COL
    assert algo(64, 256, 4) is A.IM2COL
    assert algo(256, 8, 8, stride=2) is A.IM2COL
    assert algo(64, 64, 8) is A.DIRECT          # 8 outputs per group
    assert algo(128, 128, 8) is A.DIRECT        # 16 channels, 16 outputs: no GEMMs
    assert algo(256, 512, 32) is A.DIRECT       # 32 groups
    assert algo(16, 256, 2, k=3) is A.DIRECT    # a spatial kernel
    assert algo(16, 256, 2, layout="NCHW") is A.DIRECT


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("C,O,G,k,stride,direct", [
    (256, 32, 8, 7, 1, True), (128, 16, 2, 3, 1, True), (192, 24, 3, 3, 2, True),
    (32, 64, 4, 3, 1, True), (96, 32, 2, 3, 1, False), (256, 16, 2, 5, 2, False),
])
def test_grouped_direct_few_outputs(layout, C, O, G, k, stride, direct):
    # groups with at most 8 outputs take the grouped direct kernel up to 64 channels per
    # group (_plan.grouped_direct_pays), 16 (channels-first) or 32 (channels-last)
    # otherwise; "auto" then matches the float64 reference
    import cconv
    from cconv import _plan, _spec
    rng = np.random.default_rng(C + O + G)
    x = rng.standard_normal((2, C, 13, 11)).astype(np.float32)
    w = rng.standard_normal((O, C // G, k, k)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        w = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    spec = _spec.forward_spec("conv2d", 2, x, w, None, stride, k // 2, 1, G, "zeros", layout,
                              "auto")[0]
    assert _plan.grouped_direct_pays(spec) is direct
    assert (_plan.choose_forward(spec, "auto") is _plan.Algorithm.DIRECT) is direct
    ref = conv_nd_reference(x, w, b, stride, ((k // 2, k // 2),) * 2, 1, G, "zeros", layout)
    out = np.full(ref.shape, np.nan, np.float32)
    y = cconv.conv2d(x, w, b, stride, k // 2, 1, G, layout=layout, out=out)
    assert y is out
    assert rel_error(y, ref) <= tolerance(np.float32, "direct")


def test_grouped_direct_wide_groups_not_over_padding():
    # groups of 33-64 channels with few outputs go direct only where im2col's skipping of
    # padding taps would save little (_plan.grouped_direct_pays, pad_skip_exec)
    from cconv import _plan, _spec
    for layout, xs, ws, k, d, p, direct in [
            ("NCDHW", (2, 256, 12, 12, 12), (16, 64, 7, 7, 7), 7, 2, 6, False),
            ("NDHWC", (2, 12, 12, 12, 256), (7, 7, 7, 64, 16), 7, 2, 6, False),
            ("NCDHW", (2, 256, 12, 12, 12), (16, 64, 3, 3, 3), 3, 1, 1, True)]:
        spec = _spec.forward_spec("conv3d", 3, np.zeros(xs, np.float32),
                                  np.zeros(ws, np.float32), None, 1, p, d, 4, "zeros", layout,
                                  "auto")[0]
        assert _plan.grouped_direct_pays(spec) is direct, (layout, ws)
