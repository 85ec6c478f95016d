"""FFT convolution (algorithm="fft"): accuracy against the float64 reference over
1-D/2-D/3-D, both layouts, groups, strides, dilations, asymmetric and string padding,
every padding mode; NaN-prefilled out=; bitwise identical for 1-3 threads and on every
SIMD path; workspace blocks; how NaN spreads; what "auto" does."""
import numpy as np
import pytest

from conftest import assert_same_on_every_isa, tolerance
from reference import conv_nd_reference, input_shape, rel_error, resolve_padding, weight_shape

cconv = pytest.importorskip("cconv")

FIRST = {1: "NCL", 2: "NCHW", 3: "NCDHW"}
LAST = {1: "NLC", 2: "NHWC", 3: "NDHWC"}
FN = {1: "conv1d", 2: "conv2d", 3: "conv3d"}


def _run(rng, nd, last, N, C, O, sp, k, dtype=np.float32, stride=1, padding=0, dilation=1,
         groups=1, mode="zeros", bias=True, batched=True, out_nan=False):
    layout = (LAST if last else FIRST)[nd]
    k = (k,) * nd if np.isscalar(k) else tuple(k)
    x = rng.standard_normal(input_shape(layout, N, C, sp, batched)).astype(dtype)
    w = rng.standard_normal(weight_shape(layout, O, C // groups, k)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype) if bias else None
    st = (stride,) * nd if np.isscalar(stride) else tuple(stride)
    dl = (dilation,) * nd if np.isscalar(dilation) else tuple(dilation)
    pairs = resolve_padding(padding, sp, k, st, dl)
    ref = conv_nd_reference(x.astype(np.float64), w.astype(np.float64),
                            None if b is None else b.astype(np.float64), st, pairs, dl,
                            groups, mode, layout)
    kw = {"out": np.full(ref.shape, np.nan, dtype)} if out_nan else {}
    y = getattr(cconv, FN[nd])(x, w, b, stride, padding, dilation, groups, padding_mode=mode,
                               layout=layout, algorithm="fft", **kw)
    assert y.shape == ref.shape and y.dtype == dtype
    if out_nan:
        assert y is kw["out"]
    assert np.all(np.isfinite(y))
    err = rel_error(y, ref)
    assert err <= tolerance(dtype, "fft"), (err, nd, layout, N, C, O, sp, k, stride, padding,
                                            dilation, groups, mode)
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_sizes_kernels_and_strides(rng, nd, last, dtype):
    sizes = {1: [(1,), (7,), (33,), (100,)], 2: [(1, 1), (5, 9), (17, 13), (32, 31)],
             3: [(1, 2, 3), (4, 5, 6), (7, 3, 9), (6, 6, 6)]}[nd]
    for i, sp in enumerate(sizes):
        k = tuple(min(n + 2, (1, 3, 5, 7, 4)[(i + j) % 5]) for j, n in enumerate(sp))
        stride = (1, 2, 3)[i % 3]
        _run(rng, nd, last, (2, 1, 3)[i % 3], (1, 3, 16, 5)[i], (4, 1, 17, 6)[i], sp, k,
             dtype, stride=stride, padding=tuple((kk - 1) // 2 + (i % 2) for kk in k),
             out_nan=i % 2 == 0)


@pytest.mark.parametrize("last", [False, True])
def test_groups_depthwise_and_dilation(rng, last):
    for C, O, g, d in [(4, 6, 2, 1), (6, 6, 6, 1), (6, 12, 6, 2), (8, 8, 4, (2, 3)),
                       (5, 10, 5, 3), (16, 32, 1, 2)]:
        _run(rng, 2, last, 2, C, O, (14, 11), 3, groups=g, dilation=d, padding=2)


@pytest.mark.parametrize("last", [False, True])
def test_padding_forms_and_modes(rng, last):
    for padding in [0, 3, (1, 2), ((0, 4), (3, 1)), "same", "valid", ((5, 0), (0, 6))]:
        _run(rng, 2, last, 2, 3, 4, (9, 12), (3, 4), padding=padding)
    for mode in ["reflect", "replicate", "circular"]:
        _run(rng, 2, last, 2, 3, 4, (9, 12), (5, 3), padding=((2, 1), (1, 2)), mode=mode)
    for padding in ["causal", "same", (4,)]:
        _run(rng, 1, last, 3, 2, 5, (40,), 9, padding=padding, stride=1)


def test_large_kernels_unbatched_and_no_bias(rng):
    _run(rng, 2, False, 1, 2, 3, (64, 48), (31, 17), padding=(15, 8), bias=False,
         batched=False)
    _run(rng, 1, True, 2, 4, 4, (3000,), 255, padding="same", dtype=np.float64)


def test_empty_batch_and_zero_channels():
    x = np.zeros((0, 3, 8, 8), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    assert cconv.conv2d(x, w, algorithm="fft").shape == (0, 4, 6, 6)
    x = np.zeros((2, 0, 8, 8), np.float32)
    w = np.ones((4, 0, 3, 3), np.float32)
    y = cconv.conv2d(x, w, np.arange(4, dtype=np.float32), algorithm="fft")
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(4.0).reshape(4, 1, 1),
                                                      (2, 4, 6, 6)))


def test_inputs_not_modified_and_noncontiguous(rng):
    x = rng.standard_normal((2, 10, 9, 3)).astype(np.float32).transpose(0, 3, 1, 2)
    w = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    xc, wc = x.copy(), w.copy()
    y = cconv.conv2d(x, w, padding=2, algorithm="fft")
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(w, wc)
    np.testing.assert_array_equal(y, cconv.conv2d(np.ascontiguousarray(x), w, padding=2,
                                                  algorithm="fft"))


@pytest.mark.parametrize("last", [False, True])
def test_bitwise_identical_across_thread_counts(rng, last):
    layout = LAST[2] if last else FIRST[2]
    x = rng.standard_normal(input_shape(layout, 3, 6, (23, 19))).astype(np.float32)
    w = rng.standard_normal(weight_shape(layout, 10, 3, (7, 5))).astype(np.float32)
    ys = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            ys.append(cconv.conv2d(x, w, None, (1, 2), 3, 1, 2, layout=layout,
                                   algorithm="fft"))
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])


def test_workspace_blocks(rng, monkeypatch):
    """Blocks of images and output channels (a small WORK_BYTES) give the same result as
    one block, to rounding (the transform batches differ)."""
    from cconv import _fft
    x = rng.standard_normal((5, 4, 20, 20))
    w = rng.standard_normal((12, 2, 5, 5))
    whole = cconv.conv2d(x, w, None, 1, 2, 1, 2, algorithm="fft")
    monkeypatch.setattr(_fft, "WORK_BYTES", 40_000)
    blocked = cconv.conv2d(x, w, None, 1, 2, 1, 2, algorithm="fft")
    np.testing.assert_allclose(blocked, whole, rtol=1e-12, atol=1e-12)
    ref = conv_nd_reference(x, w, None, 1, ((2, 2), (2, 2)), 1, 2)
    assert rel_error(blocked, ref) <= tolerance(np.float64, "fft")


def test_nan_spreads_to_its_image_and_group_only(rng):
    x = rng.standard_normal((3, 4, 12, 12))
    w = rng.standard_normal((6, 2, 3, 3))
    x[1, 0, 5, 5] = np.nan  # image 1, group 0 (input channels 0-1)
    y = cconv.conv2d(x, w, None, 1, 1, 1, 2, algorithm="fft")
    assert np.isnan(y[1, :3]).all()          # every output of that image and group
    assert np.isfinite(y[1, 3:]).all()       # the other group
    assert np.isfinite(y[[0, 2]]).all()      # the other images
    w2 = rng.standard_normal((6, 2, 3, 3))
    w2[4, 1, 0, 0] = np.inf
    y2 = cconv.conv2d(rng.standard_normal((2, 4, 8, 8)), w2, None, 1, 1, 1, 2,
                      algorithm="fft")
    assert not np.isfinite(y2[:, 4]).any() and np.isfinite(np.delete(y2, 4, axis=1)).all()


def test_fast_len_and_periods():
    from cconv import _fft
    for n in range(1, 300):
        m = _fft.fast_len(n)
        assert m >= n
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        assert r == 1
        assert all(not _smooth(j) for j in range(n, m))
    # the period covers the input and the larger of its two paddings, and the kernel
    assert _fft.periods((10, 3), ((4, 1), (3, 3)), (3, 7), (2, 1)) == (15, 8)


def _smooth(n):
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


def test_auto_does_not_pick_fft():
    """auto never runs FFT (README: numpy's transforms made it slower than the direct
    algorithms except on very large kernels with few channels)."""
    from cconv import _plan
    from cconv._shapes import _spec_of
    for ks in [(3, 3), (7, 7), (31, 31)]:
        spec = _spec_of("conv2d", (1, 1, 256, 256), (1, 1) + ks, 1, 0, 1, "NCHW", 1)
        assert _plan.choose_forward(spec, "auto") is not _plan.Algorithm.FFT


def test_transposed_and_backward_reject_fft():
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((2, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="fft"):
        cconv.conv_transpose2d(x, w, algorithm="fft")
    with pytest.raises(ValueError, match="fft"):
        cconv.conv2d_grad_input(np.ones((1, 2, 3, 3), np.float32), w.transpose(1, 0, 2, 3),
                                (1, 3, 5, 5), algorithm="fft")


def test_bitwise_identical_across_isa_paths(tmp_path):
    code = """
import numpy as np, cconv
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 20, 9, 7)).astype(np.float32)
w = rng.standard_normal((5, 9, 7, 10)).astype(np.float32)
y = cconv.conv2d(x, w, None, 1, 4, layout="NHWC", algorithm="fft")
y64 = cconv.conv1d(rng.standard_normal((3, 6, 50)), rng.standard_normal((7, 6, 11)),
                   algorithm="fft")
np.savez(OUTPATH, y=y, y64=y64)
"""
    assert_same_on_every_isa(code, tmp_path)


def test_fft_in_a_forked_child(rng):
    """The transform thread pool is rebuilt in a forked child (no hang, same result)."""
    import multiprocessing as mp
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    x = rng.standard_normal((2, 3, 40, 40))
    w = rng.standard_normal((4, 3, 9, 9))
    with cconv.num_threads(2):
        parent = cconv.conv2d(x, w, padding=4, algorithm="fft")  # the pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        child = pool.apply_async(_fft_two_threads, (x, w)).get(timeout=120)
    np.testing.assert_array_equal(child, parent)


def _fft_two_threads(x, w):
    with cconv.num_threads(2):
        return cconv.conv2d(x, w, padding=4, algorithm="fft")
