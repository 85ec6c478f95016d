"""API behaviour of conv1d / conv2d / conv3d: dtypes, array-likes, odd memory layouts,
input immutability, ``out=``, unbatched and empty inputs, result properties."""
import numpy as np
import pytest

from conftest import conv_fn, tolerance
from reference import (DEFAULT_LAYOUT, LAST_LAYOUT, conv_nd_reference, input_shape, rel_error,
                       resolve_padding, weight_shape)

ALGOS = ("auto", "direct", "im2col")
SIZES = {1: (10,), 2: (6, 7), 3: (4, 5, 3)}
KS = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}


def _problem(rng, nd, layout, dtype=np.float64, N=2, C=4, O=5, groups=1):
    x = rng.standard_normal(input_shape(layout, N, C, SIZES[nd])).astype(dtype)
    w = rng.standard_normal(weight_shape(layout, O, C // groups, KS[nd])).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    return x, w, b


def _ref(nd, layout, x, w, b, padding=1, stride=1, dilation=1, groups=1, mode="zeros"):
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    last = layout in ("NLC", "NHWC", "NDHWC")
    sp = x.shape[-nd - 1:-1] if last else x.shape[-nd:]
    k = w.shape[:nd] if last else w.shape[-nd:]
    pairs = resolve_padding(padding, sp, k, stride, dilation)
    return conv_nd_reference(x, w, b, stride, pairs, dilation, groups, mode, layout)


LAYOUT_PARAMS = [pytest.param(nd, lay, id=lay) for nd in (1, 2, 3)
                 for lay in (DEFAULT_LAYOUT[nd], LAST_LAYOUT[nd])]


# ------------------------------------------------------------------------------ dtypes

@pytest.mark.parametrize(
    "xd,wd,bd,expected",
    [
        (np.float16, np.float16, np.float16, np.float32),
        (np.float16, np.float16, None, np.float32),
        (np.float16, np.float32, np.float32, np.float32),
        (np.float32, np.float64, None, np.float64),
        (np.float64, np.float32, np.float32, np.float64),
        (np.float32, np.float32, np.float64, np.float64),
        (np.int32, np.int32, None, np.float64),
        (np.int64, np.int64, np.int64, np.float64),
        (np.int8, np.int16, None, np.float64),
        (np.uint8, np.float64, None, np.float64),
        (np.int16, np.float32, None, np.float32),  # np.result_type(int16, float32) = float32
        (np.int32, np.float32, None, np.float64),  # np.result_type(int32, float32) = float64
    ],
)
@pytest.mark.parametrize("nd,layout", [(2, "NCHW"), (1, "NLC")])
def test_dtype_rules(rng, nd, layout, xd, wd, bd, expected):
    x = rng.integers(-4, 5, input_shape(layout, 2, 3, SIZES[nd])).astype(xd)
    w = rng.integers(-4, 5, weight_shape(layout, 4, 3, KS[nd])).astype(wd)
    b = None if bd is None else rng.integers(-4, 5, 4).astype(bd)
    y = conv_fn(nd)(x, w, b, 1, 1, layout=layout)
    assert y.dtype == np.dtype(expected)
    # the documented rule: np.result_type, then float16 -> float32 and integers -> float64
    rt = np.result_type(*(a for a in (x, w, b) if a is not None))
    if rt == np.float16:
        rt = np.dtype(np.float32)
    elif rt.kind in "iu":
        rt = np.dtype(np.float64)
    assert y.dtype == rt
    ref = _ref(nd, layout, x, w, b)
    assert rel_error(y, ref) <= tolerance(y.dtype, "auto")


@pytest.mark.parametrize("which", ["x", "weight", "bias"])
@pytest.mark.parametrize(
    "bad", [np.complex64, np.complex128, np.bool_, object, "U3", "S3"],
    ids=["complex64", "complex128", "bool", "object", "str", "bytes"],
)
def test_bad_dtypes_raise_typeerror(rng, which, bad):
    x, w, b = _problem(rng, 2, "NCHW")
    args = {"x": x, "weight": w, "bias": b}
    if np.dtype(bad).kind in "US":
        args[which] = args[which].astype(np.float32).astype(bad)
    else:
        args[which] = args[which].astype(bad)
    with pytest.raises(TypeError, match="conv2d"):
        conv_fn(2)(args["x"], args["weight"], args["bias"], 1, 1)


def test_nested_lists_accepted(rng):
    x, w, b = _problem(rng, 2, "NCHW")
    y = conv_fn(2)(x.tolist(), w.tolist(), b.tolist(), 1, 1)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_array_equal(y, conv_fn(2)(x, w, b, 1, 1))
    y1 = conv_fn(1)([[1.0, 2.0, 3.0, 4.0]], [[[1.0, -1.0]]])  # unbatched NCL: C=1, L=4
    np.testing.assert_array_equal(y1, np.array([[-1.0, -1.0, -1.0]]))


# --------------------------------------------------------------- odd memory layouts

def _variants(a):
    """Arrays with the same values as ``a`` but other memory layouts."""
    out = {}
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    out["strided"] = big[..., ::2]
    rev = np.ascontiguousarray(a[..., ::-1])
    out["negative"] = rev[..., ::-1]
    out["fortran"] = np.asfortranarray(a)
    ro = a.copy()
    ro.setflags(write=False)
    out["readonly"] = ro
    out["byteswapped"] = a.astype(a.dtype.newbyteorder())
    if a.ndim >= 2:
        t = np.ascontiguousarray(np.swapaxes(a, 0, -1))
        out["swapped-axes"] = np.swapaxes(t, 0, -1)
    return out


VARIANTS = ("strided", "negative", "fortran", "readonly", "byteswapped", "swapped-axes")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,layout", LAYOUT_PARAMS)
def test_odd_memory_layouts_same_result(rng, nd, layout, dtype, algorithm, variant):
    x, w, b = _problem(rng, nd, layout, dtype)
    fn = conv_fn(nd)
    expected = fn(x, w, b, 1, 1, layout=layout, algorithm=algorithm)
    for which, arr in (("x", x), ("w", w), ("b", b)):
        v = _variants(arr).get(variant)
        if v is None:
            continue
        np.testing.assert_array_equal(v, arr)
        args = {"x": x, "w": w, "b": b}
        args[which] = v
        y = fn(args["x"], args["w"], args["b"], 1, 1, layout=layout, algorithm=algorithm)
        assert y.dtype == np.dtype(dtype) and y.dtype.isnative
        np.testing.assert_array_equal(y, expected, err_msg=f"{which} {variant}")


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("nd,layout", LAYOUT_PARAMS)
def test_inputs_not_modified(rng, nd, layout, algorithm):
    for mode in ("zeros", "reflect", "circular"):
        x, w, b = _problem(rng, nd, layout, np.float32)
        xs, ws, bs = x.copy(), w.copy(), b.copy()
        xv = _variants(x)["strided"]
        xvs = xv.copy()
        conv_fn(nd)(x, w, b, 1, 1, layout=layout, algorithm=algorithm, padding_mode=mode)
        conv_fn(nd)(xv, w, b, 2, "same", layout=layout, algorithm=algorithm, padding_mode=mode)
        np.testing.assert_array_equal(x, xs)
        np.testing.assert_array_equal(w, ws)
        np.testing.assert_array_equal(b, bs)
        np.testing.assert_array_equal(xv, xvs)


# ------------------------------------------------------------------------------ out=

@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,layout", LAYOUT_PARAMS)
def test_out_argument(rng, nd, layout, dtype, algorithm):
    x, w, b = _problem(rng, nd, layout, dtype)
    fn = conv_fn(nd)
    expected = fn(x, w, b, 1, 1, layout=layout, algorithm=algorithm)
    out = np.full(expected.shape, np.nan, dtype=dtype)
    r = fn(x, w, b, 1, 1, layout=layout, algorithm=algorithm, out=out)
    assert r is out
    np.testing.assert_array_equal(out, expected)
    # without bias as well (the kernel must not rely on a zeroed output)
    out2 = np.full(expected.shape, np.nan, dtype=dtype)
    r2 = fn(x, w, None, 1, 1, layout=layout, algorithm=algorithm, out=out2)
    assert r2 is out2
    assert np.all(np.isfinite(out2))
    assert rel_error(out2, _ref(nd, layout, x, w, None)) <= tolerance(dtype, algorithm)


def test_out_bad_arguments(rng):
    fn = conv_fn(2)
    x, w, b = _problem(rng, 2, "NCHW", np.float32)
    good = fn(x, w, b, 1, 1)
    shape = good.shape
    # wrong shape
    with pytest.raises(ValueError, match="out"):
        fn(x, w, b, 1, 1, out=np.empty(shape[:-1] + (shape[-1] + 1,), np.float32))
    with pytest.raises(ValueError, match="out"):
        fn(x, w, b, 1, 1, out=np.empty(shape[1:], np.float32))
    # wrong dtype
    with pytest.raises((ValueError, TypeError), match="out"):
        fn(x, w, b, 1, 1, out=np.empty(shape, np.float64))
    with pytest.raises((ValueError, TypeError), match="out"):
        fn(x, w, b, 1, 1, out=np.empty(shape, np.int32))
    # not C-contiguous
    with pytest.raises(ValueError, match="out"):
        fn(x, w, b, 1, 1, out=np.empty(shape[::-1], np.float32).T)
    with pytest.raises(ValueError, match="out"):
        fn(x, w, b, 1, 1, out=np.empty(shape[:-1] + (2 * shape[-1],), np.float32)[..., ::2])
    # not an array
    with pytest.raises((ValueError, TypeError), match="out"):
        fn(x, w, b, 1, 1, out=np.full(shape, np.nan).tolist())


def test_out_overlapping_input_rejected(rng):
    fn = conv_fn(2)
    # same-shape problem: x (1, 4, 6, 6), 3x3 kernel, padding 1, O = 4 -> out (1, 4, 6, 6)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    xs = x.copy()
    with pytest.raises(ValueError, match="out"):
        fn(x, w, None, 1, 1, out=x)
    np.testing.assert_array_equal(x, xs)
    # partial overlap: out is a view into a buffer that x also lives in
    buf = rng.standard_normal(2 * x.size).astype(np.float32)
    xb = buf[: x.size].reshape(x.shape)
    ob = buf[x.size // 2: x.size // 2 + x.size].reshape(x.shape)
    with pytest.raises(ValueError, match="out"):
        fn(xb, w, None, 1, 1, out=ob)
    # out overlapping the weight
    w2 = rng.standard_normal((2, 4, 1, 1)).astype(np.float32)
    x2 = rng.standard_normal((1, 4, 1, 2)).astype(np.float32)  # out shape (1, 2, 1, 2)
    wbuf = w2.reshape(-1)
    with pytest.raises(ValueError, match="out"):
        fn(x2, w2, None, out=wbuf[:4].reshape(1, 2, 1, 2))


# ---------------------------------------------------------------- shapes and results

@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("nd,layout", LAYOUT_PARAMS)
def test_unbatched(rng, nd, layout, algorithm):
    x, w, b = _problem(rng, nd, layout, np.float64, N=1)
    fn = conv_fn(nd)
    y1 = fn(x[0], w, b, 1, 1, layout=layout, algorithm=algorithm)
    yb = fn(x, w, b, 1, 1, layout=layout, algorithm=algorithm)
    assert y1.shape == yb.shape[1:]
    assert y1.flags.c_contiguous
    np.testing.assert_allclose(y1, yb[0], rtol=1e-12, atol=1e-12)
    assert rel_error(y1, _ref(nd, layout, x[0], w, b)) <= 1e-11


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,layout", LAYOUT_PARAMS)
def test_empty_batch(rng, nd, layout, dtype, algorithm):
    x, w, b = _problem(rng, nd, layout, dtype, N=0)
    y = conv_fn(nd)(x, w, b, 2, 1, layout=layout, algorithm=algorithm)
    ref = _ref(nd, layout, x, w, b, padding=1, stride=2)
    assert y.shape == ref.shape and y.shape[0] == 0
    assert y.dtype == dtype


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("nd,layout", LAYOUT_PARAMS)
def test_zero_channels(rng, nd, layout, algorithm):
    x, w, b = _problem(rng, nd, layout, np.float64, C=0)
    fn = conv_fn(nd)
    y = fn(x, w, b, 1, 1, layout=layout, algorithm=algorithm)
    ref = _ref(nd, layout, x, w, b)
    assert y.shape == ref.shape
    # the reference with C=0 is the bias broadcast over batch and space
    np.testing.assert_array_equal(y, ref)
    bb = b.reshape((-1,) + (1,) * nd) if layout == DEFAULT_LAYOUT[nd] else b
    assert np.all(y == bb)
    y0 = fn(x, w, None, 1, 1, layout=layout, algorithm=algorithm)
    np.testing.assert_array_equal(y0, np.zeros(ref.shape))


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("nd,layout", LAYOUT_PARAMS)
def test_result_is_new_c_contiguous_array(rng, nd, layout, algorithm):
    fn = conv_fn(nd)
    # a 1x1 stride-1 conv is a plain GEMM: the result still must not alias the input
    k = (1,) * nd
    x = rng.standard_normal(input_shape(layout, 2, 4, SIZES[nd]))
    w = rng.standard_normal(weight_shape(layout, 4, 4, k))
    for ww in (w, rng.standard_normal(weight_shape(layout, 3, 4, KS[nd]))):
        y = fn(x, ww, None, layout=layout, algorithm=algorithm)
        assert type(y) is np.ndarray
        assert y.flags.c_contiguous and y.flags.owndata and y.flags.writeable
        assert not np.shares_memory(y, x) and not np.shares_memory(y, ww)
        assert rel_error(y, _ref(nd, layout, x, ww, None, padding=0)) <= 1e-11
    # an identity 1x1 conv returns a copy
    eye = np.eye(4).reshape((4, 4) + k) if layout == DEFAULT_LAYOUT[nd] else \
        np.eye(4).reshape(k + (4, 4))
    y = fn(x, eye, None, layout=layout, algorithm=algorithm)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    # channel axis in the input's layout
    x2 = rng.standard_normal(input_shape(layout, 1, 3, SIZES[nd]))
    w2 = rng.standard_normal(weight_shape(layout, 7, 3, k))
    y2 = fn(x2, w2, None, layout=layout, algorithm=algorithm)
    assert y2.shape == input_shape(layout, 1, 7, SIZES[nd])


def test_keyword_names_and_defaults(rng):
    """The fixed signature: positional order and keyword-only names."""
    x, w, b = _problem(rng, 2, "NCHW")
    fn = conv_fn(2)
    y_pos = fn(x, w, b, 2, 1, 1, 1)
    y_kw = fn(x=x, weight=w, bias=b, stride=2, padding=1, dilation=1, groups=1,
              padding_mode="zeros", layout="NCHW", algorithm="auto", out=None)
    np.testing.assert_array_equal(y_pos, y_kw)
    with pytest.raises(TypeError):
        fn(x, w, b, 1, 0, 1, 1, "zeros")  # padding_mode is keyword-only
    y_def = fn(x, w)
    assert rel_error(y_def, _ref(2, "NCHW", x, w, None, padding=0)) <= 1e-11


# ------------------------------------------------------------------- repeated calls

FAST_CASES = [  # layout, N, C, O, groups, spatial, k, algorithm, remembered
    ("NCHW", 2, 6, 8, 1, (9, 8), (3, 3), "auto", True),         # im2col
    ("NHWC", 1, 64, 64, 8, (7, 9), (3, 3), "auto", True),       # grouped direct
    ("NCHW", 1, 32, 16, 8, (10, 7), (3, 3), "direct", True),    # grouped, column lanes
    ("NHWC", 2, 12, 12, 12, (8, 11), (3, 3), "auto", True),     # depthwise
    ("NCHW", 1, 16, 16, 1, (12, 12), (3, 3), "winograd", True),
    ("NHWC", 2, 3, 5, 1, (6, 7), (3, 2), "direct", True),
    ("NHWC", 1, 16, 32, 2, (9, 9), (3, 3), "im2col", False),    # through channels-first
]


@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: f"{c[0]}-g{c[4]}-{c[7]}")
def test_repeated_calls_take_the_remembered_plan(rng, case):
    """A call seen before runs from functional._FAST (the spec and the bound kernel
    call; not the routes through the other layout). It must give the first call's bits, honour out= and its checks, convert
    dtypes and layouts of the new arrays, and keep one entry per thread count."""
    import cconv
    from cconv import _spec, functional
    layout, N, C, O, g, sp, k, algo, remembered = case
    x = rng.standard_normal(input_shape(layout, N, C, sp)).astype(np.float32)
    w = rng.standard_normal(weight_shape(layout, O, C // g, k)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    call = lambda x_, out=None: cconv.conv2d(x_, w, b, 1, 1, 1, g, layout=layout,  # noqa
                                             algorithm=algo, out=out)
    key = _spec._forward_key("conv2d", 2, x, w, b, 1, 1, 1, g, "zeros", layout, algo)
    functional._FAST.clear()
    first = call(x)
    entries = [kk for kk in functional._FAST if kk[0] == key]
    assert len(entries) == remembered
    fast = call(x)
    assert fast is not first
    np.testing.assert_array_equal(fast, first)
    err = rel_error(fast, _ref(2, layout, x, w, b, groups=g))
    assert err <= tolerance(np.float32, algo), err
    # out=: filled in place, every check still made
    out = np.full_like(first, np.nan)
    assert call(x, out) is out
    np.testing.assert_array_equal(out, first)
    with pytest.raises(ValueError, match="out has shape"):
        call(x, np.empty(first.shape[:-1] + (first.shape[-1] + 1,), np.float32))
    with pytest.raises(TypeError, match="out has dtype"):
        call(x, np.empty(first.shape, np.float64))
    buf = np.zeros(x.size + first.size - 1, np.float32)  # x and out share an element
    xv = buf[:x.size].reshape(x.shape)
    xv[...] = x
    with pytest.raises(ValueError, match="out overlaps x"):
        call(xv, buf[x.size - 1:].reshape(first.shape))
    # a non-contiguous array of the same shape and dtype shares the key
    xs = np.empty(x.shape[:-1] + (2 * x.shape[-1],), np.float32)[..., ::2]
    xs[...] = x
    np.testing.assert_array_equal(call(xs), first)
    # another thread count: its own entry, the same bits
    with cconv.num_threads(1):
        np.testing.assert_array_equal(call(x), first)
    assert len([kk for kk in functional._FAST if kk[0] == key]) == 2 * remembered


def test_repeated_calls_with_padding_modes_and_phases_stay_on_the_full_path(rng,
                                                                            monkeypatch):
    import cconv
    from cconv import _plan, _spec, functional
    monkeypatch.setattr(_plan, "PHASE_COPY_COST", {False: 0.0, True: 0.0})
    x = rng.standard_normal((2, 64, 40, 40))
    w = rng.standard_normal((64, 64, 3, 3))
    spec = _spec.forward_spec("conv2d", 2, x, w, None, 1, 2, 2, 1, "zeros", "NCHW", "auto")[0]
    assert _plan.dilation_phase_spec(spec) is not None  # "auto" runs the phase route
    functional._FAST.clear()
    y1 = cconv.conv2d(x, w, None, 1, 1, padding_mode="reflect")
    y2 = cconv.conv2d(x, w, None, 1, 2, dilation=2)
    assert not functional._FAST
    np.testing.assert_array_equal(cconv.conv2d(x, w, None, 1, 1, padding_mode="reflect"), y1)
    np.testing.assert_array_equal(cconv.conv2d(x, w, None, 1, 2, dilation=2), y2)
    assert rel_error(y1, _ref(2, "NCHW", x, w, None, mode="reflect")) <= 1e-12
    assert rel_error(y2, _ref(2, "NCHW", x, w, None, padding=2, dilation=2)) <= 1e-12
