"""Patch convolutions (kernel == stride, no padding: ViT / Swin / ConvNeXt stems) run as
1x1 convolutions over a space-to-depth copy of the input (_plan.patch_spec) where that
pays (channels-last grad_weight only with at least _backward.gw_cols_max_cg() channels,
8 on AVX-512: below that, _gw_cols' im2col rows gather the patches in place). The route
must give the convolution's results: checked against the float64 reference (forward)
and against the explicit im2col paths (gradients), with inputs past the last whole
patch, kernels that differ per dim, unbatched input, NaN-filled out=, 1-3 threads
bitwise."""
import itertools

import numpy as np
import pytest

import cconv
from conftest import conv_fn
from reference import CHANNELS_LAST, conv_nd_reference, rel_error

# layout, N, C, O, input size, kernel (== stride); dilation on unit kernel dims
CASES = [
    ("NHWC", 2, 3, 20, (16, 12), (4, 4), 1),
    ("NHWC", 1, 3, 40, (34, 35), (16, 16), 1),   # 2 x 2 patches, 2-3 pixels left over
    ("NHWC", 3, 5, 9, (9, 13), (2, 4), 1),
    ("NHWC", 2, 4, 8, (7, 12), (1, 4), (3, 1)),  # a unit kernel dim, dilated
    ("NHWC", 2, 9, 12, (12, 8), (2, 4), 1),      # 9 channels: grad_weight takes the route
    ("NCHW", 2, 3, 20, (16, 13), (4, 4), 1),
    ("NCHW", 1, 2, 12, (10, 12), (5, 3), 1),
    ("NDHWC", 1, 3, 16, (4, 10, 9), (2, 4, 4), 1),
    ("NCDHW", 2, 3, 16, (4, 8, 9), (2, 4, 4), 1),
]


def routes(spec):
    from cconv import _plan
    return {op: _plan.patch_spec(spec, op) is not None
            for op in ("forward", "grad_input", "grad_weight")}


def make(layout, N, C, O, sp, k, rng, dtype=np.float64):
    nd = len(sp)
    last = layout in CHANNELS_LAST
    x = rng.standard_normal((N,) + sp + (C,) if last else (N, C) + sp).astype(dtype)
    w = rng.standard_normal(k + (C, O) if last else (O, C) + k).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    assert x.ndim == nd + 2
    return x, w, b


@pytest.mark.parametrize("layout, N, C, O, sp, k, dil", CASES)
def test_patch_route(layout, N, C, O, sp, k, dil):
    from cconv import _spec
    nd = len(sp)
    rng = np.random.default_rng(N * C + O)
    x, w, b = make(layout, N, C, O, sp, k, rng)
    spec = _spec.forward_spec(f"conv{nd}d", nd, x, w, None, k, 0, dil, 1, "zeros", layout,
                              "auto")[0]
    r = routes(spec)
    last = layout in CHANNELS_LAST
    # channels-last grad_weight with fewer channels than _gw_cols' limit runs in place
    from cconv import _backward
    gw_route = (C >= _backward.gw_cols_max_cg()) if last else nd == 2
    assert r == {"forward": last, "grad_input": last, "grad_weight": gw_route}
    f = conv_fn(nd)
    gi_fn = getattr(cconv, f"conv{nd}d_grad_input")
    gw_fn = getattr(cconv, f"conv{nd}d_grad_weight")
    ref = conv_nd_reference(x, w, b, k, ((0, 0),) * nd, dil, 1, layout=layout)
    g = rng.standard_normal(ref.shape)
    x0, w0, g0 = x.copy(), w.copy(), g.copy()
    runs = []
    for nth in (1, 2, 3):
        with cconv.num_threads(nth):
            out = np.full(ref.shape, np.nan)
            y = f(x, w, b, k, 0, dil, layout=layout, out=out)
            assert y is out
            runs.append((y, gi_fn(g, w, x.shape, k, 0, dil, layout=layout),
                         gw_fn(x, g, w.shape, k, 0, dil, layout=layout)))
    for r_ in runs[1:]:
        for a, c in zip(r_, runs[0]):
            np.testing.assert_array_equal(a, c)
    y, gi, gw = runs[0]
    assert rel_error(y, ref) <= 1e-13
    gi_ref = gi_fn(g, w, x.shape, k, 0, dil, layout=layout, algorithm="im2col")
    gw_ref = gw_fn(x, g, w.shape, k, 0, dil, layout=layout, algorithm="im2col")
    assert gi.shape == x.shape and rel_error(gi, gi_ref) <= 1e-13
    assert gw.shape == w.shape and rel_error(gw, gw_ref) <= 1e-13
    # positions past the last whole patch get no gradient
    for ax, (n, kk) in enumerate(zip(sp, k)):
        rest = n - (n // kk) * kk
        if rest:
            idx = [slice(None)] * x.ndim
            idx[ax + (1 if last else 2)] = slice(n - rest, n)
            assert np.all(gi[tuple(idx)] == 0)
    # float32, unbatched, the transposed convolution (the input gradient) into out=
    y32 = f(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), k, 0, dil,
            layout=layout)
    assert y32.dtype == np.float32 and rel_error(y32, ref) <= 2e-6
    np.testing.assert_array_equal(f(x[0], w, b, k, 0, dil, layout=layout), y[0])
    np.testing.assert_array_equal(gi_fn(g[0], w, x.shape[1:], k, 0, dil, layout=layout), gi[0])
    if all(n % kk == 0 for n, kk in zip(sp, k)) and dil == 1:
        t_fn = getattr(cconv, f"conv_transpose{nd}d")
        out = np.full(x.shape, np.nan)
        t = t_fn(g, w, None, k, 0, layout=layout, out=out)
        assert t is out and rel_error(t, gi_ref) <= 1e-13
    assert np.array_equal(x, x0) and np.array_equal(w, w0) and np.array_equal(g, g0)


def test_patch_route_not_taken():
    """Overlapping or padded patches, groups, many channels, 1-D, explicit algorithms."""
    from cconv import _plan, _spec
    rng = np.random.default_rng(3)

    def spec_of(layout, C, sp, k, s, p=0, groups=1, algorithm="auto"):
        nd = len(sp)
        x, w, _ = make(layout, 1, C, 4 * groups, sp, k, rng)
        if groups > 1:
            w = w[..., :C // groups, :] if layout in CHANNELS_LAST else w[:, :C // groups]
        return _spec.forward_spec(f"conv{nd}d", nd, x, np.ascontiguousarray(w), None, s, p,
                                  1, groups, "zeros", layout, algorithm)[0]

    for spec in (spec_of("NHWC", 3, (16, 16), (4, 4), 2),        # overlapping
                 spec_of("NHWC", 3, (16, 16), (4, 4), 4, 1),     # padded
                 spec_of("NHWC", 4, (16, 16), (4, 4), 4, 0, 2),  # groups
                 spec_of("NHWC", 16, (16, 16), (2, 2), 2),       # many channels
                 spec_of("NLC", 3, (32,), (4,), 4),              # 1-D
                 spec_of("NHWC", 3, (16, 16), (1, 1), 1)):       # 1x1
        assert not any(routes(spec).values())
    x, w, b = make("NHWC", 1, 3, 8, (8, 8), (4, 4), rng)
    y = cconv.conv2d(x, w, b, 4, layout="NHWC", algorithm="im2col")  # explicit: in place
    ref = conv_nd_reference(x, w, b, 4, ((0, 0),) * 2, 1, 1, layout="NHWC")
    assert rel_error(y, ref) <= 1e-13


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sp, k, O, expect", [
    ((64, 60), (16, 16), 24, "im2col"),   # rows of 3 patches: narrower than a vector
    ((32, 64), (4, 4), 16, "direct"),     # rows of 16 patches
    ((34, 40), (8, 4), 8, "im2col"),      # rows of 10
])
def test_channels_first_patch_stems_narrow_rows_stay_im2col(dtype, sp, k, O, expect):
    """Channels-first few-channel patch convolutions: "auto" leaves the grouped direct
    kernel (output columns as lanes) for im2col when the output rows are narrower than
    _plan.NCHW_FEW_OUTPUTS_MIN_OW (ViT's 16x16 stem: rows of 14); the result matches
    the reference and the explicit "direct" call's tolerance either way."""
    from cconv import _plan, _spec
    rng = np.random.default_rng(5)
    x, w, b = make("NCHW", 2, 3, O, sp, k, rng)
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    spec = _spec.forward_spec("conv2d", 2, x, w, b, k, 0, 1, 1, "zeros", "NCHW", "auto")[0]
    if cconv._im2col.isa_active() == "generic":
        expect = "im2col"   # no grouped SIMD kernel on the portable path
    assert _plan.choose_forward(spec, "auto").value == expect
    ref = conv_nd_reference(x, w, b, k, ((0, 0),) * 2, 1, 1, layout="NCHW")
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for algo in ("auto", "direct"):
        assert rel_error(cconv.conv2d(x, w, b, k, algorithm=algo), ref) <= tol
