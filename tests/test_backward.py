"""Backward passes of conv1d/2d/3d: grad_input, grad_weight, backward.

The main check is the adjoint identity in float64 (DESIGN.md section 4):
    <conv(x, w), g> == <x, grad_input(g, w)> == <w, grad_weight(x, g)>
over a Hypothesis sweep of every forward option, plus central finite differences,
PyTorch as a second opinion, thread-count invariance and the error table.
"""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from conftest import assert_same_on_every_isa, conv_fn
from reference import DEFAULT_LAYOUT, LAST_LAYOUT, aligned_full, conv_nd_reference, \
    rel_error, resolve_padding

cconv = pytest.importorskip("cconv")

MODES = ("zeros", "reflect", "replicate", "circular")


def bwd_fns(nd):
    return (getattr(cconv, f"conv{nd}d_grad_input"), getattr(cconv, f"conv{nd}d_grad_weight"),
            getattr(cconv, f"conv{nd}d_backward"))


def shapes(layout, nd, N, C, O, G, sp, k, batched=True):
    last = layout == LAST_LAYOUT[nd]
    xs = tuple(sp) + (C,) if last else (C,) + tuple(sp)
    if batched:
        xs = (N,) + xs
    ws = tuple(k) + (C // G, O) if last else (O, C // G) + tuple(k)
    return xs, ws


# ----------------------------------------------------------------------------- sweep

@st.composite
def conv_problems(draw, max_size=7):
    nd = draw(st.sampled_from([1, 2, 3]))
    layout = draw(st.sampled_from([DEFAULT_LAYOUT[nd], LAST_LAYOUT[nd]]))
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "dense":
        G, C, O = 1, draw(st.integers(1, 5)), draw(st.integers(1, 5))
    elif kind == "grouped":
        G = draw(st.integers(2, 3))
        C, O = G * draw(st.integers(1, 3)), G * draw(st.integers(1, 3))
    else:
        G = C = draw(st.integers(2, 5))
        O = C * draw(st.integers(1, 2))
    small = 3 if nd == 3 else max_size
    sp = tuple(draw(st.integers(1, small + 2)) for _ in range(nd))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    pform = draw(st.sampled_from(["int", "pairs", "same", "valid"] + (["causal"] if nd == 1
                                                                     else [])))
    if pform == "int":
        padding = draw(st.integers(0, 2))
    elif pform == "pairs":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(nd))
    else:
        padding = pform
    mode = draw(st.sampled_from(MODES))
    N = draw(st.sampled_from([0, 1, 1, 2, 3]))
    batched = draw(st.booleans()) if N == 1 else True
    return dict(nd=nd, layout=layout, N=N, C=C, O=O, G=G, sp=sp, k=k, stride=stride,
                dilation=dilation, padding=padding, mode=mode, batched=batched)


def make_problem(p, rng, dtype=np.float64):
    """Arrays for problem p, or None if the forward rejects the configuration."""
    xs, ws = shapes(p["layout"], p["nd"], p["N"], p["C"], p["O"], p["G"], p["sp"], p["k"],
                    p["batched"])
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    try:
        y = conv_fn(p["nd"])(x, w, None, p["stride"], p["padding"], p["dilation"], p["G"],
                             padding_mode=p["mode"], layout=p["layout"])
    except ValueError:
        return None
    g = rng.standard_normal(y.shape).astype(dtype)
    return x, w, y, g


def kw(p):
    return dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                groups=p["G"], padding_mode=p["mode"], layout=p["layout"])


def check_adjoint(p, seed, sweep=True):
    rng = np.random.default_rng(seed)
    arrays = make_problem(p, rng)
    if sweep:
        assume(arrays is not None)
    assert arrays is not None
    x, w, y, g = arrays
    gi_fn, gw_fn, bwd_fn = bwd_fns(p["nd"])
    gi = gi_fn(g, w, x.shape, **kw(p))
    gw = gw_fn(x, g, w.shape, **kw(p))
    assert gi.shape == x.shape and gi.dtype == np.float64 and gi.flags.c_contiguous
    assert gw.shape == w.shape and gw.dtype == np.float64
    lhs = float(np.vdot(y, g))
    scale = max(np.linalg.norm(y) * np.linalg.norm(g), 1e-300)
    assert abs(lhs - float(np.vdot(x, gi))) <= 1e-10 * scale, (lhs, np.vdot(x, gi))
    assert abs(lhs - float(np.vdot(w, gw))) <= 1e-10 * scale, (lhs, np.vdot(w, gw))
    bi, bw, bb = bwd_fn(g, x, w, **kw(p))
    np.testing.assert_array_equal(bi, gi)
    np.testing.assert_array_equal(bw, gw)
    last = p["layout"] == LAST_LAYOUT[p["nd"]]
    gb = g if p["batched"] else g[None]
    axes = tuple(range(gb.ndim - 1)) if last else (0,) + tuple(range(2, gb.ndim))
    np.testing.assert_allclose(bb, gb.sum(axis=axes), rtol=1e-12, atol=1e-12)
    assert bb.shape == (p["O"],)


@given(p=conv_problems(), seed=st.integers(0, 2**31))
@settings(max_examples=120)
def test_adjoint_identity_sweep(p, seed):
    check_adjoint(p, seed)


@pytest.mark.slow
@given(p=conv_problems(max_size=12), seed=st.integers(0, 2**31))
@settings(max_examples=1500)
def test_adjoint_identity_sweep_long(p, seed):
    check_adjoint(p, seed)


# Larger problems that cross the tile sizes (256 output pixels per tile, 256 K rows per
# block, the GEMM's MR/NR and KC = 256 along the output channels).
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("N,C,O,G,sp,k,stride,pad,dil", [
    (2, 33, 19, 1, (19, 23), (3, 3), 1, 1, 1),
    (1, 65, 300, 1, (17, 17), (3, 3), (2, 1), "same", 1),
    (3, 24, 24, 24, (21, 20), (5, 5), 2, 2, 2),
    (2, 40, 17, 1, (33, 9), (1, 1), 1, 0, 1),
    (2, 70, 20, 1, (13, 11), (1, 1), 1, 0, 1),  # 1x1 on the GEMM: transposed panels
    (1, 12, 18, 3, (7, 7), (7, 7), 1, 3, 1),
])
def test_adjoint_tile_edges(layout, N, C, O, G, sp, k, stride, pad, dil):
    p = dict(nd=2, layout=layout, N=N, C=C, O=O, G=G, sp=sp, k=k, stride=stride,
             dilation=dil, padding=pad, mode="zeros", batched=True)
    check_adjoint(p, 5, sweep=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,P", [(64, 64), (70, 143), (100, 321), (256, 49)])
def test_pointwise_grad_weight(rng, dtype, C, P):
    """1x1 stride-1 grad_weight on the GEMM packs x's rows as transposed B panels
    (whole panels, a partial one, pixel counts off the vector width, several pixel
    tiles): against an einsum over the images."""
    N, O = 3, 23
    x = rng.standard_normal((N, C, 1, P)).astype(dtype)
    g = rng.standard_normal((N, O, 1, P)).astype(dtype)
    dw = cconv.conv2d_grad_weight(x, g, (O, C, 1, 1), 1, 0, 1, 1, algorithm="im2col")
    ref = np.einsum("nop,ncp->oc", g[:, :, 0].astype(np.float64), x[:, :, 0].astype(np.float64))
    assert dw.dtype == dtype and dw.shape == (O, C, 1, 1)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.abs(dw[:, :, 0, 0] - ref).max() <= tol * np.abs(ref).max()


# ----------------------------------------------------------------------------- reference

def _fd_check(nd, layout, mode, padding, G, stride, dilation, rng):
    """Central finite differences of L = <conv(x, w, b), g> at random entries."""
    C, O = 2 * G, 2 * G
    xs, ws = shapes(layout, nd, 2, C, O, G, (5,) * nd, (3,) * nd)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(O)
    pairs = resolve_padding(padding, (5,) * nd, (3,) * nd, stride, dilation)
    f = lambda x_, w_, b_: conv_nd_reference(x_, w_, b_, stride, pairs, dilation, G, mode,
                                             layout)
    y = f(x, w, b)
    g = rng.standard_normal(y.shape)
    loss = lambda x_, w_, b_: float(np.vdot(f(x_, w_, b_), g))
    gi, gw, gb = bwd_fns(nd)[2](g, x, w, stride, padding, dilation, G, padding_mode=mode,
                                layout=layout)
    h = 1e-5
    for arr, grad in ((x, gi), (w, gw), (b, gb)):
        for _ in range(6):
            idx = tuple(rng.integers(0, s) for s in arr.shape)
            old = arr[idx]
            arr[idx] = old + h
            lp = loss(x, w, b)
            arr[idx] = old - h
            lm = loss(x, w, b)
            arr[idx] = old
            fd = (lp - lm) / (2 * h)
            assert abs(fd - grad[idx]) <= 1e-6 * max(1.0, abs(fd)), (idx, fd, grad[idx])


@pytest.mark.parametrize("nd,layout,mode,padding,G,stride,dilation", [
    (2, "NCHW", "zeros", 1, 1, 1, 1),
    (2, "NHWC", "reflect", ((2, 1), (0, 2)), 2, 2, 1),
    (1, "NCL", "circular", "causal", 1, 1, 2),
    (1, "NLC", "replicate", "same", 2, 2, 1),
    (3, "NCDHW", "replicate", 1, 1, (1, 2, 1), 1),
    (3, "NDHWC", "circular", "same", 2, 1, (1, 1, 2)),
])
def test_finite_differences(nd, layout, mode, padding, G, stride, dilation, rng):
    _fd_check(nd, layout, mode, padding, G, stride, dilation, rng)


TORCH_CASES = [
    # nd, layout, N, C, O, G, sp, k, stride, padding, dilation, mode
    (2, "NCHW", 2, 6, 8, 1, (9, 11), (3, 3), 1, 1, 1, "zeros"),
    (2, "NHWC", 2, 6, 8, 2, (9, 11), (3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2), "zeros"),
    (2, "NCHW", 1, 8, 8, 8, (10, 10), (3, 3), 2, 1, 1, "reflect"),
    (2, "NHWC", 2, 4, 6, 1, (8, 7), (3, 3), 1, "same", 2, "circular"),
    (1, "NCL", 3, 4, 6, 2, (20,), (5,), 3, "causal", 1, "replicate"),
    (1, "NLC", 2, 3, 5, 1, (16,), (3,), 1, "same", 3, "reflect"),
    (3, "NCDHW", 1, 4, 4, 2, (5, 6, 7), (3, 1, 2), (1, 2, 1), (1, 0, 1), 1, "zeros"),
    (3, "NDHWC", 2, 3, 4, 1, (4, 5, 6), (2, 2, 2), 1, 1, (2, 1, 1), "replicate"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TORCH_CASES)
def test_against_torch_autograd(case, dtype, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    nd, layout, N, C, O, G, sp, k, stride, padding, dilation, mode = case
    xs, ws = shapes(layout, nd, N, C, O, G, sp, k)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    pairs = resolve_padding(padding, sp, k, stride, dilation)
    last = layout == LAST_LAYOUT[nd]
    xt = np.moveaxis(x, -1, 1) if last else x
    wt = np.transpose(w, (nd + 1, nd) + tuple(range(nd))) if last else w
    tx = torch.from_numpy(np.ascontiguousarray(xt)).requires_grad_()
    tw = torch.from_numpy(np.ascontiguousarray(wt)).requires_grad_()
    flat = [v for b, a in reversed(pairs) for v in (b, a)]
    xp = F.pad(tx, flat, mode="constant" if mode == "zeros" else mode)
    ty = getattr(F, f"conv{nd}d")(xp, tw, None, stride, 0, dilation, G)
    g = rng.standard_normal(ty.shape).astype(dtype)
    ty.backward(torch.from_numpy(g))
    ref_gi = tx.grad.numpy()
    ref_gw = tw.grad.numpy()
    if last:
        ref_gi = np.moveaxis(ref_gi, 1, -1)
        ref_gw = np.transpose(ref_gw, tuple(range(2, nd + 2)) + (1, 0))
        g = np.moveaxis(g, 1, -1)
    gi, gw, gb = bwd_fns(nd)[2](g, x, w, stride, padding, dilation, G, padding_mode=mode,
                                layout=layout)
    assert gi.dtype == dtype and gw.dtype == dtype and gb.dtype == dtype
    tol = 2e-5 if dtype == np.float32 else 1e-11
    assert rel_error(gi, ref_gi) <= tol
    assert rel_error(gw, ref_gw) <= tol


def test_against_aten_convolution_backward(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 6, 12, 10))
    w = rng.standard_normal((9, 2, 3, 3))
    g = rng.standard_normal((2, 9, 6, 10))
    ref = torch.ops.aten.convolution_backward(
        torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w), [9], [2, 1], [1, 2],
        [1, 2], False, [0, 0], 3, [True, True, True])
    gi, gw, gb = cconv.conv2d_backward(g, x, w, (2, 1), (1, 2), (1, 2), 3)
    for a, r in zip((gi, gw, gb), ref):
        assert rel_error(a, r.numpy()) <= 1e-12


# ----------------------------------------------------------------------------- semantics

@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_float32_close_to_float64(layout, rng):
    xs, ws = shapes(layout, 2, 2, 20, 12, 1, (15, 13), (3, 3))
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    g = rng.standard_normal(cconv.conv2d(x, w, padding=1, stride=2, layout=layout).shape)
    ref = cconv.conv2d_backward(g, x, w, 2, 1, layout=layout)
    got = cconv.conv2d_backward(g.astype(np.float32), x.astype(np.float32),
                                w.astype(np.float32), 2, 1, layout=layout)
    for a, r in zip(got, ref):
        assert a.dtype == np.float32
        assert rel_error(a, r) <= 2e-5


def test_dtype_rules(rng):
    x = rng.integers(-3, 4, (1, 2, 6, 6))
    w = rng.integers(-3, 4, (3, 2, 3, 3))
    g = rng.integers(-3, 4, (1, 3, 4, 4))
    gi, gw, gb = cconv.conv2d_backward(g, x, w)
    assert gi.dtype == gw.dtype == gb.dtype == np.float64
    gi32 = cconv.conv2d_grad_input(g.astype(np.float16), w.astype(np.float32), x.shape)
    assert gi32.dtype == np.float32
    np.testing.assert_array_equal(gi32, gi)  # small integers: exact in float32
    gw32 = cconv.conv2d_grad_weight(x.astype(np.float32), g.astype(np.float32), w.shape)
    np.testing.assert_array_equal(gw32, gw)


def test_unbatched_and_empty(rng):
    x = rng.standard_normal((3, 7, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((4, 5, 5))
    gi, gw, gb = cconv.conv2d_backward(g, x, w)
    gib, gwb, gbb = cconv.conv2d_backward(g[None], x[None], w)
    assert gi.shape == x.shape
    np.testing.assert_array_equal(gi, gib[0])
    np.testing.assert_array_equal(gw, gwb)
    np.testing.assert_array_equal(gb, gbb)
    # empty batch: empty grad_input, zero grad_weight and grad_bias
    gi, gw, gb = cconv.conv2d_backward(np.zeros((0, 4, 5, 5)), np.zeros((0, 3, 7, 7)), w,
                                       padding_mode="reflect")
    assert gi.shape == (0, 3, 7, 7) and gw.shape == w.shape and gb.shape == (4,)
    assert not gw.any() and not gb.any()
    # no input channels / no output channels
    assert cconv.conv2d_grad_input(np.ones((1, 4, 5, 5)), np.ones((4, 0, 3, 3)),
                                   (1, 0, 7, 7)).shape == (1, 0, 7, 7)
    gi = cconv.conv2d_grad_input(np.ones((1, 0, 5, 5)), np.ones((0, 3, 3, 3)), (1, 3, 7, 7))
    assert gi.shape == (1, 3, 7, 7) and not gi.any()
    gw = cconv.conv2d_grad_weight(np.ones((1, 3, 7, 7)), np.ones((1, 0, 5, 5)), (0, 3, 3, 3))
    assert gw.shape == (0, 3, 3, 3)


def test_need_selects_outputs(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((2, 4, 4, 4))
    full = cconv.conv2d_backward(g, x, w)
    gi, gw, gb = cconv.conv2d_backward(g, x, w, need=("weight",))
    assert gi is None and gb is None
    np.testing.assert_array_equal(gw, full[1])
    gi, gw, gb = cconv.conv2d_backward(g, x, w, need="input")
    assert gw is None and gb is None
    np.testing.assert_array_equal(gi, full[0])
    assert cconv.conv2d_backward(g, x, w, need=()) == (None, None, None)


def test_inputs_not_modified_and_noncontiguous(rng):
    x = rng.standard_normal((2, 5, 9, 9))
    w = rng.standard_normal((4, 5, 3, 3))
    g = rng.standard_normal((2, 4, 9, 9))
    copies = [a.copy() for a in (x, w, g)]
    ref = cconv.conv2d_backward(g, x, w, padding=1, padding_mode="circular")
    for a, c in zip((x, w, g), copies):
        np.testing.assert_array_equal(a, c)
    xn = np.asfortranarray(x)[:, ::-1][:, ::-1]
    gn = g.astype(">f8")
    gn.setflags(write=False)
    got = cconv.conv2d_backward(gn, xn, w, padding=1, padding_mode="circular")
    for a, r in zip(got, ref):
        np.testing.assert_array_equal(a, r)


def test_unpad_grad_is_adjoint_of_np_pad(rng):
    from cconv.backward import _unpad_grad
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    for mode in np_mode:
        x = rng.standard_normal((2, 5, 4))
        pads = ((2, 3), (0, 3)) if mode != "reflect" else ((2, 4), (3, 1))
        xp = np.pad(x, ((0, 0),) + pads, mode=np_mode[mode])
        g = rng.standard_normal(xp.shape)
        back = _unpad_grad(g, pads, mode, (1, 2))
        assert back.shape == x.shape
        assert abs(np.vdot(xp, g) - np.vdot(x, back)) <= 1e-12 * np.abs(g).sum() * 10


# ----------------------------------------------------------------------------- threads

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("N,C,O,G,sp", [(1, 19, 21, 1, (23, 17)), (3, 6, 9, 3, (12, 11)),
                                        (2, 8, 8, 8, (9, 9)), (1, 300, 4, 1, (6, 5))])
def test_bitwise_identical_across_thread_counts(dtype, layout, N, C, O, G, sp):
    rng = np.random.default_rng(3)
    xs, ws = shapes(layout, 2, N, C, O, G, sp, (3, 3))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    g = rng.standard_normal(cconv.conv2d(x, w, None, 1, 1, 1, G, layout=layout).shape)
    g = g.astype(dtype)
    results = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            results.append(cconv.conv2d_backward(g, x, w, 1, 1, 1, G, padding_mode="reflect",
                                                 layout=layout))
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("shape", [(3, 5, 17), (1, 1, 1), (2, 3, 33, 7), (8, 19, 40),
                                   (4, 70, 65), (5000, 3), (1, 2, 4097)])
def test_grad_bias_kernel(dtype, last, shape):
    """The bias gradient (biasgrad.h): per-channel sums in double, rounded once, against
    math.fsum; bitwise the same for 1-3 threads and on every ISA path this CPU has; NaN
    and Inf only in their own channel; the input is not modified."""
    import math
    from cconv import _backward
    rng = np.random.default_rng(sum(shape))
    g = (rng.standard_normal(shape) * 10 ** rng.uniform(-3, 3, shape)).astype(dtype)
    keep = g.copy()
    C = shape[-1] if last else shape[1]
    cols = np.moveaxis(g, -1 if last else 1, 0).reshape(C, -1).astype(np.float64)
    exact = np.array([math.fsum(c) for c in cols])
    got = {}
    for isa in ("generic", "avx2", "avx512"):
        try:
            _backward.isa_select(isa)
        except RuntimeError:
            continue
        for n in (1, 2, 3):
            got[isa, n] = _backward.grad_bias(g, C, last, n)
    _backward.isa_select(_backward.isa_best())
    assert ("generic", 1) in got
    ref = got["generic", 1]
    assert ref.dtype == dtype and ref.shape == (C,)
    for key, v in got.items():
        np.testing.assert_array_equal(v, ref, err_msg=str(key))
    scale = np.abs(cols).sum(axis=1)  # double accumulation: error ~ n * eps64 * sum |g|
    assert np.all(np.abs(ref - exact) <= np.abs(exact) * np.finfo(dtype).eps
                  + scale * cols.shape[1] * 2e-16)
    np.testing.assert_array_equal(g, keep)
    # a NaN and an Inf reach their channel and no other
    g2 = g.copy()
    idx = [0] * len(shape)
    idx[-1 if last else 1] = C - 1
    g2[tuple(idx)] = np.nan
    if C > 1:
        idx[-1 if last else 1] = 0
        g2[tuple(idx)] = np.inf
    b2 = _backward.grad_bias(g2, C, last, 2)
    assert np.isnan(b2[C - 1])
    if C > 1:
        assert b2[0] == np.inf
        np.testing.assert_array_equal(b2[1:C - 1], ref[1:C - 1])


def test_forced_isa_paths_agree(tmp_path):
    """grad_input / grad_weight give bitwise the same result on every SIMD path."""
    code = """
import numpy as np, cconv
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 13, 11, 9)).astype(np.float32)
w = rng.standard_normal((17, 13, 3, 3)).astype(np.float32)
g = rng.standard_normal((2, 17, 6, 9)).astype(np.float32)
gi, gw, _ = cconv.conv2d_backward(g, x, w, (2, 1), 1)
xt = rng.standard_normal((2, 9, 5, 4, 13)).astype(np.float32)
t = cconv.conv_transpose3d(xt, rng.standard_normal((3, 2, 2, 7, 13)).astype(np.float32),
                           stride=2, layout="NDHWC")
# gwdot (channels-first grad_weight) in both dtypes: 1x1 on a gapless grid, depthwise,
# strided 3-D, short rows with partial chunks
x64 = rng.standard_normal((2, 30, 7, 19))
g1 = rng.standard_normal((2, 26, 7, 19))
gw1 = cconv.conv2d_grad_weight(x64, g1, (26, 30, 1, 1), algorithm="direct")
gwd = cconv.conv2d_grad_weight(x64[:, :6].astype(np.float32),
                               rng.standard_normal((2, 12, 7, 19)).astype(np.float32),
                               (12, 1, 3, 3), padding=1, groups=6, algorithm="direct")
x3 = rng.standard_normal((1, 5, 6, 9, 21)).astype(np.float32)
g3 = rng.standard_normal((1, 7, 3, 9, 11)).astype(np.float32)
gw3 = cconv.conv3d_grad_weight(x3, g3, (7, 5, 3, 3, 3), stride=(2, 1, 2), padding=1,
                               algorithm="direct")
# the GEMM grad_weight's gathered panels (stride 1 and 2, pointwise) and col2im's
# vector adds (stride 2)
gwg1 = cconv.conv2d_grad_weight(x, rng.standard_normal((2, 17, 11, 9)).astype(np.float32),
                                w.shape, 1, 1, algorithm="im2col")
gwg2 = cconv.conv2d_grad_weight(x, g, w.shape, (2, 1), 1, algorithm="im2col")
gwp = cconv.conv2d_grad_weight(x64.astype(np.float32), g1.astype(np.float32), (26, 30, 1, 1),
                               algorithm="im2col")
gi2 = cconv.conv2d_grad_input(rng.standard_normal((2, 6, 7, 10)), w[:6, :5].astype(np.float64),
                              (2, 5, 13, 19), stride=2, padding=1)
# the channels-last depthwise kernel (dwgw.h): tap groups differ per path (49 and 27 taps;
# channel multiplier 2)
xl = rng.standard_normal((2, 9, 12, 19)).astype(np.float32)
dwl = cconv.conv2d_grad_weight(xl, rng.standard_normal((2, 9, 12, 19)).astype(np.float32),
                               (7, 7, 1, 19), 1, 3, 1, 19, layout="NHWC")
xl3 = rng.standard_normal((1, 4, 5, 6, 11))
dwl3 = cconv.conv3d_grad_weight(xl3, rng.standard_normal((1, 4, 3, 6, 22)), (3, 3, 3, 1, 22),
                                (1, 2, 1), 1, 1, 11, layout="NDHWC")
# 3x3 at stride 1: the AVX-512 register window (DWGW_MID_SLIDE), partial vectors
xs3 = rng.standard_normal((2, 9, 14, 21))
dws = cconv.conv2d_grad_weight(xs3, rng.standard_normal((2, 9, 14, 21)), (3, 3, 1, 21), 1,
                               1, 1, 21, layout="NHWC")
dws32 = cconv.conv2d_grad_weight(xs3.astype(np.float32),
                                 rng.standard_normal((2, 7, 14, 21)).astype(np.float32),
                                 (3, 3, 1, 21), 1, 1, (2, 1), 21, layout="NHWC")
# the bias summed inside dwgw (float32 and float64 rows)
dbs = cconv.conv2d_backward(rng.standard_normal((2, 9, 14, 21)), xs3,
                            rng.standard_normal((3, 3, 1, 21)), 1, 1, 1, 21,
                            layout="NHWC")[2]
dbs32 = cconv.conv2d_backward(rng.standard_normal((2, 9, 14, 42)).astype(np.float32),
                              xs3.astype(np.float32),
                              rng.standard_normal((3, 3, 1, 42)).astype(np.float32), 1, 1,
                              1, 21, layout="NHWC")[2]
# the channels-last depthwise gather (dwgi.h): strided, partial vectors, both dtypes
gg = cconv.conv2d_grad_input(rng.standard_normal((2, 7, 6, 21)),
                             rng.standard_normal((3, 3, 1, 21)), (2, 13, 11, 21), 2, 1, 1, 21,
                             layout="NHWC")
gg32 = cconv.conv2d_grad_input(rng.standard_normal((2, 5, 6, 37)).astype(np.float32),
                               rng.standard_normal((5, 4, 1, 37)).astype(np.float32),
                               (2, 13, 11, 37), (3, 2), 2, 1, 37, layout="NHWC")
np.savez(OUTPATH, gi=gi, gw=gw, t=t, gw1=gw1, gwd=gwd, gw3=gw3, gwg1=gwg1, gwg2=gwg2,
         gwp=gwp, gi2=gi2, dwl=dwl, dwl3=dwl3, dws=dws, dws32=dws32, dbs=dbs, dbs32=dbs32,
         gg=gg, gg32=gg32)
"""
    assert_same_on_every_isa(code, tmp_path)


# ----------------------------------------------------------------------------- flipped

def _auto_grad_input_matches_col2im(seed, layout, nd, N, C, O, G, sp, k, args, mode):
    """grad_input "auto" (a forward-convolution form) against col2im ("im2col"), in
    float64 and float32."""
    rng = np.random.default_rng(seed)
    lay = LAST_LAYOUT[nd] if layout == "last" else DEFAULT_LAYOUT[nd]
    xs, ws = shapes(lay, nd, N, C, O, G, sp, k)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    g = rng.standard_normal(conv_fn(nd)(x, w, None, *args, padding_mode=mode,
                                        layout=lay).shape)
    gi_fn = bwd_fns(nd)[0]
    a = gi_fn(g, w, x.shape, *args, padding_mode=mode, layout=lay, algorithm="auto")
    b = gi_fn(g, w, x.shape, *args, padding_mode=mode, layout=lay, algorithm="im2col")
    assert a.shape == x.shape
    assert rel_error(a, b) <= 1e-13
    a32 = gi_fn(g.astype(np.float32), w.astype(np.float32), x.shape, *args,
                padding_mode=mode, layout=lay)
    assert a32.dtype == np.float32 and rel_error(a32, b) <= 2e-6


# grad_input at stride 1 ("auto") is the forward convolution of grad_out with the
# flipped, transposed weight; it must agree with the col2im path ("im2col") for every
# layout, groups, dilation, asymmetric / "same" padding, padding mode, and fall back
# where the padding exceeds the kernel extent.
@pytest.mark.parametrize("layout", ["first", "last"])
@pytest.mark.parametrize("nd,N,C,O,G,sp,k,pad,dil,mode", [
    (2, 2, 6, 10, 2, (9, 12), (3, 3), 1, 1, "zeros"),
    (2, 1, 5, 7, 1, (11, 8), (3, 2), ((2, 0), (1, 1)), (2, 1), "zeros"),
    (2, 2, 8, 8, 8, (10, 10), (5, 5), "same", 1, "zeros"),
    (2, 2, 4, 12, 4, (10, 10), (3, 3), 1, 1, "zeros"),        # depthwise, multiplier 3
    (2, 1, 3, 5, 1, (9, 9), (3, 3), 2, 1, "reflect"),
    (2, 1, 3, 5, 1, (9, 9), (3, 3), 3, 1, "zeros"),          # pad > extent: col2im
    (1, 2, 5, 6, 1, (30,), (4,), "causal", 3, "circular"),
    (3, 1, 4, 6, 2, (5, 6, 7), (3, 1, 3), 1, 1, "replicate"),
])
def test_grad_input_flipped_forward_matches_col2im(layout, nd, N, C, O, G, sp, k, pad, dil,
                                                   mode, monkeypatch):
    # small channel counts: force the forward form that "auto" keeps for >= 16 channels
    monkeypatch.setattr(cconv.backward, "_forward_form_pays", lambda spec: True)
    _auto_grad_input_matches_col2im(8, layout, nd, N, C, O, G, sp, k, (1, pad, dil, G), mode)


# Channels-last problems with few input channels but more (channel, tap) rows than one
# col2im block take the forward form too: 3-D 5x5x5 / 2-D 7x7 with 4-12 channels; one
# block (3x3 with 8 channels) and channels-first problems keep col2im.
@pytest.mark.parametrize("nd,C,O,k,take", [
    (3, 8, 12, (5, 5, 5), True),
    (3, 4, 6, (5, 5, 5), True),
    (2, 12, 10, (7, 7), True),
    (2, 8, 10, (3, 3), False),
    (2, 3, 10, (7, 7), False),          # below 4 channels the forward form wastes its lanes
])
@pytest.mark.parametrize("layout", ["first", "last"])
def test_grad_input_forward_form_for_many_channel_taps(nd, C, O, k, take, layout):
    from cconv import _spec, backward as bw
    lay = LAST_LAYOUT[nd] if layout == "last" else DEFAULT_LAYOUT[nd]
    sp = (7, 6, 8)[:nd] if nd == 3 else (13, 11)
    xs, ws = shapes(lay, nd, 2, C, O, 1, sp, k)
    spec = _spec.forward_spec("conv", nd, np.zeros(xs), np.zeros(ws), None, 1, "same", 1, 1,
                              "zeros", lay, "auto")[0]
    assert bw._forward_form_pays(spec) == (take and layout == "last")
    _auto_grad_input_matches_col2im(10, layout, nd, 2, C, O, 1, sp, k, (1, "same", 1, 1),
                                    "zeros")


# Strided grad_input ("auto", dilation 1, stride <= kernel) runs as prod(stride)
# stride-1 forward convolutions, one per stride phase ("sub-pixel"); it must agree with
# col2im, including inputs longer than the windows read (zero gradient at the end),
# stride == kernel, asymmetric padding, groups, both layouts, 1-D / 3-D and padding modes.
@pytest.mark.parametrize("layout", ["first", "last"])
@pytest.mark.parametrize("nd,N,C,O,G,sp,k,stride,pad,mode", [
    (2, 2, 4, 6, 1, (9, 9), (3, 3), 2, 1, "zeros"),
    (2, 1, 4, 6, 2, (10, 11), (4, 4), 2, 1, "zeros"),
    (2, 2, 6, 4, 2, (8, 8), (4, 2), 2, 0, "zeros"),                # stride == kernel
    (2, 1, 2, 3, 1, (13, 7), (5, 3), (3, 2), ((2, 0), (1, 1)), "zeros"),
    (2, 1, 3, 3, 1, (10, 10), (3, 3), 3, 0, "zeros"),              # last row never read
    (2, 1, 3, 5, 1, (9, 10), (3, 3), 2, 2, "reflect"),
    (2, 2, 8, 8, 8, (11, 9), (3, 3), 2, 1, "zeros"),                # depthwise
    (1, 2, 3, 4, 1, (17,), (4,), 2, 1, "circular"),
    (3, 1, 2, 3, 1, (7, 8, 9), (3, 3, 3), (2, 1, 2), 1, "zeros"),
])
def test_grad_input_subpixel_matches_col2im(layout, nd, N, C, O, G, sp, k, stride, pad,
                                            mode, monkeypatch):
    from cconv import _plan, backward as bw
    monkeypatch.setattr(bw, "_forward_form_pays", lambda spec: True)
    # every possible split, also the uneven channels-first ones "auto" leaves to col2im
    monkeypatch.setattr(bw, "_subpixel_ok", bw._subpixel_possible)
    # and not the patch route (stride == kernel, few channels: test_patches.py)
    monkeypatch.setattr(_plan, "patch_spec", lambda spec, op="forward": None)
    calls = []
    real = bw._subpixel_grad_input
    monkeypatch.setattr(bw, "_subpixel_grad_input",
                        lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    _auto_grad_input_matches_col2im(9, layout, nd, N, C, O, G, sp, k, (stride, pad, 1, G),
                                    mode)
    assert calls or G == C  # depthwise problems take the depthwise kernels instead


def test_grad_input_subpixel_choice():
    """"auto" splits channels-last strided input gradients into phases, channels-first
    ones only when every kernel size is a multiple of its stride (even phases), and
    neither below 1024 input pixels in the batch (col2im then costs less)."""
    from cconv import _spec, backward as bw
    def ok(layout, k, stride, n=8):
        last = layout == "NHWC"
        x = np.zeros((n, 12, 12, 16) if last else (n, 16, 12, 12))
        w = np.zeros((k, k, 16, 16) if last else (16, 16, k, k))
        return bw._subpixel_ok(_spec.forward_spec("conv2d", 2, x, w, None, stride, 1, 1, 1,
                                                  "zeros", layout, "auto")[0])
    assert ok("NCHW", 4, 2) and ok("NHWC", 4, 2) and ok("NHWC", 3, 2)
    assert not ok("NCHW", 3, 2) and not ok("NCHW", 3, 1) and not ok("NHWC", 3, 1)
    assert not ok("NCHW", 4, 2, n=7) and not ok("NHWC", 3, 2, n=7)  # 1008 pixels
    # channels-first uneven phases do run where the channels-last one-call phases take
    # them (more than 16 input and at least 16 output channels, one group)
    x, w = np.zeros((8, 24, 12, 12)), np.zeros((16, 24, 3, 3))
    assert bw._subpixel_ok(_spec.forward_spec("conv2d", 2, x, w, None, 2, 1, 1, 1, "zeros",
                                              "NCHW", "auto")[0])
    x, w = np.zeros((8, 48, 12, 12)), np.zeros((32, 24, 3, 3))
    assert not bw._subpixel_ok(_spec.forward_spec("conv2d", 2, x, w, None, 2, 1, 1, 2,
                                                  "zeros", "NCHW", "auto")[0])

    def dw_ok(k):  # channels-first depthwise: phases from kernels of 2 * stride + 1
        x, w = np.zeros((8, 16, 12, 12)), np.zeros((16, 1, k, k))
        return bw._subpixel_ok(_spec.forward_spec("conv2d", 2, x, w, None, 2, 1, 1, 16,
                                                  "zeros", "NCHW", "auto")[0])
    assert dw_ok(5) and dw_ok(7) and not dw_ok(3)
    rng = np.random.default_rng(4)
    for k in (5, 7):  # the phases against the direct loop nest
        w, g = rng.standard_normal((24, 1, k, k)), rng.standard_normal((8, 24, 7, 7))
        a = cconv.conv2d_grad_input(g, w, (8, 24, 14, 14), 2, k // 2, 1, 24)
        b = cconv.conv2d_grad_input(g, w, (8, 24, 14, 14), 2, k // 2, 1, 24,
                                    algorithm="direct")
        assert rel_error(a, b) <= 1e-13


def test_grad_input_forward_form_only_with_enough_channels(monkeypatch):
    """"auto" keeps col2im when the input has few channels per group (the forward
    form's GEMM tiles would be mostly empty) and takes the forward form otherwise, and
    also when grad_out has fewer channels per group still (col2im's GEMM would sum over
    only those)."""
    from cconv import backward as bw
    calls = []
    real = bw._subpixel_grad_input
    monkeypatch.setattr(bw, "_subpixel_grad_input",
                        lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    rng = np.random.default_rng(15)
    for C, O, used in ((3, 8, False), (16, 8, True), (3, 2, True), (8, 8, True),
                       (4, 16, False)):
        calls.clear()
        w = rng.standard_normal((O, C, 4, 4))
        g = rng.standard_normal((11, O, 5, 5))  # 1100 input pixels: large enough
        a = cconv.conv2d_grad_input(g, w, (11, C, 10, 10), 2, 1)
        b = cconv.conv2d_grad_input(g, w, (11, C, 10, 10), 2, 1, algorithm="im2col")
        assert bool(calls) is used
        assert rel_error(a, b) <= 1e-13


# Channels-last stride phases in one call (_im2col.subpixel_nhwc: all phases' items in
# one parallel region, output rows written straight into dx): bitwise the per-phase
# forward calls + strided copies it replaces, for 1-3 threads, with partial pixel and
# column blocks, uneven phases (3x3 / 5x5 with stride 2 / 3), stride == kernel (1x1
# phases), asymmetric padding, groups, phases whose reads all fall outside grad_out,
# 1-D and 3-D, reflect padding folded back, out= pre-filled with NaN, and the float64
# col2im result.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,O,G,sp,k,stride,pad,mode", [
    (2, 2, 48, 64, 1, (33, 37), (3, 3), 2, 1, "zeros"),
    (2, 2, 40, 64, 1, (31, 30), (5, 5), 3, 2, "zeros"),
    (2, 3, 96, 96, 2, (24, 22), (4, 4), 2, 1, "zeros"),             # groups of 48
    (2, 4, 17, 32, 1, (20, 20), (2, 2), 2, 0, "zeros"),             # 1x1 phases
    (2, 2, 33, 40, 1, (29, 35), (3, 2), (2, 1), ((1, 2), (0, 1)), "zeros"),
    (2, 1, 20, 24, 1, (40, 40), (3, 3), 3, 0, "zeros"),             # last rows never read
    (2, 2, 24, 32, 1, (25, 23), (3, 3), 2, 2, "reflect"),
    (1, 4, 48, 64, 1, (700,), (3,), 2, 1, "zeros"),
    (3, 2, 24, 32, 1, (12, 11, 10), (3, 3, 3), 2, 1, "zeros"),
])
def test_grad_input_stride_phases_one_call(dtype, nd, N, C, O, G, sp, k, stride, pad, mode,
                                           monkeypatch):
    from cconv import _im2col, backward as bw
    rng = np.random.default_rng(21)
    lay = LAST_LAYOUT[nd]
    xs, ws = shapes(lay, nd, N, C, O, G, sp, k)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    args = (stride, pad, 1, G)
    g = rng.standard_normal(conv_fn(nd)(x, w, None, *args, padding_mode=mode,
                                        layout=lay).shape).astype(dtype)
    g0, w0 = g.copy(), w.copy()
    gi_fn = bwd_fns(nd)[0]
    calls = []
    real = _im2col.subpixel_nhwc
    monkeypatch.setattr(_im2col, "subpixel_nhwc",
                        lambda *a: (calls.append(1), real(*a))[1])
    out = np.full(x.shape, np.nan, dtype)
    runs = []
    for nth in (1, 2, 3):
        with cconv.num_threads(nth):
            runs.append(gi_fn(g, w, x.shape, *args, padding_mode=mode, layout=lay))
    a = runs[0]
    if mode == "zeros":  # the transposed convolution into out= covers every element
        t_fn = (cconv.conv_transpose1d, cconv.conv_transpose2d, cconv.conv_transpose3d)[nd - 1]
        st = (stride,) * nd if np.isscalar(stride) else stride
        pd = [(pad, pad)] * nd if np.isscalar(pad) else pad
        opad = tuple(n - ((m - 1) * s - b - e + kk) for n, m, s, (b, e), kk in
                     zip(sp, g.shape[1:-1], st, pd, k))
        assert t_fn(g, w, None, stride, pad, opad, G, layout=lay, out=out) is out
        np.testing.assert_array_equal(out, a)
    assert len(calls) == (4 if mode == "zeros" else 3)  # "auto": the one-call phases
    monkeypatch.setattr(bw, "_phases_one_call", lambda *a: False)
    per_phase = gi_fn(g, w, x.shape, *args, padding_mode=mode, layout=lay)
    assert len(calls) == (4 if mode == "zeros" else 3)
    for r in runs[1:] + [per_phase]:
        np.testing.assert_array_equal(r, a)
    assert np.array_equal(g, g0) and np.array_equal(w, w0)
    ref = gi_fn(g.astype(np.float64), w.astype(np.float64), x.shape, *args,
                padding_mode=mode, layout=lay, algorithm="im2col")
    assert rel_error(a, ref) <= (2e-6 if dtype == np.float32 else 1e-13)


def _gi_problem(seed, nd, N, C, O, G, sp, k, args, mode, dtype, batched=True,
                              last=True):
    """x, w, grad_out of a channels-last (last=False: channels-first) problem (args:
    stride, padding, dilation, groups), and its layout."""
    rng = np.random.default_rng(seed)
    lay = LAST_LAYOUT[nd] if last else DEFAULT_LAYOUT[nd]
    xs, ws = shapes(lay, nd, N, C, O, G, sp, k, batched)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    g = rng.standard_normal(conv_fn(nd)(x, w, None, *args, padding_mode=mode,
                                        layout=lay).shape).astype(dtype)
    return lay, x, w, g


def _count_calls(monkeypatch, module, name):
    """A list that grows by one at each call of module.name (still called)."""
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a: (calls.append(1), real(*a))[1])
    return calls


def _grad_input_threads(gi_fn, g, w, x, args, mode, lay):
    """grad_input for 1-3 threads, asserted bitwise equal; the 1-thread result."""
    runs = []
    for nth in (1, 2, 3):
        with cconv.num_threads(nth):
            runs.append(gi_fn(g, w, x.shape, *args, padding_mode=mode, layout=lay))
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])
    assert runs[0].shape == x.shape and runs[0].dtype == x.dtype
    return runs[0]


def _gi_route_case(monkeypatch, module, name, taken, seed, nd, N, C, O, G, sp, k, args,
                   mode, dtype, last=True):
    """A grad_input problem (_gi_problem) whose route is module.name: called once per
    thread count when taken, never otherwise; 1-3 threads bitwise, inputs unchanged,
    within rounding of the float64 col2im result. Returns (lay, x, w, g, result)."""
    lay, x, w, g = _gi_problem(seed, nd, N, C, O, G, sp, k, args, mode, dtype, last=last)
    g0, w0 = g.copy(), w.copy()
    gi_fn = bwd_fns(nd)[0]
    calls = _count_calls(monkeypatch, module, name)
    a = _grad_input_threads(gi_fn, g, w, x, args, mode, lay)
    assert len(calls) == (3 if taken else 0)
    assert np.array_equal(g, g0) and np.array_equal(w, w0)
    ref = gi_fn(g.astype(np.float64), w.astype(np.float64), x.shape, *args,
                padding_mode=mode, layout=lay, algorithm="im2col")
    assert rel_error(a, ref) <= (2e-6 if dtype == np.float32 else 1e-13)
    return lay, x, w, g, a


def _assert_channels_first_as_last(nd, g, w, x, a, args, mode, lay):
    """The channels-first grad_input ``a`` is bitwise the channels-last call's result on
    the same data, and (zero padding) the transposed convolution into out=."""
    last = lambda t: np.ascontiguousarray(np.moveaxis(t, 1, -1))
    wl = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2)))
    al = bwd_fns(nd)[0](last(g), wl, last(x).shape, *args, padding_mode=mode,
                        layout=LAST_LAYOUT[nd])
    np.testing.assert_array_equal(a, np.moveaxis(al, -1, 1))
    if mode == "zeros":
        stride, pad, dil, groups = args
        t_fn = (cconv.conv_transpose1d, cconv.conv_transpose2d, cconv.conv_transpose3d)[nd - 1]
        st, dl = ((v,) * nd if np.isscalar(v) else v for v in (stride, dil))
        pd = [(pad, pad)] * nd if np.isscalar(pad) else pad
        opad = tuple(n - ((o - 1) * s - b - e + d * (q - 1) + 1) for n, o, s, (b, e), d, q
                     in zip(x.shape[2:], g.shape[2:], st, pd, dl, w.shape[2:]))
        out = np.full(x.shape, np.nan, x.dtype)
        assert t_fn(g, w, None, stride, pad, opad, groups, dil, layout=lay, out=out) is out
        np.testing.assert_array_equal(out, a)


def _assert_transposed_into_out(nd, g, w, x, a, stride, pad, dil, groups, lay, batched=True,
                                offset=None):
    """The transposed convolution of g (output_padding chosen to give x's shape) into
    out= pre-filled with NaN is ``a`` exactly (out= offset elements past a 64-byte
    boundary when offset is given)."""
    t_fn = (cconv.conv_transpose1d, cconv.conv_transpose2d, cconv.conv_transpose3d)[nd - 1]
    st, dl = ((v,) * nd if np.isscalar(v) else v for v in (stride, dil))
    pd = [(pad, pad)] * nd if np.isscalar(pad) else pad
    xsp = x.shape[1:-1] if batched else x.shape[:-1]
    gsp = g.shape[1:-1] if batched else g.shape[:-1]
    kk = w.shape[:nd]
    opad = tuple(n - ((o - 1) * s - b - e + d * (q - 1) + 1) for n, o, s, (b, e), d, q
                 in zip(xsp, gsp, st, pd, dl, kk))
    if offset is None:
        out = np.full(x.shape, np.nan, x.dtype)
    else:
        out = aligned_full(x.shape, x.dtype, np.nan, offset)
    assert t_fn(g, w, None, stride, pad, opad, groups, dil, layout=lay, out=out) is out
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,m,sp,k,stride,pad,dil,mode,batched", [
    (2, 2, 19, 2, (13, 11), (3, 3), 1, 1, 1, "zeros", True),
    (2, 1, 16, 4, (9, 12), (5, 5), 1, 2, 1, "reflect", False),
    (2, 2, 24, 3, (14, 15), (3, 3), 2, 1, 1, "zeros", True),        # stride phases
    (2, 2, 17, 2, (10, 9), (3, 2), (1, 2), ((2, 0), (1, 1)), (2, 1), "zeros", True),
    (1, 3, 40, 2, (50,), (4,), 2, 1, 1, "circular", True),
    (3, 2, 11, 2, (5, 6, 4), (3, 3, 3), 1, 1, 1, "replicate", True),
])
def test_grad_input_depthwise_multiplier_per_j(dtype, nd, N, C, m, sp, k, stride, pad, dil,
                                               mode, batched, monkeypatch):
    """Channels-last depthwise grad_input with channel multiplier m > 1 ("auto"): the sum
    over j, in order, of the m = 1 gradients of output channels c * m + j (bitwise the
    public calls on those channels), within rounding of the float64 scatter kernel
    ("direct"), bitwise for 1-3 threads and for the transposed convolution into out=
    (pre-filled with NaN), inputs unchanged."""
    from cconv import backward as bw
    monkeypatch.setattr(bw, "MULTIPLIER_FORWARD_MAX_C", 0)  # the forward form: below
    args = (stride, pad, dil, C)
    lay, x, w, g = _gi_problem(C * m + nd, nd, N, C, C * m, C, sp, k, args,
                                             mode, dtype, batched)
    g0, w0 = g.copy(), w.copy()
    gi_fn = bwd_fns(nd)[0]
    calls = _count_calls(monkeypatch, bw, "_grad_input_per_multiplier")
    a = _grad_input_threads(gi_fn, g, w, x, args, mode, lay)
    if mode == "zeros":  # the transposed convolution into out= takes the same route
        _assert_transposed_into_out(nd, g, w, x, a, stride, pad, dil, C, lay, batched)
    assert len(calls) == (4 if mode == "zeros" else 3)
    terms = [gi_fn(np.ascontiguousarray(g[..., j::m]), np.ascontiguousarray(w[..., j::m]),
                   x.shape, *args, padding_mode=mode, layout=lay) for j in range(m)]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    np.testing.assert_array_equal(a, total)
    assert np.array_equal(g, g0) and np.array_equal(w, w0)
    ref = gi_fn(g.astype(np.float64), w.astype(np.float64), x.shape, *args,
                padding_mode=mode, layout=lay, algorithm="direct")
    assert rel_error(a, ref) <= (2e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,m,sp,k,pad,dil,mode,batched", [
    (2, 2, 2, 8, (13, 11), (5, 5), 2, 1, "zeros", True),
    (2, 1, 16, 4, (9, 12), (5, 5), 2, 1, "reflect", False),
    (2, 2, 17, 2, (10, 9), (3, 2), ((2, 0), (1, 1)), (2, 1), "zeros", True),
    (3, 2, 4, 8, (5, 6, 4), (3, 3, 3), 1, 1, "replicate", True),
    (1, 3, 3, 5, (30,), (7,), 6, 2, "zeros", True),
])
def test_grad_input_depthwise_multiplier_forward_form(dtype, nd, N, C, m, sp, k, pad, dil,
                                                      mode, batched, monkeypatch):
    """Channels-last depthwise grad_input with a channel multiplier, stride 1 and few
    channels ("auto"): one forward convolution with the flipped weight
    (backward._multiplier_forward_form), not the per-multiple sum; against the float64
    scatter kernel ("direct"), bitwise for 1-3 threads and for the transposed
    convolution into NaN-filled out=, inputs unchanged."""
    from cconv import backward as bw, _spec
    args = (1, pad, dil, C)
    lay, x, w, g = _gi_problem(C * m + nd + 7, nd, N, C, C * m, C, sp, k, args,
                               mode, dtype, batched)
    spec = _spec.forward_spec(f"conv{nd}d", nd, x, w, None, 1, pad, dil, C, mode, lay,
                              "auto")[0]
    assert bw._multiplier_forward_form(spec) and not bw._per_multiplier(spec)
    g0, w0 = g.copy(), w.copy()
    gi_fn = bwd_fns(nd)[0]
    calls = _count_calls(monkeypatch, bw, "_grad_input_per_multiplier")
    a = _grad_input_threads(gi_fn, g, w, x, args, mode, lay)
    if mode == "zeros":
        _assert_transposed_into_out(nd, g, w, x, a, 1, pad, dil, C, lay, batched)
    assert not calls
    assert np.array_equal(g, g0) and np.array_equal(w, w0)
    ref = gi_fn(g.astype(np.float64), w.astype(np.float64), x.shape, *args,
                padding_mode=mode, layout=lay, algorithm="direct")
    assert rel_error(a, ref) <= (2e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,sp,k,stride,pad,mode", [
    (2, 2, 19, (33, 31), (3, 3), 2, 1, "zeros"),                   # partial vector
    (2, 2, 40, (29, 30), (5, 5), 2, 2, "reflect"),
    (2, 4, 16, (17, 16), (4, 3), (3, 2), ((2, 0), (1, 1)), "zeros"),
    (2, 4, 33, (24, 14), (3, 3), 3, 0, "zeros"),                   # rows no tap reads
    (1, 4, 24, (400,), (5,), 2, 1, "circular"),
    (3, 2, 20, (10, 9, 7), (3, 3, 3), 2, 1, "zeros"),
    (2, 2, 48, (33, 31), (3, 3), 2, 1, "zeros"),                   # whole vectors
])
def test_grad_input_depthwise_gather(dtype, nd, N, C, sp, k, stride, pad, mode, monkeypatch):
    """Channels-last depthwise grad_input with stride phases runs dwgi.h's gather:
    bitwise the per-phase forward convolutions it replaces (batch x pixels >= 1024,
    where the phases ran; an Inf weight included: the taps over grad_out's padding
    still multiply it by +0), bitwise for 1-3 threads and into the transposed
    convolution's out= (pre-filled with NaN), within rounding of the float64 col2im
    result, inputs unchanged; with the streaming stores of large arrays (forced) into an
    aligned out=, bitwise."""
    from cconv import _backward, _depthwise, backward as bw
    args = (stride, pad, 1, C)
    lay, x, w, g = _gi_problem(C + nd, nd, N, C, C, C, sp, k, args, mode,
                                             dtype)
    g0, w0 = g.copy(), w.copy()
    gi_fn = bwd_fns(nd)[0]
    calls = _count_calls(monkeypatch, _backward, "dw_grad_input_gather")
    a = _grad_input_threads(gi_fn, g, w, x, args, mode, lay)
    assert len(calls) == 3
    if mode == "zeros":
        _assert_transposed_into_out(nd, g, w, x, a, stride, pad, 1, C, lay)
        n0 = len(calls)
        with monkeypatch.context() as m:
            m.setattr(_depthwise, "prefetch_min_bytes", 0)
            for off in (0, 1):
                _assert_transposed_into_out(nd, g, w, x, a, stride, pad, 1, C, lay,
                                            offset=off)
        assert len(calls) == n0 + 2
    assert np.array_equal(g, g0) and np.array_equal(w, w0)
    ref = gi_fn(g.astype(np.float64), w.astype(np.float64), x.shape, *args,
                padding_mode=mode, layout=lay, algorithm="im2col")
    assert rel_error(a, ref) <= (2e-6 if dtype == np.float32 else 1e-13)
    n_calls = len(calls)
    wi = w.copy()
    wi.reshape(-1, C)[0, C // 2] = np.inf
    ai = gi_fn(g, wi, x.shape, *args, padding_mode=mode, layout=lay)
    assert len(calls) == n_calls + 1
    monkeypatch.setattr(bw, "_depthwise_gather", lambda spec: False)
    np.testing.assert_array_equal(gi_fn(g, w, x.shape, *args, padding_mode=mode, layout=lay), a)
    np.testing.assert_array_equal(gi_fn(g, wi, x.shape, *args, padding_mode=mode, layout=lay),
                                  ai)
    assert len(calls) == n_calls + 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,sp,k,stride,pad,mode,taken", [
    (2, 2, 40, (29, 30), (3, 3), 2, 1, "zeros", True),
    (2, 1, 64, (33, 31), (5, 4), (2, 3), ((2, 1), (0, 2)), "reflect", True),
    (1, 2, 32, (700,), (3,), 2, 1, "zeros", True),
    (3, 1, 48, (12, 11, 10), (3, 3, 3), 2, 1, "zeros", True),
    (2, 2, 16, (40, 40), (3, 3), 2, 1, "zeros", False),           # 16 channels
    (2, 1, 32, (16, 16), (3, 3), 2, 1, "zeros", False),           # 8192 elements
])
def test_grad_input_depthwise_gather_channels_first(dtype, nd, N, C, sp, k, stride, pad, mode,
                                                    taken, monkeypatch):
    """Channels-first depthwise strided grad_input runs the gather between transposes
    (from 32 channels and 32768 elements of dx): bitwise the channels-last result of the
    same problem, bitwise for 1-3 threads and into conv_transpose's out= (pre-filled with
    NaN), within rounding of the float64 col2im result."""
    from cconv import _backward
    args = (stride, pad, 1, C)
    lay, x, w, g, a = _gi_route_case(monkeypatch, _backward, "dw_grad_input_gather", taken,
                                     C * nd + len(sp), nd, N, C, C, C, sp, k, args, mode,
                                     dtype, last=False)
    if not taken:
        return
    _assert_channels_first_as_last(nd, g, w, x, a, args, mode, lay)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,O,G,sp,k,stride,pad,mode", [
    (2, 2, 64, 16, 4, (29, 30), (7, 7), 2, 3, "zeros"),
    (2, 2, 32, 8, 1, (33, 31), (5, 4), (2, 2), ((2, 1), (0, 2)), "reflect"),
    (1, 4, 48, 6, 3, (300,), (3,), 2, 1, "zeros"),
    (3, 1, 32, 4, 2, (12, 11, 10), (3, 3, 3), 2, 1, "zeros"),
])
def test_grad_input_few_outputs_via_channels_last(dtype, nd, N, C, O, G, sp, k, stride, pad,
                                                  mode, monkeypatch):
    """Channels-first strided grad_input with uneven phases, >= 16 input and <= 8 output
    channels per group runs channels-last between transposes: bitwise the channels-last
    result of the same problem, bitwise for 1-3 threads and into conv_transpose's out=
    (pre-filled with NaN), within rounding of the float64 col2im result, inputs
    unchanged."""
    from cconv import backward as bw
    args = (stride, pad, 1, G)
    lay, x, w, g = _gi_problem(C + O + nd, nd, N, C, O, G, sp, k, args, mode,
                                             dtype, last=False)
    g0, w0 = g.copy(), w.copy()
    gi_fn = bwd_fns(nd)[0]
    calls = _count_calls(monkeypatch, bw, "_grad_input_via_channels_last")
    a = _grad_input_threads(gi_fn, g, w, x, args, mode, lay)
    assert len(calls) == 3
    assert np.array_equal(g, g0) and np.array_equal(w, w0)
    ref = gi_fn(g.astype(np.float64), w.astype(np.float64), x.shape, *args,
                padding_mode=mode, layout=lay, algorithm="im2col")
    assert rel_error(a, ref) <= (2e-6 if dtype == np.float32 else 1e-13)
    _assert_channels_first_as_last(nd, g, w, x, a, args, mode, lay)
    assert len(calls) == (4 if mode == "zeros" else 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,O,sp,k,stride,pad,mode,taken", [
    (2, 2, 3, 16, (19, 20), (3, 3), 1, 1, "zeros", True),
    (2, 1, 3, 24, (33, 31), (7, 7), 2, 3, "zeros", True),
    (2, 2, 2, 8, (17, 15), (5, 4), (2, 1), ((2, 1), (0, 2)), "reflect", True),
    (1, 3, 1, 12, (300,), (9,), 1, 4, "zeros", True),
    (3, 1, 4, 8, (9, 10, 8), (3, 3, 3), 1, 1, "circular", True),
    (2, 2, 3, 4, (12, 12), (3, 3), 1, 1, "zeros", False),   # too few outputs
    (2, 2, 5, 16, (12, 12), (3, 3), 1, 1, "zeros", False),  # too many inputs
])
def test_grad_input_few_inputs_via_channels_first(dtype, nd, N, C, O, sp, k, stride, pad,
                                                  mode, taken, monkeypatch):
    """Channels-last grad_input with at most 4 input channels (first layers) runs
    channels-first between transposes: bitwise the channels-first result of the same
    problem and for 1-3 threads, within rounding of the float64 col2im result, unbatched
    too, inputs unchanged."""
    from cconv import backward as bw
    args = (stride, pad, 1, 1)
    lay, x, w, g, a = _gi_route_case(monkeypatch, bw, "_grad_input_via_channels_first", taken,
                                     C + O + nd, nd, N, C, O, 1, sp, k, args, mode, dtype)
    if not taken:
        return
    gi_fn = bwd_fns(nd)[0]
    first = lambda t: np.ascontiguousarray(np.moveaxis(t, -1, 1))
    wc = np.ascontiguousarray(np.moveaxis(w, (-1, -2), (0, 1)))
    c = gi_fn(first(g), wc, first(x).shape, *args, padding_mode=mode,
              layout=DEFAULT_LAYOUT[nd])
    np.testing.assert_array_equal(first(a), c)
    np.testing.assert_array_equal(
        gi_fn(g[0], w, x.shape[1:], *args, padding_mode=mode, layout=lay), a[0])


def test_grad_input_depthwise_gather_tap_limit(monkeypatch):
    """More taps per dx pixel than dwgi.c holds (ceil(33 / 2) x 33 = 561 > 512): the
    stride phases run instead of the gather, with the float64 col2im result."""
    from cconv import _backward
    rng = np.random.default_rng(33)
    x = rng.standard_normal((1, 40, 40, 4))
    w = rng.standard_normal((33, 33, 1, 4))
    g = rng.standard_normal(cconv.conv2d(x, w, None, (2, 1), 16, 1, 4, layout="NHWC").shape)
    calls = _count_calls(monkeypatch, _backward, "dw_grad_input_gather")
    a = cconv.conv2d_grad_input(g, w, x.shape, (2, 1), 16, 1, 4, layout="NHWC")
    assert not calls
    ref = cconv.conv2d_grad_input(g, w, x.shape, (2, 1), 16, 1, 4, layout="NHWC",
                                  algorithm="im2col")
    assert rel_error(a, ref) <= 1e-13
    w3 = w[:31, :32]  # ceil(31 / 2) x 32 = 512 exactly: the gather
    g3 = rng.standard_normal(cconv.conv2d(x, w3, None, (2, 1), 16, 1, 4,
                                          layout="NHWC").shape)
    b = cconv.conv2d_grad_input(g3, w3, x.shape, (2, 1), 16, 1, 4, layout="NHWC")
    assert len(calls) == 1
    ref3 = cconv.conv2d_grad_input(g3, w3, x.shape, (2, 1), 16, 1, 4, layout="NHWC",
                                   algorithm="im2col")
    assert rel_error(b, ref3) <= 1e-13


def test_grad_input_stride_phases_one_call_every_isa(tmp_path):
    """The one-call phases give the same bits on every ISA path (uneven 3x3 stride-2
    phases, partial blocks, float32 and float64)."""
    code = """
import numpy as np, cconv
rng = np.random.default_rng(3)
res = {}
for dt in (np.float32, np.float64):
    w = rng.standard_normal((3, 3, 20, 36)).astype(dt)
    g = rng.standard_normal((2, 17, 19, 36)).astype(dt)
    res[dt.__name__] = cconv.conv2d_grad_input(g, w, (2, 33, 37, 20), 2, 1, layout="NHWC")
np.savez(OUTPATH, **res)
"""
    assert_same_on_every_isa(code, tmp_path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,O,sp,k,stride,pad", [
    (2, 2, 24, 32, (33, 37), (3, 3), 2, 1),                 # uneven phases: col2im before
    (2, 2, 20, 48, (26, 30), (4, 4), 2, 1),                 # even phases
    (2, 1, 17, 16, (40, 35), (3, 5), (2, 3), ((0, 2), (1, 1))),
    (1, 3, 32, 24, (500,), (3,), 2, 1),
    (3, 2, 24, 16, (12, 11, 10), (3, 3, 3), 2, 1),
])
def test_grad_input_channels_first_phases_via_channels_last(dtype, nd, N, C, O, sp, k, stride,
                                                            pad, monkeypatch):
    """Channels-first strided input gradients with more than 16 input and at least 16
    output channels run the channels-last one-call phases between transposes: bitwise
    the channels-last result, close to float64 col2im, inputs unchanged."""
    from cconv import _im2col
    calls = []
    real = _im2col.subpixel_nhwc
    monkeypatch.setattr(_im2col, "subpixel_nhwc", lambda *a: (calls.append(1), real(*a))[1])
    rng = np.random.default_rng(22)
    lay, last = DEFAULT_LAYOUT[nd], LAST_LAYOUT[nd]
    xs, ws = shapes(lay, nd, N, C, O, 1, sp, k)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    g = rng.standard_normal(conv_fn(nd)(x, w, None, stride, pad, layout=lay).shape).astype(dtype)
    g0, w0 = g.copy(), w.copy()
    gi_fn = bwd_fns(nd)[0]
    a = gi_fn(g, w, x.shape, stride, pad, layout=lay)
    assert len(calls) == 1
    assert np.array_equal(g, g0) and np.array_equal(w, w0)
    perm = (0,) + tuple(range(2, nd + 2)) + (1,)
    wperm = tuple(range(2, nd + 2)) + (1, 0)
    b = gi_fn(np.ascontiguousarray(g.transpose(perm)), np.ascontiguousarray(w.transpose(wperm)),
              tuple(x.shape[i] for i in perm), stride, pad, layout=last)
    np.testing.assert_array_equal(a, np.moveaxis(b, -1, 1))
    ref = gi_fn(g.astype(np.float64), w.astype(np.float64), x.shape, stride, pad, layout=lay,
                algorithm="im2col")
    assert rel_error(a, ref) <= (2e-6 if dtype == np.float32 else 1e-13)


def test_conv_transpose_subpixel_output_padding(monkeypatch):
    monkeypatch.setattr(cconv.backward, "_forward_form_pays", lambda spec: True)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 8, 5, 5))
    w = rng.standard_normal((8, 4, 4, 4))
    out = np.full((2, 4, 11, 11), np.nan)
    a = cconv.conv_transpose2d(x, w, None, 2, 1, output_padding=1, out=out)
    b = cconv.conv_transpose2d(x, w, None, 2, 1, output_padding=1, algorithm="im2col")
    assert a is out
    assert rel_error(a, b) <= 1e-13


# ----------------------------------------------------------------------------- gwdot

# Channels-first grad_weight by dot products along output rows (_kernels/gwdot.h):
# tiles of 3 x 9 / 4 x 6 (AVX-512), 1 x 6 / 2 x 3 (AVX2), 2 x 4 (C) with edges in both
# directions, rows with partial 16-lane chunks, gapless grids (1x1, strided 1x1),
# groups, dilation, 1-D and 3-D.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,O,G,sp,k,stride,pad,dil", [
    (2, 2, 7, 13, 1, (17, 19), (3, 3), 1, 1, 1),
    (2, 3, 5, 10, 1, (9, 33), (3, 3), 1, 1, 1),
    (2, 2, 12, 8, 1, (20, 20), (3, 3), 2, 1, 1),
    (2, 1, 13, 29, 1, (16, 16), (1, 1), 1, 0, 1),
    (2, 2, 31, 11, 1, (15, 15), (1, 1), 2, 0, 1),
    (2, 2, 8, 16, 8, (30, 30), (7, 7), 1, 3, 1),
    (2, 2, 6, 6, 2, (14, 25), (5, 3), (1, 2), 2, (2, 1)),
    (1, 2, 9, 11, 1, (70,), (4,), 3, 1, 2),
    (3, 1, 5, 7, 1, (6, 9, 21), (3, 3, 3), (2, 1, 2), 1, 1),
])
def test_grad_weight_direct_matches_im2col(dtype, nd, N, C, O, G, sp, k, stride, pad, dil):
    rng = np.random.default_rng(5)
    lay = DEFAULT_LAYOUT[nd]
    xs, ws = shapes(lay, nd, N, C, O, G, sp, k)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    args = (stride, pad, dil, G)
    g = rng.standard_normal(conv_fn(nd)(x, w, None, *args).shape)
    gw_fn = bwd_fns(nd)[1]
    ref = gw_fn(x, g, w.shape, *args, algorithm="im2col")  # float64
    got = gw_fn(x.astype(dtype), g.astype(dtype), w.shape, *args, algorithm="direct")
    assert got.dtype == dtype
    assert rel_error(got, ref) <= (2e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_weight_small_images_via_channels_last(dtype):
    """Channels-first grad_weight on small images with a batch runs the channels-last
    reduction between transposes: the same sums as a channels-last call."""
    from cconv import _plan, _spec
    rng = np.random.default_rng(13)
    x = rng.standard_normal((32, 32, 8, 8)).astype(dtype)
    w = rng.standard_normal((48, 16, 3, 3)).astype(dtype)
    spec = _spec.forward_spec("conv2d", 2, x, w, None, 1, 1, 1, 2, "zeros", "NCHW",
                              "auto")[0]
    assert _plan.nchw_via_nhwc(spec)
    assert _plan.choose_grad_weight(spec, "auto") is _plan.Algorithm.IM2COL
    g = rng.standard_normal((32, 48, 8, 8)).astype(dtype)
    got = cconv.conv2d_grad_weight(x, g, w.shape, 1, 1, 1, 2)
    last = cconv.conv2d_grad_weight(np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                                    np.ascontiguousarray(g.transpose(0, 2, 3, 1)),
                                    (3, 3, 16, 48), 1, 1, 1, 2, layout="NHWC")
    np.testing.assert_array_equal(got, last.transpose(3, 2, 0, 1))
    ref = cconv.conv2d_grad_weight(x.astype(np.float64), g.astype(np.float64), w.shape,
                                   1, 1, 1, 2, algorithm="im2col")
    assert rel_error(got, ref) <= (2e-6 if dtype == np.float32 else 1e-13)


def test_grad_weight_direct_nonfinite_only_where_read():
    """An Inf in an input column that only tap kw=2 reads makes only that tap's
    gradient non-finite (no product of a padding or skipped position enters a sum)."""
    x = np.ones((1, 2, 4, 18), np.float32)
    x[0, 1, 2, 17] = np.inf                      # last column: read by kw=2 only
    g = np.ones((1, 3, 2, 16), np.float32)
    for algo in ("direct", "im2col"):
        gw = cconv.conv2d_grad_weight(x, g, (3, 2, 3, 3), algorithm=algo)
        assert np.isinf(gw[:, 1, 1:3, 2]).all(), algo   # rows kh=1,2 read row 2 at kw=2
        fin = np.ones(gw.shape, bool)
        fin[:, 1, 1:3, 2] = False
        assert np.isfinite(gw[fin]).all(), algo
        np.testing.assert_array_equal(gw[fin], 32.0)
    x[0, 1, 2, 17] = np.nan
    gw = cconv.conv2d_grad_weight(x, g, (3, 2, 3, 3), algorithm="direct")
    assert np.isnan(gw[:, 1, 1:3, 2]).all() and np.isfinite(gw[fin]).all()


# ----------------------------------------------------------------------------- errors

def raises(exc, fn, *patterns):
    with pytest.raises(exc) as info:
        fn()
    for p in patterns:
        assert re.search(p, str(info.value), re.IGNORECASE), (p, str(info.value))


def test_errors():
    x = np.ones((1, 4, 8, 8))
    w = np.ones((6, 2, 3, 3))
    g = np.ones((1, 6, 6, 6))
    raises(ValueError, lambda: cconv.conv2d_grad_input(np.ones((1, 6, 5, 6)), w, x.shape,
                                                       groups=2),
           "conv2d_grad_input", "grad_out", r"\(1, 6, 6, 6\)")
    raises(ValueError, lambda: cconv.conv2d_grad_input(g, w, (4, 8), groups=2),
           "conv2d_grad_input", "input_shape", "3 or 4")
    raises(TypeError, lambda: cconv.conv2d_grad_input(g, w, "abc", groups=2),
           "conv2d_grad_input", "input_shape")
    raises(ValueError, lambda: cconv.conv2d_grad_input(g, w, (1, 4, 8, -8), groups=2),
           "conv2d_grad_input", "input_shape")
    raises(ValueError, lambda: cconv.conv2d_grad_input(g, w, x.shape, groups=1),
           "conv2d_grad_input", "4 channels", "weight expects 2")
    raises(ValueError, lambda: cconv.conv2d_grad_weight(x, g, (6, 2, 3), groups=2),
           "conv2d_grad_weight", "weight_shape")
    raises(ValueError, lambda: cconv.conv2d_grad_weight(x, g, (6, 2, 3, 3), groups=4),
           "conv2d_grad_weight", "groups")
    raises(ValueError, lambda: cconv.conv2d_grad_weight(x, g, (6, 2, 3, 3), 2, groups=2),
           "conv2d_grad_weight", "grad_out")
    raises(TypeError, lambda: cconv.conv2d_grad_weight(x, g.astype(complex), w.shape,
                                                       groups=2), "conv2d_grad_weight",
           "grad_out", "complex")
    raises(ValueError, lambda: cconv.conv2d_backward(g, x, w, groups=2, need=("inputs",)),
           "conv2d_backward", "need", "inputs")
    raises(ValueError, lambda: cconv.conv2d_backward(g[:, :5], x, w, groups=2),
           "conv2d_backward", "grad_out")
    raises(ValueError, lambda: cconv.conv2d_grad_input(g, w, x.shape, groups=2,
                                                       algorithm="winograd"),
           "conv2d_grad_input", "winograd")
    raises(ValueError, lambda: cconv.conv1d_grad_input(np.ones((1, 2, 4)), np.ones((2, 2, 3)),
                                                       (1, 2, 6), padding_mode="mirror"),
           "conv1d_grad_input", "padding_mode")
    raises(ValueError, lambda: cconv.conv3d_grad_weight(np.ones((1, 2, 3, 3, 3)),
                                                        np.ones((1, 2, 1, 1, 1)),
                                                        (2, 2, 3, 3, 3), padding=3,
                                                        padding_mode="reflect"),
           "conv3d_grad_weight", "reflect")


# ----------------------------------------------------------------------------- algorithms

@pytest.mark.parametrize("layout", ["first", "last"])
@pytest.mark.parametrize("nd,C,m,sp,k,stride,pad,dil", [
    (2, 7, 1, (13, 11), (3, 3), 1, 1, 1),
    (2, 5, 3, (9, 12), (3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2)),
    (1, 33, 2, (40,), (5,), 3, "same", 2),
    (3, 4, 1, (5, 6, 4), (3, 3, 1), (1, 2, 1), 1, 1),
])
def test_depthwise_direct_matches_im2col(layout, nd, C, m, sp, k, stride, pad, dil):
    rng = np.random.default_rng(21)
    lay = LAST_LAYOUT[nd] if layout == "last" else DEFAULT_LAYOUT[nd]
    xs, ws = shapes(lay, nd, 2, C, C * m, C, sp, k)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    args = (stride, pad, dil, C)
    y = conv_fn(nd)(x, w, None, *args, layout=lay)
    g = rng.standard_normal(y.shape)
    gi_fn, gw_fn, _ = bwd_fns(nd)
    res = {}
    for algo in ("direct", "im2col", "auto"):
        res[algo] = (gi_fn(g, w, x.shape, *args, layout=lay, algorithm=algo),
                     gw_fn(x, g, w.shape, *args, layout=lay, algorithm=algo))
    for a, b in zip(res["direct"], res["im2col"]):
        assert rel_error(a, b) <= 1e-13
    for a, c in zip(res["direct"], res["auto"]):
        # "auto" may run another algorithm (grad_input at stride 1: the flipped forward
        # convolution; grad_weight: im2col for short output rows)
        assert rel_error(c, a) <= 1e-13
    lhs = np.vdot(y, g)
    assert abs(lhs - np.vdot(x, res["direct"][0])) <= 1e-10 * abs(lhs) + 1e-12
    assert abs(lhs - np.vdot(w, res["direct"][1])) <= 1e-10 * abs(lhs) + 1e-12
    # float32, threads: bitwise identical for 1, 2, 3 threads
    x32, w32, g32 = (a.astype(np.float32) for a in (x, w, g))
    out = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            out.append((gi_fn(g32, w32, x.shape, *args, layout=lay),
                        gw_fn(x32, g32, w.shape, *args, layout=lay)))
    for r in out[1:]:
        for a, b in zip(r, out[0]):
            np.testing.assert_array_equal(a, b)


def test_direct_rejects_dense():
    # grad_input: depthwise-style only; grad_weight: any groups channels-first, depthwise
    # only channels-last
    raises(ValueError, lambda: cconv.conv2d_grad_input(np.ones((1, 2, 3, 3)),
                                                       np.ones((2, 4, 3, 3)), (1, 4, 5, 5),
                                                       algorithm="direct"),
           "conv2d_grad_input", "direct", "depthwise", "4")
    raises(ValueError, lambda: cconv.conv2d_grad_weight(np.ones((1, 5, 5, 4)),
                                                        np.ones((1, 3, 3, 2)), (3, 3, 4, 2),
                                                        layout="NHWC", algorithm="direct"),
           "conv2d_grad_weight", "direct", "depthwise", "4")


def _grad_weight_reference(x, g, k, stride, pads, dil, groups):
    """float64 NCHW weight gradient: for each tap, the strided slice of the padded input
    that the tap reads, contracted with grad_out per group."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0)) + tuple(pads))
    g = g.astype(np.float64)
    N, C = x.shape[:2]
    O, OH, OW = g.shape[1:]
    Cg, Og = C // groups, O // groups
    dw = np.zeros((O, Cg) + tuple(k))
    for kh in range(k[0]):
        for kw in range(k[1]):
            h0, w0 = kh * dil[0], kw * dil[1]
            xs = x[:, :, h0:h0 + stride[0] * (OH - 1) + 1:stride[0],
                   w0:w0 + stride[1] * (OW - 1) + 1:stride[1]]
            for gi in range(groups):
                dw[gi * Og:(gi + 1) * Og, :, kh, kw] = np.einsum(
                    "nohw,nchw->oc", g[:, gi * Og:(gi + 1) * Og], xs[:, gi * Cg:(gi + 1) * Cg])
    return dw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,O,G,sp,k,stride,pads,dil", [
    (5, 7, 1, (9, 13), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    (6, 4, 2, (11, 30), (3, 3), (2, 2), ((1, 0), (0, 2)), (1, 1)),
    (3, 5, 1, (8, 21), (2, 5), (1, 2), ((0, 1), (3, 1)), (2, 1)),
    (9, 6, 3, (7, 17), (3, 3), (3, 3), ((1, 1), (1, 1)), (1, 1)),
    (16, 8, 1, (10, 5), (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1)),
    (4, 3, 1, (6, 40), (3, 3), (1, 2), ((2, 2), (4, 4)), (2, 3)),
])
def test_grad_weight_gemm_channels_first(rng, dtype, C, O, G, sp, k, stride, pads, dil):
    """The channels-first GEMM grad_weight (forced: "auto" gives small problems to
    gwdot), whose B panels gather vectors of (channel, tap) columns per output row with
    each column's padding masked: strides 1 (vector loads), 2 (even lanes) and 3
    (scalar), partial blocks at both row ends, rows wholly in the padding, tail columns."""
    x = rng.standard_normal((2, C) + sp).astype(dtype)
    oh = [(n + b + a - (kk - 1) * d - 1) // s + 1
          for n, (b, a), kk, d, s in zip(sp, pads, k, dil, stride)]
    g = rng.standard_normal((2, O) + tuple(oh)).astype(dtype)
    dw = cconv.conv2d_grad_weight(x, g, (O, C // G) + k, stride, pads, dil, G,
                                  algorithm="im2col")
    ref = _grad_weight_reference(x, g, k, stride, pads, dil, G)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert dw.dtype == dtype
    assert np.abs(dw - ref).max() <= tol * np.abs(ref).max() * np.sqrt(2 * np.prod(oh))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,O,G,sp,k,stride,pads", [
    (4, 3, 20, 1, (40, 37), (7, 7), (2, 2), ((3, 3), (3, 3))),   # a stem: 2 runs
    (2, 4, 12, 2, (64, 50), (3, 3), (1, 1), ((1, 1), (1, 1))),   # 2 groups, 4 runs
    (3, 5, 9, 1, (35, 33), (3, 2), (1, 1), ((1, 0), (0, 1))),    # runs end mid-image
    (2, 64, 40, 1, (30, 31), (1, 1), (1, 1), ((0, 0), (0, 0))),  # 1x1, K = 64
])
def test_grad_weight_gemm_pixel_runs(dtype, N, C, O, G, sp, k, stride, pads):
    """The channels-first GEMM grad_weight with one K block in few groups sums pixel runs
    into partials added in run order (_backward._gw_runs): runs that end inside images
    and tiles, groups; float64 reference, bitwise for 1-3 threads, inputs unchanged."""
    from cconv import _backward
    rng = np.random.default_rng(N * C + O)
    x = rng.standard_normal((N, C) + sp).astype(dtype)
    oh = tuple((n + b + a - (kk - 1) - 1) // s + 1
               for n, (b, a), kk, s in zip(sp, pads, k, stride))
    g = rng.standard_normal((N, O) + oh).astype(dtype)
    K = C // G * int(np.prod(k))
    assert _backward._gw_run_count(G, O // G, K, N * int(np.prod(oh)), x.itemsize) > 1
    x0, g0 = x.copy(), g.copy()
    out = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            out.append(cconv.conv2d_grad_weight(x, g, (O, C // G) + k, stride, pads, 1, G,
                                                algorithm="im2col"))
    for r in out[1:]:
        np.testing.assert_array_equal(r, out[0])
    ref = _grad_weight_reference(x, g, k, stride, pads, (1, 1), G)
    assert out[0].dtype == dtype
    assert rel_error(out[0], ref) <= (2e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)


def _dw_grad_weight_reference_last(x, g, k, stride, pads, dil):
    """float64 channels-last depthwise weight gradient (output channel o reads input
    channel o // m, m = g's channels / x's): per tap, the strided slice of the
    zero-padded input times grad_out, summed over images and pixels. Shape k + (1, O)."""
    nd = len(k)
    C, O = x.shape[-1], g.shape[-1]
    xp = np.pad(x.astype(np.float64), ((0, 0),) + tuple(pads) + ((0, 0),))
    xp = np.repeat(xp, O // C, axis=-1)
    g = g.astype(np.float64)
    dw = np.zeros(tuple(k) + (1, O))
    for tap in np.ndindex(*k):
        sl = tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                   for t, d, s, o in zip(tap, dil, stride, g.shape[1:1 + nd]))
        xs = xp[(slice(None),) + sl].reshape(-1, O)
        dw[tap + (0,)] = np.einsum("pc,pc->c", g.reshape(-1, O), xs)
    return dw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,C,m,sp,k,stride,pads,dil", [
    (2, 19, 1, (13, 11), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),      # partial vectors
    (2, 35, 1, (10, 4), (3, 3), (1, 1), ((2, 2), (1, 1)), (2, 1)),       # 3x3 window, dh 2
    (2, 16, 1, (5, 3), (3, 3), (1, 1), ((1, 0), (0, 0)), (1, 1)),        # one-pixel middle
    (2, 16, 1, (9, 12), (7, 7), (1, 1), ((3, 3), (3, 3)), (1, 1)),       # 49 taps: groups
    (2, 33, 1, (5, 6), (5, 5), (2, 1), ((2, 1), (0, 3)), (1, 2)),        # asymmetric pads
    (2, 8, 1, (3, 3), (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),         # no unchecked pixel
    (2, 17, 2, (6, 7), (2, 6), (3, 1), ((1, 1), (2, 2)), (2, 1)),        # multiplier 2
    (3, 20, 1, (4, 6, 5), (3, 3, 3), (1, 2, 1), ((1, 1), (0, 1), (1, 1)), (1, 1, 2)),
    (3, 3, 4, (4, 5, 6), (3, 3, 3), (1, 1, 1), ((1, 1), (1, 1), (1, 1)), (1, 1, 1)),
    (3, 20, 1, (3, 6, 5), (1, 3, 3), (2, 1, 1), ((1, 1), (1, 1), (1, 1)), (1, 1, 1)),  # KD 1
    (1, 40, 1, (50,), (31,), (2,), ((15, 15),), (1,)),
    (1, 5, 3, (9,), (6,), (1,), ((0, 0),), (1,)),                        # 6 taps
])
def test_depthwise_grad_weight_channels_last_kernel(dtype, nd, C, m, sp, k, stride, pads,
                                                    dil, monkeypatch):
    """The channels-last depthwise grad_weight kernel (dwgw.h): against a float64
    reference with vector tails, tap groups (more taps than registers), checked and
    unchecked pixels, channel multipliers, 1-D to 3-D; bitwise the same for 1-3
    threads and with the rows prefetched ahead (large arrays); inputs unchanged."""
    rng = np.random.default_rng(5)
    lay = LAST_LAYOUT[nd]
    x = rng.standard_normal((2,) + sp + (C,)).astype(dtype)
    osp = tuple((n + b + a - (kk - 1) * d - 1) // s + 1
                for n, (b, a), kk, d, s in zip(sp, pads, k, dil, stride))
    g = rng.standard_normal((2,) + osp + (C * m,)).astype(dtype)
    x0, g0 = x.copy(), g.copy()
    gw_fn = bwd_fns(nd)[1]
    ref = _dw_grad_weight_reference_last(x, g, k, stride, pads, dil)
    out = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            out.append(gw_fn(x, g, k + (1, C * m), stride, pads, dil, C, layout=lay,
                             algorithm="direct"))
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert out[0].dtype == dtype and out[0].shape == ref.shape
    assert np.abs(out[0] - ref).max() <= tol * np.abs(ref).max() * np.sqrt(2 * np.prod(osp))
    from cconv import _depthwise
    monkeypatch.setattr(_depthwise, "prefetch_min_bytes", 0)
    out.append(gw_fn(x, g, k + (1, C * m), stride, pads, dil, C, layout=lay,
                     algorithm="direct"))
    for r in out[1:]:
        np.testing.assert_array_equal(r, out[0])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,C,m,sp,k,stride", [
    (2, 3, 19, 1, (13, 11), 3, 1),      # 20 row blocks of 2 rows, partial vectors
    (2, 2, 16, 1, (9, 12), 7, 1),       # 49 taps: tap groups, bias on the first only
    (2, 2, 17, 2, (7, 6), 3, 2),        # multiplier 2
    (1, 3, 40, 1, (50,), 5, 2),
    (3, 2, 11, 3, (4, 5, 6), 3, 1),
])
def test_depthwise_bias_rides_on_weight_gradient(dtype, nd, N, C, m, sp, k, stride):
    """Channels-last depthwise backward: the weight kernel (dwgw.h) sums the bias as it
    reads grad_out. The bias is bitwise the bias computed alone (need=("bias",), the
    biasgrad pass over the same row blocks) and for 1-3 threads, within double rounding
    of math.fsum, and a NaN stays in its channel."""
    import math
    from cconv import _spec, backward
    rng = np.random.default_rng(C + k)
    lay = LAST_LAYOUT[nd]
    O = C * m
    x = rng.standard_normal((N,) + sp + (C,)).astype(dtype)
    w = rng.standard_normal((k,) * nd + (1, O)).astype(dtype)
    y = conv_fn(nd)(x, w, None, stride, k // 2, 1, C, layout=lay)
    g = (rng.standard_normal(y.shape) * 10 ** rng.uniform(-2, 2, y.shape)).astype(dtype)
    g0 = g.copy()
    spec = _spec.backward_spec(f"conv{nd}d_backward", nd, g, x, w, stride, k // 2, 1, C,
                               "zeros", lay, ("bias",))[0]
    assert backward._bias_with_weight(spec)
    bwd = bwd_fns(nd)[2]
    full = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            full.append(bwd(g, x, w, stride, k // 2, 1, C, layout=lay))
    alone = bwd(g, x, w, stride, k // 2, 1, C, layout=lay, need=("bias",))[2]
    for r in full:
        np.testing.assert_array_equal(r[2], alone)
        np.testing.assert_array_equal(r[1], full[0][1])
    cols = g.reshape(-1, O).astype(np.float64).T
    exact = np.array([math.fsum(c) for c in cols])
    scale = np.abs(cols).sum(axis=1)
    assert alone.dtype == dtype and alone.shape == (O,)
    assert np.all(np.abs(alone - exact) <= np.abs(exact) * np.finfo(dtype).eps
                  + scale * cols.shape[1] * 2e-16)
    np.testing.assert_array_equal(g, g0)
    g2 = g.copy()
    g2.reshape(-1, O)[-1, O - 1] = np.nan
    b2 = bwd(g2, x, w, stride, k // 2, 1, C, layout=lay)[2]
    assert np.isnan(b2[O - 1])
    np.testing.assert_array_equal(b2[:O - 1], alone[:O - 1])


def test_depthwise_grad_weight_channels_last_inf_only_where_read():
    """An Inf in grad_out at the top-left pixel reaches only the taps that read inside
    the image there: the taps over the padding form no product (no Inf * 0 = NaN)."""
    x = np.ones((1, 5, 6, 18), np.float32)
    g = np.ones((1, 5, 6, 18), np.float32)
    g[0, 0, 0, 3] = np.inf
    gw = cconv.conv2d_grad_weight(x, g, (3, 3, 1, 18), 1, 1, 1, 18, layout="NHWC")
    ref = _dw_grad_weight_reference_last(x, np.where(np.isinf(g), 0, g), (3, 3), (1, 1),
                                         ((1, 1), (1, 1)), (1, 1))
    inf = np.zeros(gw.shape, bool)
    inf[1:, 1:, 0, 3] = True
    assert np.isposinf(gw[inf]).all()
    np.testing.assert_array_equal(gw[~inf], ref[~inf])


@pytest.mark.parametrize("nd,C,O,G,k,stride", [
    (2, 3, 16, 1, 3, 1), (2, 3, 8, 1, 7, 2), (2, 16, 8, 4, 5, 1), (1, 4, 6, 1, 3, 1),
    (3, 2, 5, 1, 3, 1), (3, 12, 6, 3, 3, 2), (2, 8, 16, 1, 3, 1),
    (1, 1, 12, 1, 9, 2), (2, 1, 16, 1, 3, 1), (3, 1, 4, 1, 3, 1),
])
def test_grad_weight_channels_last_few_channels(nd, C, O, G, k, stride):
    """Channels-last weight gradients with few input channels per group (grouped < 16,
    dense <= 4, one channel too) run channels-first between transposes
    (_plan.nhwc_grad_weight_via_nchw) unless _gw_cols takes them in place:
    same result as the channels-first call on the same data, within float32 rounding of
    the float64 result, bitwise for 1-3 threads."""
    from cconv import _plan, _spec
    rng = np.random.default_rng(C * O + k)
    lay = LAST_LAYOUT[nd]
    sp = {1: (40,), 2: (13, 11), 3: (7, 6, 5)}[nd]
    xs, ws = shapes(lay, nd, 2, C, O, G, sp, (k,) * nd)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    y = conv_fn(nd)(x, w, None, stride, k // 2, 1, G, layout=lay)
    g = rng.standard_normal(y.shape).astype(np.float32)
    spec = _spec.backward_spec(f"conv{nd}d_backward", nd, g, x, w, stride, k // 2, 1, G,
                               "zeros", lay, ("weight",))[0]
    from cconv import _backward
    Cg, Og = C // G, O // G
    if Cg < _backward.gw_cols_max_cg():   # in place through _gw_cols but for few outputs
        via = Og < 64 if G > 1 else (Og <= 32 if Cg == 1 else Og < 32)
    else:
        via = (G > 1 and Og < 16) or (G == 1 and C <= 4)
    assert _plan.nhwc_grad_weight_via_nchw(spec) == via
    gw_fn = bwd_fns(nd)[1]
    out = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            out.append(gw_fn(x, g, w.shape, stride, k // 2, 1, G, layout=lay))
    for r in out[1:]:
        np.testing.assert_array_equal(r, out[0])
    ref = gw_fn(x.astype(np.float64), g.astype(np.float64), w.shape, stride, k // 2, 1, G,
                layout=lay, algorithm="im2col")
    assert out[0].dtype == np.float32 and out[0].shape == w.shape
    assert rel_error(out[0], ref) <= 2e-6
    if not _plan.nhwc_grad_weight_via_nchw(spec):
        return
    first = (0, nd + 1) + tuple(range(1, nd + 1))       # channels-last -> first
    wfirst = (nd + 1, nd) + tuple(range(nd))            # (*k, Cg, O) -> (O, Cg, *k)
    cf = gw_fn(np.ascontiguousarray(x.transpose(first)), np.ascontiguousarray(g.transpose(first)),
               tuple(w.shape[i] for i in wfirst), stride, k // 2, 1, G)
    np.testing.assert_array_equal(out[0], cf.transpose(tuple(range(2, nd + 2)) + (1, 0)))


def _grad_weight_reference_last(x, dy, k, stride, pad, dil, G):
    """float64 channels-last dW (*k, C/G, O): one product per tap and group over the
    zero-padded x."""
    nd = len(k)
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    xp = np.pad(x, [(0, 0)] + [(p, p) for p in pad] + [(0, 0)])
    Cg, O = x.shape[-1] // G, dy.shape[-1]
    Og, osp = O // G, dy.shape[1:-1]
    dw = np.zeros(tuple(k) + (Cg, O))
    for t in np.ndindex(*k):
        sl = tuple(slice(t[i] * dil[i], t[i] * dil[i] + stride[i] * (osp[i] - 1) + 1, stride[i])
                   for i in range(nd))
        xs = xp[(slice(None),) + sl]
        for g in range(G):
            a = xs[..., g * Cg:(g + 1) * Cg].reshape(-1, Cg)
            dw[t][:, g * Og:(g + 1) * Og] = a.T @ dy[..., g * Og:(g + 1) * Og].reshape(-1, Og)
    return dw


def _gw_last_problem(seed, nd, N, sp, C, O, G, k, stride, pad, dil, dtype):
    """x, grad_out, weight shape and layout of a channels-last grad_weight problem."""
    rng = np.random.default_rng(seed)
    kk, st_, pd, dl = ((v,) * nd if np.isscalar(v) else v for v in (k, stride, pad, dil))
    lay = LAST_LAYOUT[nd]
    xs, ws = shapes(lay, nd, N, C, O, G, sp, kk)
    x = rng.standard_normal(xs).astype(dtype)
    osp = tuple((n + 2 * p - d * (q - 1) - 1) // s + 1 for n, p, d, q, s in zip(sp, pd, dl, kk, st_))
    g = rng.standard_normal((N,) + osp + (O,)).astype(dtype)
    return x, g, ws, lay, (kk, st_, pd, dl)


def _assert_gw_last(x, g, ws, lay, args, G, dtype):
    """The channels-last grad_weight of (x, g): bitwise for 1-3 threads, within rounding
    of the float64 reference, inputs unchanged."""
    kk, st_, pd, dl = args
    x0, g0 = x.copy(), g.copy()
    gw_fn = bwd_fns(len(kk))[1]
    out = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            out.append(gw_fn(x, g, ws, st_, pd, dl, G, layout=lay))
    for r in out[1:]:
        np.testing.assert_array_equal(r, out[0])
    ref = _grad_weight_reference_last(x, g, kk, st_, pd, dl, G)
    assert out[0].dtype == dtype and out[0].shape == ws
    assert rel_error(out[0], ref) <= (2e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,sp,C,O,G,k,stride,pad,dil", [
    (2, (23, 29), 9, 33, 1, 3, 1, 1, 1),     # tiles of 224 pixels start mid-row
    (2, (20, 17), 20, 40, 1, 3, 2, 1, 1),    # stride 2, partial channel and column blocks
    (2, (12, 13), 5, 1, 1, 3, 1, 4, 2),      # pad past the dilated kernel: whole rows skipped
    (2, (15, 14), 34, 64, 2, 5, 3, 2, 1),    # groups of 17 channels, stride 3
    (1, (300,), 17, 31, 1, 4, 1, 3, 2),
    (3, (6, 7, 9), 16, 24, 1, 3, 1, 1, 1),
    (3, (5, 8, 6), 12, 20, 1, 2, (1, 2, 1), (0, 1, 2), (2, 1, 1)),
])
def test_grad_weight_channels_last_rows(isa, dtype, nd, sp, C, O, G, k, stride, pad, dil):
    """Channels-last weight gradients on x read in place (gwrows ukernels): channel
    blocks and column panels with partial edges, pixel tiles that start mid-row, taps
    whose input rows lie wholly in the padding; float64 reference, bitwise for 1-3
    threads, inputs unchanged."""
    _assert_gw_last(*_gw_last_problem(C * 100 + O, nd, 3, sp, C, O, G, k, stride, pad, dil,
                                      dtype), G, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd,N,sp,C,O,G,k,stride,pad,dil", [
    (2, 3, (23, 29), 3, 33, 1, 3, 1, 1, 1),     # 27 of 32 rows, a last 1-column panel
    (2, 3, (20, 17), 1, 40, 1, 3, 2, 1, 1),     # one channel, stride 2
    (2, 2, (12, 13), 2, 7, 1, 3, 1, 4, 2),      # pad past the dilated kernel
    (2, 3, (15, 14), 6, 64, 2, 5, 3, 2, 1),     # groups of 3 channels, stride 3
    (1, 2, (300,), 1, 70, 1, 10, 5, 0, 1),      # wav2vec 2.0's first layer, K = 10
    (3, 2, (6, 7, 9), 3, 24, 1, 3, 1, 1, 1),
    (2, 3, (60, 50), 3, 20, 1, 3, 1, 1, 1),     # 16 pixel runs, a partial last tile
    (2, 1, (40, 33), 2, 16, 1, (3, 5), (1, 2), (1, 2), (2, 1)),
    (2, 2, (11, 10), 7, 9, 1, 3, 1, 1, 1),      # 7 channels: AVX-512's 8-row tile only
    (2, 4, (30, 30), 4, 12, 1, 1, 1, 0, 1),     # 1x1
])
def test_grad_weight_channels_last_cols(monkeypatch, isa, dtype, nd, N, sp, C, O, G, k,
                                        stride, pad, dil):
    """Channels-last weight gradients with fewer channels per group than the tile's rows
    in place (the route through channels-first off): im2col rows of (tap, channel)
    pairs (_gw_cols), the last row panel and column panel partial, one run of pixels or
    up to 16 with partial sums; float64 reference, bitwise for 1-3 threads, inputs
    unchanged."""
    from cconv import _plan, functional
    monkeypatch.setattr(_plan, "nhwc_grad_weight_via_nchw", lambda spec: False)
    functional._FAST.clear()
    _assert_gw_last(*_gw_last_problem(C * 100 + O, nd, N, sp, C, O, G, k, stride, pad, dil,
                                      dtype), G, dtype)


@pytest.mark.parametrize("nd,N,sp,C,O,G,k,pad", [
    (2, 2, (9, 11), 3, 40, 1, 3, 1),
    (1, 3, (50,), 2, 33, 1, 5, 2),
    (3, 1, (5, 6, 4), 1, 36, 1, 3, 1),
    (2, 2, (10, 8), 6, 24, 2, 3, 1),
])
def test_grad_weight_cols_nan_grad_out(monkeypatch, nd, N, sp, C, O, G, k, pad):
    """The in-place channels-last path for few channels per group multiplies padding
    zeros too (README, NaN and Inf): a NaN grad_out value at a corner pixel makes every
    weight of its output channel NaN, taps over the padding included, and nothing else;
    the channel-block path (switch off) leaves the padding taps finite. Shows which
    path ran."""
    from cconv import _backward, _plan, functional
    if C // G >= _backward.gw_cols_max_cg():
        pytest.skip("more channels per group than this ISA's tile rows")
    monkeypatch.setattr(_plan, "nhwc_grad_weight_via_nchw", lambda spec: False)
    functional._FAST.clear()
    x, g, ws, lay, args = _gw_last_problem(5, nd, N, sp, C, O, G, k, 1, pad, 1, np.float32)
    o = O - 1
    g[(0,) * (nd + 1) + (o,)] = np.nan
    gw_fn = bwd_fns(nd)[1]
    dw = gw_fn(x, g, ws, 1, pad, 1, G, layout=lay)
    assert np.isnan(dw[..., o]).all()
    assert np.isfinite(np.delete(dw, o, axis=-1)).all()
    _backward._set_gw_cols(False)
    try:
        rows = gw_fn(x, g, ws, 1, pad, 1, G, layout=lay)
    finally:
        _backward._set_gw_cols(True)
    # the corner pixel's taps that read the padding: finite on the channel-block path
    assert np.isfinite(rows[..., o]).any() and np.isnan(rows[..., o]).any()
    assert np.isfinite(np.delete(rows, o, axis=-1)).all()


@pytest.mark.parametrize("C,O,G,k,via", [
    (3, 64, 1, 7, False), (3, 16, 1, 3, True), (2, 64, 1, 5, False), (1, 64, 1, 9, False),
    (4, 32, 1, 3, False), (1, 32, 1, 3, True), (1, 16, 1, 3, True), (8, 32, 4, 3, True),
    (6, 48, 2, 3, True), (12, 192, 2, 3, False),
    (24, 48, 2, 3, False), (96, 96, 8, 3, True), (16, 256, 2, 1, False), (3, 128, 1, 1, False),
])
def test_grad_weight_cols_route(C, O, G, k, via):
    """Channels-last grad_weight with few channels per group stays in place (_gw_cols)
    except with few outputs (dense: below 32, one channel: up to 32, groups: below 64
    each), which keep the route through channels-first (measured, _plan docstring);
    groups of 8-15 channels (no _gw_cols) keep it with fewer than 16 outputs per group."""
    from cconv import _backward, _plan, _spec
    if C // G < 8 and C // G >= _backward.gw_cols_max_cg():
        pytest.skip("this ISA's tile rows leave the problem on the channel-block path")
    spec = _spec.forward_spec("conv2d", 2, np.zeros((8, 32, 32, C), np.float32),
                              np.zeros((k, k, C // G, O), np.float32), None, 1, k // 2, 1, G,
                              "zeros", "NHWC", "auto")[0]
    assert _plan.nhwc_grad_weight_via_nchw(spec) is via


@pytest.mark.parametrize("nd,sp,C,O,k,stride,pad,dil,mode", [
    (2, (16, 16), 32, 64, 3, 1, 1, 1, "zeros"),
    (2, (13, 11), 16, 40, 5, 1, 2, 1, "reflect"),
    (2, (12, 12), 24, 32, 3, 1, 2, 2, "zeros"),
    (1, (70,), 16, 33, 3, 1, 1, 1, "circular"),
    (3, (5, 6, 7), 16, 32, 3, 1, 1, 1, "zeros"),
    (2, (17, 14), 64, 40, 3, 2, 1, 1, "zeros"),
    (2, (16, 19), 20, 32, 4, (2, 3), 1, 1, "replicate"),
    (3, (7, 6, 9), 16, 32, 3, 2, 1, 1, "zeros"),
    (3, (6, 6, 6), 16, 16, 5, 1, 2, 1, "zeros"),     # 3-D, at most 16 outputs
    (3, (6, 7, 5), 16, 8, 5, 1, 2, 1, "zeros"),      # 8 outputs, 125 taps
    (3, (5, 6, 7), 24, 4, 7, 1, 3, 1, "reflect"),
])
def test_grad_weight_channels_first_via_channels_last(nd, sp, C, O, k, stride, pad, dil, mode):
    """Dense channels-first weight gradients (stride 1, or strided with at most 64
    input channels) run channels-last between transposes
    (_plan.nchw_grad_weight_via_nhwc): float64 reference, bitwise for 1-3 threads, the
    same values (within float32 rounding) as the channels-first GEMM."""
    from cconv import _plan, _spec
    rng = np.random.default_rng(C + O + k)
    lay = DEFAULT_LAYOUT[nd]
    xs, ws = shapes(lay, nd, 3, C, O, 1, sp, (k,) * nd)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    y = conv_fn(nd)(x, w, None, stride, pad, dil, padding_mode=mode)
    g = rng.standard_normal(y.shape).astype(np.float32)
    spec = _spec.backward_spec(f"conv{nd}d_backward", nd, g, x, w, stride, pad, dil, 1, mode,
                               lay, ("weight",))[0]
    assert _plan.nchw_grad_weight_via_nhwc(spec)
    gw_fn = bwd_fns(nd)[1]
    out = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            out.append(gw_fn(x, g, w.shape, stride, pad, dil, padding_mode=mode))
    for r in out[1:]:
        np.testing.assert_array_equal(r, out[0])
    ref = gw_fn(x.astype(np.float64), g.astype(np.float64), w.shape, stride, pad, dil,
                padding_mode=mode, algorithm="im2col")
    assert out[0].dtype == np.float32 and out[0].shape == w.shape
    assert rel_error(out[0], ref) <= 2e-6
    cf = gw_fn(x, g, w.shape, stride, pad, dil, padding_mode=mode, algorithm="im2col")
    assert rel_error(out[0], cf) <= 4e-6


def test_grad_weight_channels_first_strided_via_only_few_channels():
    """Strided channels-first weight gradients go channels-last up to 64 input
    channels (the channels-first GEMM reduction is as fast from 128 on)."""
    from cconv import _plan, _spec

    def via(C, stride):
        x, w = np.zeros((8, C, 28, 28), np.float32), np.zeros((128, C, 3, 3), np.float32)
        g = np.zeros((8, 128) + ((14, 14) if stride == 2 else (28, 28)), np.float32)
        return _plan.nchw_grad_weight_via_nhwc(_spec.backward_spec(
            "conv2d_backward", 2, g, x, w, stride, 1, 1, 1, "zeros", "NCHW", ("weight",))[0])
    assert via(64, 2) and via(128, 1) and not via(128, 2) and not via(256, 2)


def test_grad_weight_3d_few_outputs_via_limits():
    """3-D channels-first weight gradients with at most _plan.GW_VIA_3D_MAX_O outputs go
    channels-last at stride 1, except at most GW_VIA_3D_FEW_O outputs with 27 taps or
    fewer (gwdot wins there); 2-D ones with 16 outputs stay."""
    from cconv import _plan, _spec

    def via(O, k, stride=1, nd=3, C=32):
        sp = (12,) * nd
        x, w = np.zeros((2, C) + sp, np.float32), np.zeros((O, C) + (k,) * nd, np.float32)
        y = conv_fn(nd)(x, w, None, stride, k // 2)
        return _plan.nchw_grad_weight_via_nhwc(_spec.backward_spec(
            f"conv{nd}d_backward", nd, y, x, w, stride, k // 2, 1, 1, "zeros",
            DEFAULT_LAYOUT[nd], ("weight",))[0])
    assert via(16, 3) and via(16, 7) and via(8, 5) and via(4, 7)
    assert not via(8, 3) and not via(4, 3) and not via(16, 3, stride=2)
    assert not via(16, 3, C=8) and not via(16, 3, nd=2)


# ----------------------------------------------------------------------------- 1x1 strided
# A strided 1x1 convolution without padding reads every stride-th input position only:
# "auto" runs forward and grad_weight on a subsampled copy of x and scatters grad_input's
# stride-1 gradient back (_plan.pointwise_strided_spec), where that pays. Each op against
# its im2col run (float64, rel 1e-13) and in float32; 1-3 threads bitwise; grad_input
# into a NaN-filled out= (the positions not read must come back zero); inputs unchanged.
@pytest.mark.parametrize("nd,layout,N,C,O,G,sp,stride,ops", [
    (3, "first", 2, 8, 12, 1, (7, 6, 9), 2, ("forward", "grad_input", "grad_weight")),
    (3, "last", 2, 8, 12, 2, (5, 8, 6), (2, 1, 3), ("forward", "grad_input", "grad_weight")),
    (2, "last", 2, 24, 16, 2, (11, 9), 2, ("forward", "grad_input", "grad_weight")),
    (2, "last", 1, 32, 8, 2, (8, 9), 2, ("grad_input", "grad_weight")),  # 16 per group
    (2, "first", 3, 6, 10, 2, (9, 12), (3, 2), ("forward", "grad_input", "grad_weight")),
    (2, "last", 2, 16, 8, 1, (7, 9), 2, ("grad_input",)),
    (2, "first", 1, 5, 40, 1, (8, 8), 2, ("forward", "grad_input")),
    (1, "first", 2, 4, 6, 2, (17,), 3, ("forward", "grad_input", "grad_weight")),
])
def test_pointwise_strided_routes(nd, layout, N, C, O, G, sp, stride, ops):
    from cconv import _plan, _spec
    rng = np.random.default_rng(N + C + O)
    lay = LAST_LAYOUT[nd] if layout == "last" else DEFAULT_LAYOUT[nd]
    xs, ws = shapes(lay, nd, N, C, O, G, sp, (1,) * nd)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    args = (stride, 0, 1, G)
    y = conv_fn(nd)(x, w, None, *args, layout=lay, algorithm="im2col")
    g = rng.standard_normal(y.shape)
    spec = _spec.forward_spec(f"conv{nd}d", nd, x, w, None, stride, 0, 1, G, "zeros", lay,
                              "auto")[0]
    for op in ("forward", "grad_input", "grad_weight"):
        assert (_plan.pointwise_strided_spec(spec, op) is not None) == (op in ops), op
    gi_fn, gw_fn = bwd_fns(nd)[:2]
    x0, w0, g0 = x.copy(), w.copy(), g.copy()
    calls = {
        "forward": lambda a, b, c, alg, out=None: conv_fn(nd)(a, b, None, *args, layout=lay,
                                                             algorithm=alg, out=out),
        "grad_input": lambda a, b, c, alg, out=None: gi_fn(c, b, a.shape, *args, layout=lay,
                                                           algorithm=alg),
        "grad_weight": lambda a, b, c, alg, out=None: gw_fn(a, c, b.shape, *args, layout=lay,
                                                            algorithm=alg),
    }
    for op, call in calls.items():
        ref = call(x, w, g, "im2col")
        runs = []
        for nth in (1, 2, 3):
            with cconv.num_threads(nth):
                runs.append(call(x, w, g, "auto"))
        for r in runs[1:]:
            np.testing.assert_array_equal(r, runs[0])
        assert runs[0].shape == ref.shape and rel_error(runs[0], ref) <= 1e-13, op
        r32 = call(x.astype(np.float32), w.astype(np.float32), g.astype(np.float32), "auto")
        assert r32.dtype == np.float32 and rel_error(r32, ref) <= 2e-6, op
        if op == "grad_input" and layout == "first":
            # the transposed convolution is this grad_input; into a NaN-filled out=
            s = spec.as3d(spec.stride, 1)[3 - nd:]
            opad = tuple(n - ((o - 1) * st + 1) for n, o, st in zip(sp, g.shape[2:], s))
            out = np.full(x.shape, np.nan)
            t = getattr(cconv, f"conv_transpose{nd}d")(g, w, None, stride, 0, opad, G,
                                                       layout=lay, out=out)
            assert t is out
            np.testing.assert_array_equal(out, runs[0])
        if op == "forward":  # unbatched
            np.testing.assert_array_equal(call(x[0], w, g, "auto"), runs[0][0])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,O,G,via", [(3, 100, 1, False), (2, 64, 1, False), (8, 24, 2, True)])
def test_grad_weight_channels_last_1x1_few_channels(dtype, C, O, G, via):
    """Channels-last 1x1 grad_weight with a few input channels: dense layers stay
    channels-last (the reduction then splits dY's column panels over the threads, the
    same sums), grouped ones go channels-first (_plan.nhwc_grad_weight_via_nchw); against
    the channels-first result, 1-3 threads bitwise."""
    from cconv import _plan, _spec
    rng = np.random.default_rng(C + O)
    x = rng.standard_normal((3, 9, 11, C)).astype(dtype)
    g = rng.standard_normal((3, 9, 11, O)).astype(dtype)
    w = np.zeros((1, 1, C // G, O), dtype)
    spec = _spec.forward_spec("conv2d", 2, x, w, None, 1, 0, 1, G, "zeros", "NHWC",
                              "auto")[0]
    assert _plan.nhwc_grad_weight_via_nchw(spec) == via
    runs = []
    for nth in (1, 2, 3):
        with cconv.num_threads(nth):
            runs.append(cconv.conv2d_grad_weight(x, g, w.shape, 1, 0, 1, G, layout="NHWC"))
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])
    ref = cconv.conv2d_grad_weight(np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
                                   np.ascontiguousarray(g.transpose(0, 3, 1, 2)),
                                   (O, C // G, 1, 1), 1, 0, 1, G)
    assert rel_error(runs[0], ref.transpose(2, 3, 1, 0)) <= (2e-6 if dtype == np.float32
                                                             else 1e-13)
