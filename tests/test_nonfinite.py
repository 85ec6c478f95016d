"""NaN / Inf semantics, per algorithm, as the README ("NaN and Inf") documents them.

Outputs are compared by class (finite / NaN / +Inf / -Inf) with a float64 NumPy
reference that follows IEEE arithmetic term by term: an output is NaN iff a NaN, a
0 x Inf product or Infs of both signs enter its sum, +-Inf iff Infs of one sign enter
it (the test values are small: no finite sum overflows), else finite.

* Exact in every algorithm (but Winograd) and both directions: non-finite values in the
  operand that is zero-padded (x in the forward pass and in grad_weight, grad_out in
  grad_input and the transposed convolutions) with the other operand finite.
* What "enters the sum" at the zero padding is where the algorithms differ, and it shows
  only when the other operand (the weights; grad_out in grad_weight) is non-finite: a tap
  in the padding contributes w * 0 ("padded" model: NaN for a NaN/Inf w, as if the input
  had been padded with zeros) or nothing ("skip" model). Forward: im2col, depthwise and
  Winograd follow the padded model, the dense direct loop nest the skip model. Backward:
  it depends on the internal path, so only the bounds are checked: the IEEE non-finite
  outputs are non-finite, and nothing outside the channel concerned changes.
* Winograd also spreads a non-finite input to the whole output tile(s) whose input patch
  holds it, and a non-finite weight to its whole output channel.
"""
import itertools
import warnings

import numpy as np
import pytest

import cconv
from reference import CHANNELS_LAST, DEFAULT_LAYOUT, LAST_LAYOUT

FINITE, NAN, POS, NEG = 0, 1, 2, 3


def classes(a):
    a = np.asarray(a)
    c = np.zeros(a.shape, np.int8)
    c[np.isnan(a)] = NAN
    c[np.isposinf(a)] = POS
    c[np.isneginf(a)] = NEG
    return c


def _to_first(a, layout, weight=False):
    """Channels-last array (x or weight) -> channels-first."""
    if layout not in CHANNELS_LAST:
        return a
    nd = a.ndim - 2
    if weight:  # (*k, Cg, O) -> (O, Cg, *k)
        return np.transpose(a, (nd + 1, nd) + tuple(range(nd)))
    return np.moveaxis(a, -1, 1)


def _to_layout(a, layout, weight=False):
    """Channels-first array -> the layout's own (contiguous)."""
    if layout not in CHANNELS_LAST:
        return np.ascontiguousarray(a)
    nd = a.ndim - 2
    if weight:  # (O, Cg, *k) -> (*k, Cg, O)
        return np.ascontiguousarray(np.transpose(a, tuple(range(2, nd + 2)) + (1, 0)))
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _geometry(x_sp, k, stride, pads, dil):
    return tuple((n + b + a - d * (kk - 1) - 1) // s + 1
                 for n, kk, s, (b, a), d in zip(x_sp, k, stride, pads, dil))


def _taps(k, stride, dil, out_sp):
    for tap in itertools.product(*(range(kk) for kk in k)):
        yield tap, tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                         for t, d, s, o in zip(tap, dil, stride, out_sp))


def ieee_forward(x, w, stride, pads, dil, groups, skip_padding):
    """Channels-first float64 forward, term by term. skip_padding: taps that land in the
    zero padding contribute nothing (else they contribute w * 0)."""
    nd = x.ndim - 2
    N, C = x.shape[:2]
    O, Cg = w.shape[:2]
    Og = O // groups
    k = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    inside = np.pad(np.ones(x.shape[2:], bool), tuple(pads))
    out_sp = _geometry(x.shape[2:], k, stride, pads, dil)
    y = np.zeros((N, O) + out_sp)
    with np.errstate(invalid="ignore", over="ignore"):
        for tap, sl in _taps(k, stride, dil, out_sp):
            for o in range(O):
                for c in range(Cg):
                    term = w[(o, c) + tap] * xp[(slice(None), (o // Og) * Cg + c) + sl]
                    if skip_padding:
                        term = np.where(inside[sl], term, 0.0)
                    y[:, o] += term
    return y


def ieee_grad_input(dy, w, x_shape, stride, pads, dil, groups):
    nd = dy.ndim - 2
    O, Cg = w.shape[:2]
    Og = O // groups
    k = w.shape[2:]
    padded = tuple(n + b + a for n, (b, a) in zip(x_shape[2:], pads))
    dxp = np.zeros(tuple(x_shape[:2]) + padded)
    with np.errstate(invalid="ignore", over="ignore"):
        for tap, sl in _taps(k, stride, dil, dy.shape[2:]):
            for o in range(O):
                for c in range(Cg):
                    dxp[(slice(None), (o // Og) * Cg + c) + sl] += w[(o, c) + tap] * dy[:, o]
    crop = tuple(slice(b, b + n) for n, (b, _) in zip(x_shape[2:], pads))
    return dxp[(slice(None), slice(None)) + crop]


def ieee_grad_weight(x, dy, w_shape, stride, pads, dil, groups, skip_padding):
    O, Cg = w_shape[:2]
    Og = O // groups
    k = w_shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    inside = np.pad(np.ones(x.shape[2:], bool), tuple(pads))
    dw = np.zeros(w_shape)
    with np.errstate(invalid="ignore", over="ignore"):
        for tap, sl in _taps(k, stride, dil, dy.shape[2:]):
            for o in range(O):
                for c in range(Cg):
                    term = dy[:, o] * xp[(slice(None), (o // Og) * Cg + c) + sl]
                    if skip_padding:
                        term = np.where(inside[sl], term, 0.0)
                    dw[(o, c) + tap] = term.sum()
    return dw


def _sprinkle(rng, a, count, values=(np.nan, np.inf, -np.inf)):
    a = a.copy()
    flat = a.reshape(-1)
    for i, pos in enumerate(rng.choice(flat.size, count, replace=False)):
        flat[pos] = values[i % len(values)]
    return a


def _weights(rng, shape, zeros=0.25):
    """Magnitudes in [0.5, 1.5], random signs, a fraction exactly zero (0 x Inf = NaN)."""
    w = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    w[rng.random(shape) < zeros] = 0.0
    return w


CONV = {1: cconv.conv1d, 2: cconv.conv2d, 3: cconv.conv3d}
GRAD_INPUT = {1: cconv.conv1d_grad_input, 2: cconv.conv2d_grad_input,
              3: cconv.conv3d_grad_input}
GRAD_WEIGHT = {1: cconv.conv1d_grad_weight, 2: cconv.conv2d_grad_weight,
               3: cconv.conv3d_grad_weight}
SIZES = {1: (23,), 2: (9, 11), 3: (5, 6, 7)}


def _problem(rng, nd, depthwise, specials=4):
    """(x, w, stride, pads, dil, groups) channels-first, float64, with NaN/+Inf/-Inf in x."""
    if depthwise == "dense":
        # the dense loop nest: 5 inputs and 10 outputs are not few-channel (neither the
        # channels-last few-channel kernel nor _plan.nchw_few_channels takes them)
        C, O, G = 5, 10, 1
    elif depthwise:
        C, O, G = 6, 12, 6                       # channel multiplier 2
    else:
        C, O, G = 4, 6, 2
    x = rng.uniform(-1.5, 1.5, (2, C) + SIZES[nd])
    x = _sprinkle(rng, x, specials)
    w = _weights(rng, (O, C // G) + (3,) * nd)
    stride = (2,) + (1,) * (nd - 1)
    dil = (1,) * (nd - 1) + (2,) if nd > 1 else (1,)   # every input pixel is read
    pads = ((1, 2),) + ((1, 1),) * (nd - 1)
    return x, w, stride, pads, dil, G


def _call_forward(nd, layout, x, w, stride, pads, dil, groups, algorithm, dtype):
    y = CONV[nd](_to_layout(x, layout).astype(dtype), _to_layout(w, layout, True).astype(dtype),
                 None, stride, pads, dil, groups, layout=layout, algorithm=algorithm)
    return _to_first(y, layout)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("algorithm,depthwise", [("direct", False), ("direct", "dense"), ("im2col", False),
                                                 ("im2col", True), ("depthwise", True),
                                                 ("direct", True), ("auto", False)])
def test_forward_follows_ieee_term_by_term(rng, algorithm, depthwise, last, nd, dtype):
    layout = (LAST_LAYOUT if last else DEFAULT_LAYOUT)[nd]
    x, w, stride, pads, dil, G = _problem(rng, nd, depthwise)
    # ("auto": stride 2 rules Winograd out; with finite weights the padded and skip
    # models agree, so whatever it picks must follow the rule)
    y = _call_forward(nd, layout, x, w, stride, pads, dil, G, algorithm, dtype)
    ref = ieee_forward(x, w, stride, pads, dil, G, skip_padding=False)
    assert np.array_equal(classes(y), classes(ref))
    assert (classes(ref) == NAN).any() and (classes(ref) == FINITE).any()


@pytest.mark.parametrize("last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("algorithm,depthwise,model", [
    ("direct", "dense", "skip"), ("direct", False, "padded"), ("im2col", False, "padded"),
    ("im2col", True, "padded"), ("depthwise", True, "padded"), ("direct", True, "padded")])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_weight_and_zero_padding(rng, algorithm, depthwise, model, last, bad):
    """A NaN/Inf weight tap that lands in the zero padding: NaN there for the padded
    model (input treated as padded with zeros), nothing for the dense direct loop nest
    (the direct grouped and depthwise kernels follow the padded model)."""
    nd = 2
    layout = "NHWC" if last else "NCHW"
    x, w, stride, pads, dil, G = _problem(rng, nd, depthwise, specials=0)
    w = np.where(w == 0, 1.0, w)
    w[1, 0, 0, 0] = bad                      # top-left tap of output channel 1
    y = _call_forward(nd, layout, x, w, stride, pads, dil, G, algorithm, np.float32)
    ref_pad = ieee_forward(x, w, stride, pads, dil, G, skip_padding=False)
    ref_skip = ieee_forward(x, w, stride, pads, dil, G, skip_padding=True)
    assert not np.array_equal(classes(ref_pad), classes(ref_skip))  # the case matters
    ref = ref_pad if model == "padded" else ref_skip
    assert np.array_equal(classes(y), classes(ref))
    other = np.ones(y.shape[1], bool)
    other[1] = False
    assert np.isfinite(y[:, other]).all()


@pytest.mark.parametrize("k,s", [(3, 1), (5, 1), (7, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_depthwise_in_place_tiles_pad_with_zeros(rng, k, s, bad):
    """The channels-first depthwise tiles for unit dilation and equal strides 1 or 2 read
    x in place (lane masks at the row ends, a zero row above and below): a non-finite
    weight meets the padding as w * 0 (padded model), non-finite inputs follow IEEE."""
    C = 6
    x = _sprinkle(rng, rng.uniform(-1.5, 1.5, (2, C, 9, 21)), 4)
    w = _weights(rng, (2 * C, 1, k, k))
    w = np.where(w == 0, 1.0, w)
    w[1, 0, 0, 0] = bad                      # top-left tap of output channel 1
    w[6, 0, k - 1, k - 1] = bad              # bottom-right tap of output channel 6
    pads = ((k // 2, k // 2 + 1), (k // 2 + 1, k // 2))
    y = _call_forward(2, "NCHW", x, w, (s, s), pads, (1, 1), C, "depthwise", np.float32)
    ref = ieee_forward(x, w, (s, s), pads, (1, 1), C, skip_padding=False)
    assert np.array_equal(classes(y), classes(ref))
    assert not np.array_equal(classes(ref),
                              classes(ieee_forward(x, w, (s, s), pads, (1, 1), C, True)))


def _backward_problem(rng, nd, kind):
    """Channels-first (x, w, stride, pads, dil, groups); kind "wide" has 16 input channels
    per group (grad_input may then run as a forward convolution), stride 2 in dim 0."""
    if kind == "depthwise":
        C, O, G = 6, 12, 6
    elif kind == "wide":
        C, O, G = 16, 5, 1
    else:
        C, O, G = 4, 6, 2
    sp = {1: (23,), 2: (9, 11), 3: (5, 6, 7)}[nd]
    x = rng.uniform(-1.5, 1.5, (2, C) + sp)
    w = _weights(rng, (O, C // G) + (3,) * nd)
    stride = (2,) + (1,) * (nd - 1)
    dil = (1,) * (nd - 1) + (2,) if nd > 1 else (1,)
    pads = ((1, 2),) + ((1, 1),) * (nd - 1)
    return x, w, stride, pads, dil, G


def _grads(nd, layout, dy, w, x, stride, pads, dil, G, algorithm):
    dx = GRAD_INPUT[nd](_to_layout(dy, layout), _to_layout(w, layout, True),
                        _to_layout(x, layout).shape, stride, pads, dil, G, layout=layout,
                        algorithm=algorithm)
    dw = GRAD_WEIGHT[nd](_to_layout(x, layout), _to_layout(dy, layout),
                         _to_layout(w, layout, True).shape, stride, pads, dil, G,
                         layout=layout, algorithm=algorithm)
    return _to_first(dx, layout), _to_first(dw, layout, True)


BACKWARD_CASES = [("im2col", "dense"), ("im2col", "wide"), ("im2col", "depthwise"),
                  ("direct", "depthwise"), ("auto", "dense"), ("auto", "wide"),
                  ("auto", "depthwise")]


@pytest.mark.parametrize("last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("algorithm,kind", BACKWARD_CASES)
def test_backward_exact_when_the_padded_operand_holds_them(rng, algorithm, kind, nd, last):
    """grad_input with NaN/Inf in grad_out (finite weights, some zero: 0 x Inf = NaN) and
    grad_weight with NaN/Inf in x (finite grad_out): the IEEE rule, class by class."""
    layout = (LAST_LAYOUT if last else DEFAULT_LAYOUT)[nd]
    x, w, stride, pads, dil, G = _backward_problem(rng, nd, kind)
    y_shape = ieee_forward(x, w, stride, pads, dil, G, False).shape
    dy = _sprinkle(rng, rng.uniform(-1.5, 1.5, y_shape), 4)
    dy[(0, 0) + (0,) * nd] = np.inf                     # a border output
    xs = _sprinkle(rng, x, 4)
    dyf = rng.uniform(-1.5, 1.5, y_shape)
    dx, _ = _grads(nd, layout, dy, w, x, stride, pads, dil, G, algorithm)
    _, dw = _grads(nd, layout, dyf, w, xs, stride, pads, dil, G, algorithm)
    ref_dx = ieee_grad_input(dy, w, x.shape, stride, pads, dil, G)
    ref_dw = ieee_grad_weight(xs, dyf, w.shape, stride, pads, dil, G, False)
    assert np.array_equal(classes(dx), classes(ref_dx))
    assert np.array_equal(classes(dw), classes(ref_dw))
    assert (classes(ref_dx) == NAN).any() and (classes(ref_dw) != FINITE).any()


@pytest.mark.parametrize("last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("algorithm,kind", BACKWARD_CASES)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_backward_nonfinite_weight_or_grad_out_stays_in_its_channel(rng, algorithm, kind,
                                                                    nd, last, bad):
    """A NaN/Inf weight (grad_input) or a NaN/Inf grad_out on a border output
    (grad_weight): every output the IEEE rule makes non-finite is; any extra non-finite
    output (a w * 0 at the padding) lies in the channel of the bad value; all the other
    outputs are exactly the IEEE ones."""
    layout = (LAST_LAYOUT if last else DEFAULT_LAYOUT)[nd]
    x, w, stride, pads, dil, G = _backward_problem(rng, nd, kind)
    w = np.where(w == 0, 1.0, w)
    y_shape = ieee_forward(x, w, stride, pads, dil, G, False).shape
    dy = rng.uniform(-1.5, 1.5, y_shape)
    O, Cg = w.shape[:2]
    o_bad = O - 1
    c_bad = (o_bad // (O // G)) * Cg                       # input channel of w[o_bad, 0]
    wb = w.copy()
    wb[(o_bad, 0) + (0,) * nd] = bad                      # first tap: reaches the padding
    dx, _ = _grads(nd, layout, dy, wb, x, stride, pads, dil, G, algorithm)
    ref = ieee_grad_input(dy, wb, x.shape, stride, pads, dil, G)
    _check_bounds(dx, ref, np.s_[:, c_bad])
    dyb = dy.copy()
    dyb[(1, o_bad) + (0,) * nd] = bad                     # first output: reads the padding
    _, dw = _grads(nd, layout, dyb, w, x, stride, pads, dil, G, algorithm)
    ref = ieee_grad_weight(x, dyb, w.shape, stride, pads, dil, G, True)
    _check_bounds(dw, ref, np.s_[o_bad])


def _check_bounds(got, ref, channel):
    cg, cr = classes(got), classes(ref)
    assert (cr != FINITE).any()
    assert not ((cr != FINITE) & (cg == FINITE)).any(), "an IEEE non-finite output is finite"
    outside = np.ones(got.shape, bool)
    outside[channel] = False
    assert np.array_equal(cg[outside], cr[outside]), "a non-finite value left its channel"


def test_transposed_follows_ieee_term_by_term(rng):
    """conv_transpose2d is grad_input of a convolution: the same rule, no padding term."""
    x = _sprinkle(rng, rng.uniform(-1.5, 1.5, (2, 4, 6, 7)), 4)
    wt = _weights(rng, (4, 3, 3, 3))                      # (C_in, C_out/groups, kh, kw)
    y = cconv.conv_transpose2d(x, wt, None, stride=2, padding=1)
    # transposed conv = grad_input of the conv with weight wt (O=4, Cg=3)
    ref = ieee_grad_input(x, wt, y.shape, (2, 2), ((1, 1), (1, 1)), (1, 1), 1)
    assert np.array_equal(classes(y), classes(ref))


def test_bias_nonfinite_reaches_its_channel_only(rng):
    x = rng.uniform(-1, 1, (2, 3, 8, 8))
    w = rng.uniform(-1, 1, (5, 3, 3, 3))
    b = np.zeros(5)
    b[2], b[4] = np.inf, np.nan
    for algorithm in ("direct", "im2col", "winograd"):
        y = cconv.conv2d(x, w, b, padding=1, algorithm=algorithm)
        assert (classes(y[:, 2]) == POS).all() and (classes(y[:, 4]) == NAN).all()
        assert np.isfinite(y[:, [0, 1, 3]]).all(), algorithm


# ------------------------------------------------------------------------- Winograd

def _winograd_allowed(x_bad, nd, m, pads, out_sp, G, O):
    """Outputs (N, O, *out) that a non-finite input may reach under Winograd: every
    output of every tile whose (m+2)-wide input patch (origin tile*m - pad_before) holds
    it, in the output channels of its group."""
    N, C = x_bad.shape[:2]
    Cg, Og = C // G, O // G
    allowed = np.zeros((N, O) + out_sp, bool)
    for idx in zip(*np.nonzero(x_bad)):
        n, c, pos = idx[0], idx[1], idx[2:]
        sl = []
        for p, (b, _), osz in zip(pos, pads, out_sp):
            pp = p + b                                    # padded coordinate
            t_lo = max(0, (pp - (m + 1) + m - 1) // m)    # tiles t with t*m <= pp < t*m+m+2
            t_hi = min(pp // m, (osz - 1) // m)
            sl.append(slice(t_lo * m, min((t_hi + 1) * m, osz)))
        g = c // Cg
        allowed[(n, slice(g * Og, (g + 1) * Og)) + tuple(sl)] = True
    return allowed


@pytest.mark.parametrize("last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("variant,m", [("winograd_f2", 2), ("winograd_f4", 4)])
def test_winograd_input_spreads_within_its_tiles(rng, variant, m, nd, last):
    """Direct readers of a NaN/Inf input are non-finite; other outputs may be too, but
    only inside the tiles whose input patch holds it; everything else is finite."""
    layout = (LAST_LAYOUT if last else DEFAULT_LAYOUT)[nd]
    C, O, G = 4, 6, 2
    sp = (29,) if nd == 1 else (13, 14)
    x = rng.uniform(-1.5, 1.5, (2, C) + sp)
    x = _sprinkle(rng, x, 3)
    w = rng.uniform(0.5, 1.5, (O, C // G) + (3,) * nd)   # no zeros: readers are all bad
    pads = ((1, 2),) + ((1, 1),) * (nd - 1)
    ones = (1,) * nd
    y = _call_forward(nd, layout, x, w, ones, pads, ones, G, variant, np.float64)
    readers = ~np.isfinite(ieee_forward(x, w, ones, pads, ones, G, False))
    bad = ~np.isfinite(y)
    allowed = _winograd_allowed(~np.isfinite(x), nd, m, pads, y.shape[2:], G, O)
    assert readers.any()
    assert not (readers & ~bad).any(), "an output that reads a NaN/Inf is finite"
    assert not (bad & ~allowed).any(), "a NaN/Inf spread beyond its tiles"
    # where the value is finite it is right
    ok = ~allowed
    ref = ieee_forward(np.where(np.isfinite(x), x, 0), w, ones, pads, ones, G, False)
    np.testing.assert_allclose(y[ok], ref[ok], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("variant", ["winograd_f2", "winograd_f4"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_winograd_weight_spreads_to_its_channel(rng, variant, bad):
    x = rng.uniform(-1.5, 1.5, (2, 3, 10, 11))
    w = rng.uniform(-1.5, 1.5, (4, 3, 3, 3))
    w[2, 1, 1, 0] = bad
    y = cconv.conv2d(x, w, None, 1, 1, algorithm=variant)
    assert not np.isfinite(y[:, 2]).any()
    assert np.isfinite(y[:, [0, 1, 3]]).all()
