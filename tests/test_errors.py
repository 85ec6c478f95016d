"""The error table: every bad argument raises ValueError / TypeError before any work,
with a message that names the function, the argument and the numbers involved.

Messages are matched with a few regexes (function name, argument, values), never with
whole sentences.
"""
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from conftest import conv_fn

F32 = np.float32


def _x(shape):
    return np.ones(shape, F32)


def check_raises(exc, call, *patterns, out=None):
    """Run ``call``; it must raise ``exc``; the message must match every pattern.
    If ``out`` is given (pre-filled with NaN), it must be untouched: no work was done."""
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for p in patterns:
        assert re.search(p, msg, flags=re.IGNORECASE), f"{p!r} not in message {msg!r}"
    if out is not None:
        assert np.all(np.isnan(out)), "output was written before the error was raised"
    return msg


def num(n):
    """A regex for the integer n as a whole number."""
    return rf"(?<![\d.]){re.escape(str(n))}(?![\d.])"


# ------------------------------------------------------------------------------ shapes

@pytest.mark.parametrize(
    "nd,xshape,layout",
    [(2, (3, 8), "NCHW"), (2, (1, 1, 3, 8, 8), "NCHW"), (2, (8,), "NHWC"), (1, (1, 2, 3, 4), "NCL"),
     (1, (5,), "NLC"), (3, (1, 2, 4), "NCDHW"), (3, (1, 1, 2, 4, 4, 4), "NDHWC")],
)
def test_wrong_input_ndim(nd, xshape, layout):
    k = (1,) * nd
    C = xshape[1] if len(xshape) == nd + 2 and layout.startswith("NC") else 2
    w = np.ones((2, C) + k, F32) if layout.startswith("NC") else np.ones(k + (C, 2), F32)
    check_raises(ValueError, lambda: conv_fn(nd)(_x(xshape), w, layout=layout),
                 rf"conv{nd}d", num(len(xshape)))


@pytest.mark.parametrize("nd,wshape", [(2, (4, 3, 3)), (2, (4, 3, 3, 3, 3)), (1, (4, 3)),
                                       (1, (4, 3, 3, 3)), (3, (4, 3, 3, 3))])
def test_wrong_weight_ndim(nd, wshape):
    x = _x((1, 3) + (6,) * nd)
    check_raises(ValueError, lambda: conv_fn(nd)(x, np.ones(wshape, F32)),
                 rf"conv{nd}d", "weight", num(len(wshape)))


def test_channel_mismatch_example_message():
    x = _x((1, 3, 8, 8))
    w = np.ones((4, 2, 3, 3), F32)
    msg = check_raises(ValueError, lambda: conv_fn(2)(x, w, groups=2),
                       "conv2d", "channel", num(3), num(4), num(2))
    # the numbers appear in the DESIGN.md order: input 3, expects 4, 2 x groups=2
    assert re.search(r"3.*4.*2.*2", msg), msg


@pytest.mark.parametrize(
    "nd,layout,xshape,wshape,groups,C,expect",
    [
        (2, "NCHW", (1, 3, 8, 8), (4, 2, 3, 3), 2, 3, 4),
        (2, "NHWC", (1, 8, 8, 3), (3, 3, 2, 4), 2, 3, 4),
        (2, "NCHW", (2, 5, 8, 8), (4, 4, 3, 3), 1, 5, 4),
        (1, "NCL", (1, 6, 9), (6, 4, 3), 1, 6, 4),
        (1, "NLC", (9, 6), (3, 1, 6), 3, 6, 3),  # unbatched
        (3, "NCDHW", (1, 4, 5, 5, 5), (8, 2, 3, 3, 3), 4, 4, 8),
        (3, "NDHWC", (1, 5, 5, 5, 7), (3, 3, 3, 7, 2), 2, 7, 14),
    ],
)
def test_channel_mismatch(nd, layout, xshape, wshape, groups, C, expect):
    call = lambda: conv_fn(nd)(_x(xshape), np.ones(wshape, F32), groups=groups, layout=layout)  # noqa
    check_raises(ValueError, call, rf"conv{nd}d", "channel", num(C), num(expect))


def test_channel_mismatch_empty_batch_still_raises():
    check_raises(ValueError, lambda: conv_fn(2)(_x((0, 3, 8, 8)), np.ones((4, 2, 3, 3), F32)),
                 "conv2d", "channel", num(3))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_out_channels_not_divisible_by_groups(layout):
    x = _x((1, 4, 6, 6)) if layout == "NCHW" else _x((1, 6, 6, 4))
    w = np.ones((5, 2, 3, 3), F32) if layout == "NCHW" else np.ones((3, 3, 2, 5), F32)
    check_raises(ValueError, lambda: conv_fn(2)(x, w, groups=2, layout=layout),
                 "conv2d", "group", num(5), num(2))


@pytest.mark.parametrize("groups", [0, -1, -4])
def test_groups_below_one(groups):
    x = _x((1, 4, 6, 6))
    w = np.ones((4, 4, 3, 3), F32)
    check_raises(ValueError, lambda: conv_fn(2)(x, w, groups=groups), "conv2d", "groups",
                 re.escape(str(groups)))


@pytest.mark.parametrize("groups", ["2", None, 2.5])
def test_groups_not_int(groups):
    x = _x((1, 4, 6, 6))
    w = np.ones((4, 2, 3, 3), F32)
    check_raises((TypeError, ValueError), lambda: conv_fn(2)(x, w, groups=groups),
                 "conv2d", "groups")


# ------------------------------------------------------------------- stride / dilation

@pytest.mark.parametrize("arg", ["stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, (1, 0), (-2, 1), (0, 0)])
def test_stride_dilation_below_one(arg, value):
    x = _x((1, 2, 8, 8))
    w = np.ones((3, 2, 3, 3), F32)
    bad = [v for v in np.atleast_1d(value) if v < 1][0]
    check_raises(ValueError, lambda: conv_fn(2)(x, w, **{arg: value}), "conv2d", arg,
                 re.escape(str(bad)))


@pytest.mark.parametrize("arg", ["stride", "dilation"])
@pytest.mark.parametrize("nd,value", [(2, (1, 1, 1)), (2, (2,)), (1, (1, 1)), (3, (1, 2)),
                                      (2, ())])
def test_stride_dilation_wrong_length(arg, nd, value):
    x = _x((1, 2) + (8,) * nd)
    w = np.ones((3, 2) + (3,) * nd, F32)
    check_raises(ValueError, lambda: conv_fn(nd)(x, w, **{arg: value}), rf"conv{nd}d", arg,
                 num(len(value)) + "|" + re.escape(repr(value)))


@pytest.mark.parametrize("arg", ["stride", "dilation"])
@pytest.mark.parametrize("value", [1.5, "2", (1, 1.5), None, (1, "1")])
def test_stride_dilation_not_int(arg, value):
    x = _x((1, 2, 8, 8))
    w = np.ones((3, 2, 3, 3), F32)
    check_raises((TypeError, ValueError), lambda: conv_fn(2)(x, w, **{arg: value}),
                 "conv2d", arg)


def test_numpy_integer_arguments_accepted():
    x = np.ones((1, 2, 8, 8), F32)
    w = np.ones((3, 2, 3, 3), F32)
    y = conv_fn(2)(x, w, None, np.int64(2), (np.int32(1), 1), np.int8(1), np.int64(1))
    assert y.shape == (1, 3, 4, 4)


# ----------------------------------------------------------------------------- padding

@pytest.mark.parametrize("padding,bad", [(-1, -1), ((1, -2), -2), (((0, -1), (0, 0)), -1),
                                         (((1, 1), (-3, 0)), -3)])
def test_negative_padding(padding, bad):
    x = _x((1, 2, 8, 8))
    w = np.ones((3, 2, 3, 3), F32)
    check_raises(ValueError, lambda: conv_fn(2)(x, w, padding=padding), "conv2d", "padding",
                 re.escape(str(bad)))


@pytest.mark.parametrize("nd,padding", [(2, (1, 2, 3)), (2, ((1, 2, 3), (0, 0))), (2, ((1,), (1, 1))),
                                        (1, (1, 1)), (3, (1, 1)), (2, ((1, 1),)),
                                        (1, ((1, 1), (1, 1)))])
def test_padding_wrong_length(nd, padding):
    x = _x((1, 2) + (8,) * nd)
    w = np.ones((3, 2) + (3,) * nd, F32)
    check_raises(ValueError, lambda: conv_fn(nd)(x, w, padding=padding), rf"conv{nd}d",
                 "padding")


@pytest.mark.parametrize("padding", [1.5, None, (1.5, 1), [[1, "a"], [0, 0]]])
def test_padding_bad_type(padding):
    x = _x((1, 2, 8, 8))
    w = np.ones((3, 2, 3, 3), F32)
    check_raises((TypeError, ValueError), lambda: conv_fn(2)(x, w, padding=padding),
                 "conv2d", "padding")


@pytest.mark.parametrize("padding", ["full", "", "causall", "half"])
def test_unknown_padding_string(padding):
    x = _x((1, 2, 8, 8))
    w = np.ones((3, 2, 3, 3), F32)
    check_raises(ValueError, lambda: conv_fn(2)(x, w, padding=padding), "conv2d", "padding",
                 re.escape(repr(padding)) + "|" + (re.escape(padding) or "''"))


@pytest.mark.parametrize("nd", [2, 3])
def test_causal_only_for_conv1d(nd):
    x = _x((1, 2) + (8,) * nd)
    w = np.ones((3, 2) + (3,) * nd, F32)
    check_raises(ValueError, lambda: conv_fn(nd)(x, w, padding="causal"), rf"conv{nd}d",
                 "causal")


def test_causal_conv1d_accepted():
    y = conv_fn(1)(np.ones((1, 1, 5)), np.ones((1, 1, 3)), padding="causal")
    np.testing.assert_array_equal(y, [[[1.0, 2.0, 3.0, 3.0, 3.0]]])


@pytest.mark.parametrize(
    "nd,sp,k,padding,dilation,padded,eff",
    [(2, (5, 5), (7, 7), 0, 1, 5, 7), (2, (5, 8), (3, 9), 0, 1, 8, 9),
     (2, (5, 5), (7, 7), ((0, 1), (1, 0)), 1, 6, 7), (1, (4,), (3,), 0, 2, 4, 5),
     (3, (4, 4, 2), (1, 1, 3), 0, 1, 2, 3)],
)
def test_kernel_larger_than_padded_input(nd, sp, k, padding, dilation, padded, eff):
    """Output size < 1: the message names the (padded) input size and the (dilated) kernel."""
    x = _x((1, 2) + sp)
    w = np.ones((3, 2) + k, F32)
    raw_in = [s_ for s_, e in zip(sp, k)]
    check_raises(ValueError, lambda: conv_fn(nd)(x, w, padding=padding, dilation=dilation),
                 rf"conv{nd}d", "|".join(num(v) for v in set([padded] + raw_in)),
                 num(eff) + "|" + "|".join(num(v) for v in k))


@pytest.mark.parametrize("mode", ["mirror", "zero", "", "wrap", None])
def test_unknown_padding_mode(mode):
    x = _x((1, 2, 8, 8))
    w = np.ones((3, 2, 3, 3), F32)
    check_raises((ValueError, TypeError), lambda: conv_fn(2)(x, w, padding=1, padding_mode=mode),
                 "conv2d", "padding_mode")


@pytest.mark.parametrize(
    "nd,sp,k,padding,bad",
    [(2, (3, 8), (3, 3), 3, 3), (2, (8, 3), (3, 3), ((0, 0), (0, 4)), 4), (1, (2,), (3,), 2, 2),
     (1, (5,), (6,), "causal", 5), (3, (2, 5, 5), (3, 3, 3), 2, 2)],
)
def test_reflect_padding_too_large(nd, sp, k, padding, bad):
    """PyTorch's rule: reflect padding must be smaller than the input size."""
    x = _x((1, 2) + sp)
    w = np.ones((3, 2) + k, F32)
    check_raises(ValueError, lambda: conv_fn(nd)(x, w, padding=padding, padding_mode="reflect"),
                 rf"conv{nd}d", "reflect", num(bad))


@pytest.mark.parametrize(
    "nd,layout",
    [(2, "NCWH"), (2, "NCHWC"), (2, "NCL"), (2, "NDHWC"), (1, "NCHW"), (1, "NHWC"), (3, "NHWC"),
     (3, "NCHW"), (2, ""), (2, None)],
)
def test_bad_layout(nd, layout):
    x = _x((1, 2) + (6,) * nd)
    w = np.ones((3, 2) + (3,) * nd, F32)
    check_raises((ValueError, TypeError), lambda: conv_fn(nd)(x, w, layout=layout),
                 rf"conv{nd}d", "layout")


@pytest.mark.parametrize("algorithm", ["magic", "gemm2", "", None])
def test_unknown_algorithm(algorithm):
    x = _x((1, 2, 8, 8))
    w = np.ones((3, 2, 3, 3), F32)
    check_raises((ValueError, TypeError), lambda: conv_fn(2)(x, w, algorithm=algorithm),
                 "conv2d", "algorithm")


@pytest.mark.parametrize(
    "k,kwargs",
    [((5, 5), {}), ((3, 3), {"stride": 2}), ((3, 3), {"dilation": 2}), ((1, 1), {}),
     ((3, 5), {}), ((3, 3), {"stride": (1, 2)})],
    ids=["5x5", "stride2", "dilation2", "1x1", "3x5", "stride1x2"],
)
def test_winograd_limits(k, kwargs):
    """Winograd is 3x3 / stride 1 / dilation 1 only; the error names the algorithm."""
    x = _x((1, 2, 12, 12))
    w = np.ones((3, 2) + k, F32)
    out = None
    check_raises(ValueError, lambda: conv_fn(2)(x, w, padding=1, algorithm="winograd", **kwargs),
                 "winograd", out=out)


@pytest.mark.parametrize("bshape", [(4,), (2,), (3, 1), (1, 3), (), (6,)])
def test_bias_wrong_shape(bshape):
    x = _x((1, 2, 8, 8))
    w = np.ones((3, 2, 3, 3), F32)
    check_raises(ValueError, lambda: conv_fn(2)(x, w, np.ones(bshape, F32)), "conv2d", "bias",
                 num(3))


@pytest.mark.parametrize("which", ["x", "weight"])
@pytest.mark.parametrize("value", [None, "abc", object()], ids=["None", "str", "object"])
def test_non_array_inputs(which, value):
    args = {"x": _x((1, 2, 8, 8)), "weight": np.ones((3, 2, 3, 3), F32)}
    args[which] = value
    check_raises((TypeError, ValueError), lambda: conv_fn(2)(args["x"], args["weight"]), "conv2d")


def test_ragged_list_input():
    check_raises((TypeError, ValueError),
                 lambda: conv_fn(1)([[1.0, 2.0], [3.0]], np.ones((1, 2, 1))), "conv1d")


# ------------------------------------------------------------ no work before the error

@pytest.mark.parametrize(
    "kwargs,pattern",
    [({"padding_mode": "mirror"}, "padding_mode"), ({"algorithm": "magic"}, "algorithm"),
     ({"bias": np.ones(4, F32)}, "bias"), ({"groups": 0}, "groups"),
     ({"padding_mode": "reflect", "padding": 1, "x": _x((2, 4, 1, 10))}, "reflect"),
     ({"layout": "NCL"}, "layout")],
)
def test_error_before_output_written(kwargs, pattern):
    """With a correctly shaped NaN-filled ``out``, a bad argument leaves it untouched."""
    kw = dict(kwargs)
    x = kw.pop("x", _x((2, 4, 10, 10)))
    bias = kw.pop("bias", None)
    w = np.ones((3, 4, 3, 3), F32)
    pad = kw.pop("padding", 1)
    shape = (x.shape[0], 3, x.shape[2] + 2 * pad - 2, x.shape[3] + 2 * pad - 2)
    out = np.full(shape, np.nan, F32)
    check_raises((ValueError, TypeError), lambda: conv_fn(2)(x, w, bias, 1, pad, out=out, **kw),
                 "conv2d", pattern, out=out)


# ------------------------------------------------------ hypothesis: random invalid configs

MUTATIONS = ["stride0", "dilation_neg", "groups0", "pad_neg", "mode", "layout", "algo",
             "bias", "channels", "ochannels", "xndim", "wndim", "big_kernel", "stride_len"]


@st.composite
def invalid_cases(draw):
    nd = draw(st.sampled_from([1, 2, 3]))
    groups = draw(st.sampled_from([1, 2, 3]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    C, O = cg * groups, og * groups
    sp = tuple(draw(st.integers(3, 6)) for _ in range(nd))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    kw = dict(stride=1, padding=1, dilation=1, groups=groups)
    xshape = (1, C) + sp
    wshape = (O, cg) + k
    bshape = (O,)
    m = draw(st.sampled_from(MUTATIONS))
    if m == "stride0":
        kw["stride"] = 0
    elif m == "dilation_neg":
        kw["dilation"] = -draw(st.integers(1, 3))
    elif m == "groups0":
        kw["groups"] = 0
    elif m == "pad_neg":
        kw["padding"] = -draw(st.integers(1, 3))
    elif m == "mode":
        kw["padding_mode"] = draw(st.sampled_from(["wrap", "edge", "symmetric"]))
    elif m == "layout":
        kw["layout"] = draw(st.sampled_from(["NCL", "NCHW", "NCDHW"]).filter(
            lambda s: len(s) != nd + 2))
    elif m == "algo":
        kw["algorithm"] = draw(st.sampled_from(["fast", "gemm", "naive"]))
    elif m == "bias":
        bshape = (O + draw(st.integers(1, 3)),)
    elif m == "channels":
        xshape = (1, C + draw(st.integers(1, 3))) + sp
    elif m == "ochannels":
        if groups == 1:
            kw["groups"] = groups = 2
            xshape = (1, 2 * cg) + sp
            O = 2 * og
        wshape = (O + 1,) + wshape[1:]  # O + 1 is not a multiple of groups >= 2
    elif m == "xndim":
        xshape = xshape + (2,)
    elif m == "wndim":
        wshape = wshape[:-1]
    elif m == "big_kernel":
        wshape = (O, cg) + tuple(s + 3 for s in sp)
    elif m == "stride_len":
        kw["stride"] = (1,) * (nd + 1)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return nd, m, np.ones(xshape, dtype), np.ones(wshape, dtype), np.ones(bshape, dtype), kw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_cases())
def test_random_invalid_configs_raise(case):
    nd, m, x, w, b, kw = case
    with pytest.raises((ValueError, TypeError)) as info:
        conv_fn(nd)(x, w, b, **kw)
    assert f"conv{nd}d" in str(info.value), (m, str(info.value))


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_cases())
def test_random_invalid_configs_raise_long(case):
    """The same sweep at 1000 examples (issue: invalid-argument fuzzing)."""
    nd, m, x, w, b, kw = case
    with pytest.raises((ValueError, TypeError, MemoryError)) as info:
        conv_fn(nd)(x, w, b, **kw)
    assert f"conv{nd}d" in str(info.value), (m, str(info.value))


def test_validation_cache_never_skips_a_check():
    """forward_spec remembers validated calls by shapes, dtypes and exact argument
    values; look-alike arguments of other types and changed arrays are checked again."""
    from cconv import _spec
    x = _x((1, 4, 8, 8))
    w = np.ones((6, 2, 3, 3), F32)
    b = np.ones(6, F32)
    y = conv_fn(2)(x, w, b, 1, 1, 1, 2)
    assert y.shape == (1, 6, 8, 8) and y.dtype == F32
    key = _spec._forward_key("conv2d", 2, x, w, b, 1, 1, 1, 2, "zeros", "NCHW", "auto")
    assert key in _spec._SPEC_CACHE
    check_raises(TypeError, lambda: conv_fn(2)(x, w, b, True, 1, 1, 2), "conv2d", "stride")
    check_raises(TypeError, lambda: conv_fn(2)(x, w, b, 1.0, 1, 1, 2), "conv2d", "stride")
    check_raises(TypeError, lambda: conv_fn(2)(x, w, b, 1, 1, 1, True), "conv2d", "groups")
    check_raises(ValueError, lambda: conv_fn(2)(x, w, np.ones(5, F32), 1, 1, 1, 2),
                 "conv2d", "bias", num(6))
    check_raises(ValueError, lambda: conv_fn(2)(x, np.ones((6, 4, 3, 3), F32), b, 1, 1, 1, 2),
                 "conv2d", num(4), num(8))
    check_raises(ValueError, lambda: conv_fn(2)(_x((1, 4, 2, 2)), w, b, 1, 0, 1, 2),
                 "conv2d", "kernel")
    # the same shapes in another dtype: a spec of its own
    y64 = conv_fn(2)(x.astype(np.float64), w, b, 1, 1, 1, 2)
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64, y, rtol=1e-6)
    # numpy integers are accepted, through the uncached path
    assert _spec._forward_key("conv2d", 2, x, w, b, np.int64(1), 1, 1, 2, "zeros", "NCHW",
                              "auto") is None
    np.testing.assert_array_equal(conv_fn(2)(x, w, b, np.int64(1), 1, 1, 2), y)
