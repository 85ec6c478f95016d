"""Transposed convolutions conv_transpose1d/2d/3d and their backward passes.

PyTorch's semantics: weight (C_in, C_out/groups, *k) for channels-first layouts,
(*k, C_out/groups, C_in) for channels-last (DESIGN.md's table); output size
(in - 1)*stride - pad_before - pad_after + (k - 1)*dilation + 1 + output_padding.
"""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from reference import DEFAULT_LAYOUT, LAST_LAYOUT, rel_error

cconv = pytest.importorskip("cconv")


def tfns(nd):
    return (getattr(cconv, f"conv_transpose{nd}d"),
            getattr(cconv, f"conv_transpose{nd}d_grad_input"),
            getattr(cconv, f"conv_transpose{nd}d_grad_weight"),
            getattr(cconv, f"conv_transpose{nd}d_backward"))


def tshapes(layout, nd, N, Cin, Cout, G, sp, k, batched=True):
    last = layout == LAST_LAYOUT[nd]
    xs = tuple(sp) + (Cin,) if last else (Cin,) + tuple(sp)
    if batched:
        xs = (N,) + xs
    ws = tuple(k) + (Cout // G, Cin) if last else (Cin, Cout // G) + tuple(k)
    return xs, ws


def to_first(a, nd, batched=True):
    """channels-last array -> channels-first."""
    return np.moveaxis(a, -1, 1 if batched else 0)


def to_last(a, nd, batched=True):
    return np.moveaxis(a, 1 if batched else 0, -1)


def torch_weight(w, nd, last):
    # (*k, C_out/g, C_in) -> (C_in, C_out/g, *k)
    return np.transpose(w, (nd + 1, nd) + tuple(range(nd))) if last else w


# ----------------------------------------------------------------------------- sweep

@st.composite
def transpose_problems(draw):
    nd = draw(st.sampled_from([1, 2, 3]))
    layout = draw(st.sampled_from([DEFAULT_LAYOUT[nd], LAST_LAYOUT[nd]]))
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "dense":
        G, Cin, Cout = 1, draw(st.integers(1, 5)), draw(st.integers(1, 5))
    elif kind == "grouped":
        G = draw(st.integers(2, 3))
        Cin, Cout = G * draw(st.integers(1, 3)), G * draw(st.integers(1, 3))
    else:
        G = Cin = draw(st.integers(2, 5))
        Cout = Cin * draw(st.integers(1, 2))
    small = 3 if nd == 3 else 6
    sp = tuple(draw(st.integers(1, small)) for _ in range(nd))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(stride, dilation))
    pform = draw(st.sampled_from(["int", "pairs", "same", "valid"]))
    if pform == "int":
        padding = draw(st.integers(0, 2))
    elif pform == "pairs":
        padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
    else:
        padding = pform
    if pform == "same":
        output_padding = 0
    N = draw(st.sampled_from([0, 1, 1, 2]))
    batched = draw(st.booleans()) if N == 1 else True
    return dict(nd=nd, layout=layout, N=N, Cin=Cin, Cout=Cout, G=G, sp=sp, k=k,
                stride=stride, dilation=dilation, padding=padding,
                output_padding=output_padding, batched=batched)


def targs(p):
    return (p["stride"], p["padding"], p["output_padding"], p["G"], p["dilation"])


def check_transpose_adjoint(p, seed, sweep=True):
    rng = np.random.default_rng(seed)
    nd = p["nd"]
    xs, ws = tshapes(p["layout"], nd, p["N"], p["Cin"], p["Cout"], p["G"], p["sp"], p["k"],
                     p["batched"])
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    fwd, gi_fn, gw_fn, bwd_fn = tfns(nd)
    try:
        y = fwd(x, w, None, *targs(p), layout=p["layout"])
    except ValueError:
        if sweep:
            assume(False)
        raise
    g = rng.standard_normal(y.shape)
    gi = gi_fn(g, w, x.shape, *targs(p), layout=p["layout"])
    gw = gw_fn(x, g, w.shape, *targs(p), layout=p["layout"])
    assert gi.shape == x.shape and gw.shape == w.shape
    lhs = float(np.vdot(y, g))
    scale = max(np.linalg.norm(y) * np.linalg.norm(g), 1e-300)
    assert abs(lhs - float(np.vdot(x, gi))) <= 1e-10 * scale
    assert abs(lhs - float(np.vdot(w, gw))) <= 1e-10 * scale
    bi, bw, bb = bwd_fn(g, x, w, *targs(p), layout=p["layout"])
    np.testing.assert_array_equal(bi, gi)
    np.testing.assert_array_equal(bw, gw)
    assert bb.shape == (p["Cout"],)
    if "same" == p["padding"]:
        assert y.shape[1:-1] == tuple(n * s for n, s in zip(x.shape[1:-1], p["stride"])) \
            if p["layout"] == LAST_LAYOUT[nd] and p["batched"] else True
    return x, w, y


@given(p=transpose_problems(), seed=st.integers(0, 2**31))
@settings(max_examples=100)
def test_transpose_adjoint_sweep(p, seed):
    check_transpose_adjoint(p, seed)


@pytest.mark.slow
@given(p=transpose_problems(), seed=st.integers(0, 2**31))
@settings(max_examples=1500)
def test_transpose_adjoint_sweep_long(p, seed):
    check_transpose_adjoint(p, seed)


@given(p=transpose_problems(), seed=st.integers(0, 2**31))
@settings(max_examples=40)
def test_transpose_sweep_against_torch(p, seed):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    assume(not isinstance(p["padding"], str) or p["padding"] == "valid")
    assume(not (isinstance(p["padding"], tuple) and any(b != a for b, a in p["padding"])))
    assume(p["N"] > 0)
    rng = np.random.default_rng(seed)
    nd = p["nd"]
    last = p["layout"] == LAST_LAYOUT[nd]
    xs, ws = tshapes(p["layout"], nd, p["N"], p["Cin"], p["Cout"], p["G"], p["sp"], p["k"],
                     p["batched"])
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(p["Cout"])
    pad = p["padding"]
    tpad = 0 if pad == "valid" else (tuple(q[0] for q in pad) if isinstance(pad, tuple)
                                     else pad)
    xt = to_first(x, nd, p["batched"]) if last else x
    try:
        ref = getattr(F, f"conv_transpose{nd}d")(
            torch.from_numpy(np.ascontiguousarray(xt)),
            torch.from_numpy(np.ascontiguousarray(torch_weight(w, nd, last))),
            torch.from_numpy(b), p["stride"], tpad, p["output_padding"], p["G"],
            p["dilation"]).numpy()
    except RuntimeError:
        with pytest.raises(ValueError):
            tfns(nd)[0](x, w, b, *targs(p), layout=p["layout"])
        return
    if last:
        ref = to_last(ref, nd, p["batched"])
    y = tfns(nd)[0](x, w, b, *targs(p), layout=p["layout"])
    assert y.shape == ref.shape
    assert rel_error(y, ref) <= 1e-12


# ----------------------------------------------------------------------------- torch

CASES = [
    # nd, N, Cin, Cout, G, sp, k, stride, padding, output_padding, dilation
    (2, 2, 6, 4, 2, (5, 7), (3, 3), 2, 1, 1, 1),
    (2, 1, 8, 8, 8, (6, 6), (4, 4), 2, 1, 0, 1),
    (2, 3, 5, 7, 1, (4, 5), (3, 2), (3, 2), (0, 1), (2, 1), (1, 2)),
    (2, 2, 9, 6, 3, (5, 5), (1, 1), 1, 0, 0, 1),
    (1, 2, 4, 6, 2, (9,), (5,), 4, 2, 3, 1),
    (1, 1, 3, 3, 1, (6,), (3,), 2, 0, 2, 3),
    (3, 1, 4, 6, 2, (3, 4, 3), (2, 3, 2), (2, 1, 2), (0, 1, 1), (1, 0, 0), (1, 1, 2)),
    (2, 2, 40, 33, 1, (11, 13), (3, 3), 2, 1, 1, 1),
]


@pytest.mark.parametrize("layout", ["first", "last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_against_torch(case, dtype, layout, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    nd, N, Cin, Cout, G, sp, k, stride, padding, op, dil = case
    last = layout == "last"
    lay = LAST_LAYOUT[nd] if last else DEFAULT_LAYOUT[nd]
    xs, ws = tshapes(lay, nd, N, Cin, Cout, G, sp, k)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(Cout).astype(dtype)
    tx = torch.from_numpy(np.ascontiguousarray(to_first(x, nd) if last else x))
    tw = torch.from_numpy(np.ascontiguousarray(torch_weight(w, nd, last)))
    tb = torch.from_numpy(b)
    for t in (tx, tw, tb):
        t.requires_grad_()
    ty = getattr(F, f"conv_transpose{nd}d")(tx, tw, tb, stride, padding, op, G, dil)
    g = rng.standard_normal(ty.shape).astype(dtype)
    ty.backward(torch.from_numpy(g))
    ref_y = ty.detach().numpy()
    ref_gi, ref_gw, ref_gb = tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()
    if last:
        ref_y, ref_gi, g = to_last(ref_y, nd), to_last(ref_gi, nd), to_last(g, nd)
        ref_gw = np.transpose(ref_gw, tuple(range(2, nd + 2)) + (1, 0))
    fwd, _, _, bwd = tfns(nd)
    y = fwd(x, w, b, stride, padding, op, G, dil, layout=lay)
    gi, gw, gb = bwd(g, x, w, stride, padding, op, G, dil, layout=lay)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    for got, ref in ((y, ref_y), (gi, ref_gi), (gw, ref_gw), (gb, ref_gb)):
        assert got.dtype == dtype
        assert got.shape == ref.shape
        assert rel_error(got, ref) <= tol


# ----------------------------------------------------------------------------- semantics

def test_transpose_is_grad_input_of_conv(rng):
    x = rng.standard_normal((2, 6, 5, 5))
    w = rng.standard_normal((6, 4, 3, 3))
    y = cconv.conv_transpose2d(x, w, stride=2, padding=1)
    np.testing.assert_array_equal(y, cconv.conv2d_grad_input(x, w, y.shape, 2, 1))
    # and its grad_input is the forward convolution
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(cconv.conv_transpose2d_grad_input(g, w, x.shape, 2, 1),
                               cconv.conv2d(g, w, stride=2, padding=1), rtol=1e-12,
                               atol=1e-12)


def test_same_padding_output_size(rng):
    for stride, k in [(1, 3), (2, 3), (3, 2), (2, 4), (4, 1)]:
        x = rng.standard_normal((1, 2, 5, 6))
        w = rng.standard_normal((2, 3, k, k))
        y = cconv.conv_transpose2d(x, w, stride=stride, padding="same")
        assert y.shape == (1, 3, 5 * stride, 6 * stride)
        # adjoint of the forward "same" convolution on the output size
        g = rng.standard_normal(y.shape)
        fwd = cconv.conv2d(g, w, stride=stride, padding="same")
        assert fwd.shape == x.shape
        assert abs(np.vdot(fwd, x) - np.vdot(g, y)) <= 1e-10 * np.linalg.norm(g) * \
            np.linalg.norm(y)


def test_out_unbatched_empty_bias(rng):
    x = rng.standard_normal((4, 5, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(3)
    y = cconv.conv_transpose2d(x, w, b, stride=2)
    assert y.shape == (3, 11, 11)
    np.testing.assert_array_equal(y, cconv.conv_transpose2d(x[None], w, b, stride=2)[0])
    out = np.full((3, 11, 11), np.nan)
    r = cconv.conv_transpose2d(x, w, b, stride=2, out=out)
    assert r is out
    np.testing.assert_array_equal(out, y)
    with pytest.raises(ValueError, match="conv_transpose2d.*out"):
        cconv.conv_transpose2d(x, w, b, stride=2, out=np.empty((3, 11, 12)))
    e = cconv.conv_transpose2d(np.zeros((0, 4, 5, 5)), w, b, stride=2)
    assert e.shape == (0, 3, 11, 11)
    gi, gw, gb = cconv.conv_transpose2d_backward(np.zeros((0, 3, 11, 11)),
                                                 np.zeros((0, 4, 5, 5)), w, stride=2)
    assert gi.shape == (0, 4, 5, 5) and not gw.any() and not gb.any()
    y32 = cconv.conv_transpose1d(x[:, 0].astype(np.float32), w[:, :, 0].astype(np.float32))
    assert y32.dtype == np.float32 and y32.shape == (3, 7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_bitwise_identical_across_thread_counts(dtype, layout):
    rng = np.random.default_rng(11)
    xs, ws = tshapes(layout, 2, 1, 21, 14, 7, (13, 9), (3, 3))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    y0 = cconv.conv_transpose2d(x, w, None, 2, 1, 1, 7, layout=layout)
    g = rng.standard_normal(y0.shape).astype(dtype)
    res = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            res.append((cconv.conv_transpose2d(x, w, None, 2, 1, 1, 7, layout=layout),)
                       + cconv.conv_transpose2d_backward(g, x, w, 2, 1, 1, 7, layout=layout))
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- errors

def raises(exc, fn, *patterns):
    with pytest.raises(exc) as info:
        fn()
    for p in patterns:
        assert re.search(p, str(info.value), re.IGNORECASE), (p, str(info.value))


def test_errors():
    x = np.ones((1, 4, 5, 5))
    w = np.ones((4, 3, 3, 3))
    ct = cconv.conv_transpose2d
    raises(ValueError, lambda: ct(x, w, stride=2, output_padding=2),
           "conv_transpose2d", "output_padding", "2", "stride")
    raises(ValueError, lambda: ct(x, w, stride=1, dilation=1, output_padding=1),
           "conv_transpose2d", "output_padding")
    ct(x, w, stride=1, dilation=2, output_padding=1)  # < dilation: allowed, as in PyTorch
    raises(ValueError, lambda: ct(x, np.ones((3, 3, 3, 3))), "conv_transpose2d",
           "4 channels", "weight")
    raises(ValueError, lambda: ct(x, w, groups=3), "conv_transpose2d", "groups=3")
    raises(ValueError, lambda: ct(x, w, np.ones(4)), "conv_transpose2d", "bias", r"\(3,\)")
    raises(ValueError, lambda: ct(x, w, padding=4), "conv_transpose2d", "output size", "-1")
    raises(ValueError, lambda: ct(x, w, padding=-1), "conv_transpose2d", "padding")
    raises(ValueError, lambda: ct(x, w, padding="same", output_padding=1, stride=2),
           "conv_transpose2d", "output_padding", "same")
    raises(ValueError, lambda: cconv.conv_transpose1d(x[0, :, 0], w[..., 0], padding="causal"),
           "conv_transpose1d", "causal")
    raises(ValueError, lambda: ct(x, w, algorithm="direct"), "conv_transpose2d", "direct")
    raises(ValueError, lambda: ct(x, w, layout="NCWH"), "conv_transpose2d", "layout")
    raises(ValueError, lambda: ct(x[0, 0], w), "conv_transpose2d", "x", "2-D")
    raises(TypeError, lambda: ct(x.astype(bool), w), "conv_transpose2d", "bool")
    raises(ValueError, lambda: cconv.conv_transpose2d_grad_input(np.ones((1, 3, 7, 8)), w,
                                                                 x.shape),
           "conv_transpose2d_grad_input", "grad_out", r"\(1, 3, 7, 7\)")
    raises(ValueError, lambda: cconv.conv_transpose2d_grad_weight(x, np.ones((1, 3, 7, 7)),
                                                                  (4, 3, 3)),
           "conv_transpose2d_grad_weight", "weight_shape")
    raises(ValueError, lambda: cconv.conv_transpose2d_backward(np.ones((1, 3, 7, 7)), x, w,
                                                               need=("x",)),
           "conv_transpose2d_backward", "need")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_phase_copy_into_strided_views(dtype):
    # the threaded copy the sub-pixel phases use to fill their strided slices of dx
    from cconv import _core
    rng = np.random.default_rng(7)
    dst = np.full((3, 4, 2, 9, 11), np.nan, dtype)
    view = dst[:, 1:, :, 1::2, ::3]
    src = rng.standard_normal(view.shape).astype(dtype)
    for nth in (1, 2, 3):
        dst[...] = np.nan
        _core.copy_into(src, view, nth)
        np.testing.assert_array_equal(view, src)
        mask = np.ones(dst.shape, bool)
        mask[:, 1:, :, 1::2, ::3] = False
        assert np.isnan(dst[mask]).all()   # nothing outside the view written
    with pytest.raises(ValueError, match="axis 3"):
        _core.copy_into(src[:, :, :, :3], view, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [(5,), (3, 3), (4, 2), (2, 3, 2)])
def test_flipped_weight_tap_by_tap(k, dtype, monkeypatch):
    # channels-last, one group: the flipped weight (*k, Og, C) of the sub-pixel / flipped
    # grad_input is built by one threaded transpose per tap (from FLIP_BY_TAP_MIN
    # channel pairs; lowered here so that small weights take it)
    from cconv import _spec, backward
    nd = len(k)
    rng = np.random.default_rng(len(k) * 10 + k[0])
    Cin, Cout, sp = 20, 24, (7,) * nd
    lay = LAST_LAYOUT[nd]
    x = rng.standard_normal((2,) + sp + (Cin,)).astype(dtype)
    w = rng.standard_normal(k + (Cin, Cout)).astype(dtype)   # conv weight (*k, Cg, O)
    w0 = w.copy()
    spec = _spec.forward_spec("conv", nd, x, w, None, 1, 0, 1, 1, "zeros", lay, "auto")[0]
    numpy_path = backward._flipped_weight(spec, w)
    monkeypatch.setattr(backward, "FLIP_BY_TAP_MIN", 1)
    for threads in (1, 2, 3):
        with cconv.num_threads(threads):
            got = backward._flipped_weight(spec, w)
        assert got.flags.c_contiguous and got.shape == k + (Cout, Cin)
        np.testing.assert_array_equal(got, np.flip(w, tuple(range(nd))).swapaxes(-1, -2))
        np.testing.assert_array_equal(got, numpy_path)
    np.testing.assert_array_equal(w, w0)
    # end to end: transposed convolutions (stride 1: the flipped forward; 3-D stride 2:
    # the sub-pixel phases) give the bits they give with the NumPy-built flipped weight
    tw = rng.standard_normal(k + (Cout, Cin)).astype(dtype)   # (*k, C_out, C_in)
    calls = []
    flipped = backward._flipped_weight
    monkeypatch.setattr(backward, "_flipped_weight",
                        lambda s, ww: calls.append(s.kernel) or flipped(s, ww))
    for stride in (1, 2) if nd == 3 else (1,):
        got = cconv.__dict__[f"conv_transpose{nd}d"](x, tw, None, stride, 1, layout=lay)
        assert calls == [k]
        monkeypatch.setattr(backward, "FLIP_BY_TAP_MIN", 1 << 60)
        ref = cconv.__dict__[f"conv_transpose{nd}d"](x, tw, None, stride, 1, layout=lay)
        monkeypatch.setattr(backward, "FLIP_BY_TAP_MIN", 1)
        np.testing.assert_array_equal(got, ref)
        calls.clear()
