"""Weights packed once (cconv.pack_weights) give bitwise the same result as the plain
array, in every layout and for every im2col path; misuse is a clear error."""
import numpy as np
import pytest

import cconv

CASES = [
    # nd, layout, N, C, spatial, O, k, stride, pad, groups
    (2, "NCHW", 2, 16, (9, 11), 24, 3, 1, 1, 1),    # stride 1: padded-grid path
    (2, "NCHW", 2, 16, (9, 11), 24, 3, 2, 1, 1),    # strided: panel-pack path
    (2, "NCHW", 1, 64, (7, 7), 40, 3, 1, 1, 2),     # small image, groups
    (2, "NHWC", 2, 32, (9, 11), 24, 3, 1, 1, 1),    # in-place rows (igemm)
    (2, "NHWC", 2, 3, (9, 11), 17, 3, 2, 1, 1),     # row blocks (few channels)
    (2, "NHWC", 2, 32, (9, 11), 24, 3, 1, 1, 4),    # groups
    (1, "NCL", 3, 5, (30,), 7, 5, 1, 2, 1),
    (3, "NDHWC", 1, 16, (5, 6, 7), 9, 3, 1, 1, 1),
]


def _arrays(nd, layout, N, C, sp, O, k, groups, dtype, rng):
    cl = layout in ("NLC", "NHWC", "NDHWC")
    x = rng.standard_normal((N,) + sp + (C,) if cl else (N, C) + sp).astype(dtype)
    ks = (k,) * nd
    w = rng.standard_normal(ks + (C // groups, O) if cl else (O, C // groups) + ks).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_packed_matches_plain_bitwise(case, dtype):
    nd, layout, N, C, sp, O, k, s, p, g = case
    rng = np.random.default_rng(3)
    x, w, b = _arrays(nd, layout, N, C, sp, O, k, g, dtype, rng)
    fn = {1: cconv.conv1d, 2: cconv.conv2d, 3: cconv.conv3d}[nd]
    pw = cconv.pack_weights(w, layout=layout, groups=g)
    ref = fn(x, w, b, s, p, 1, g, layout=layout, algorithm="im2col")
    for _ in range(2):  # reused
        got = fn(x, pw, b, s, p, 1, g, layout=layout, algorithm="im2col")
        np.testing.assert_array_equal(got, ref)
    # other algorithms fall back to the kept weights
    got = fn(x, pw, b, s, p, 1, g, layout=layout, algorithm="direct")
    np.testing.assert_array_equal(got, fn(x, w, b, s, p, 1, g, layout=layout, algorithm="direct"))


def test_packed_is_a_snapshot():
    rng = np.random.default_rng(4)
    x, w, b = _arrays(2, "NCHW", 1, 8, (6, 6), 8, 3, 1, np.float32, rng)
    pw = cconv.pack_weights(w)
    ref = cconv.conv2d(x, w, b, padding=1)
    w[...] = 0  # a later edit of the caller's array does not reach the packed copy
    np.testing.assert_array_equal(cconv.conv2d(x, pw, b, padding=1), ref)
    assert not pw.weight.flags.writeable and not pw.panels.flags.writeable


def test_packed_dtype_mismatch_falls_back_correctly():
    rng = np.random.default_rng(5)
    x, w, b = _arrays(2, "NCHW", 1, 8, (6, 6), 8, 3, 1, np.float64, rng)
    pw = cconv.pack_weights(w.astype(np.float32))  # float32 panels, float64 call
    got = cconv.conv2d(x, pw, b, padding=1)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, cconv.conv2d(x, w.astype(np.float32), b, padding=1))


def test_packed_errors():
    w = np.ones((4, 2, 3, 3), np.float32)
    pw = cconv.pack_weights(w)
    with pytest.raises(ValueError, match="packed for layout 'NCHW'.*layout='NHWC'"):
        cconv.conv2d(np.ones((1, 5, 5, 2), np.float32), pw, layout="NHWC")
    with pytest.raises(ValueError, match="pack_weights.*layout"):
        cconv.pack_weights(w, layout="NCWH")
    with pytest.raises(ValueError, match="pack_weights.*4-D"):
        cconv.pack_weights(w[0], layout="NCHW")
    with pytest.raises(ValueError, match="not divisible by groups=3"):
        cconv.pack_weights(w, groups=3)
    with pytest.raises(TypeError, match="pack_weights"):
        cconv.pack_weights(w.astype(np.complex64))
    # a packed weight still gets the usual shape validation
    with pytest.raises(ValueError, match="conv2d: input has 3 channels"):
        cconv.conv2d(np.ones((1, 3, 5, 5), np.float32), pw)


def test_packed_panels_are_made_on_first_use():
    """pack_weights only copies the weights: the im2col panels are packed by the first
    call that runs im2col with them (a pack whose calls run Winograd never makes them)."""
    rng = np.random.default_rng(15)
    x, w, b = _arrays(2, "NHWC", 2, 32, (9, 11), 24, 3, 1, np.float32, rng)
    pw = cconv.pack_weights(w, layout="NHWC")
    assert pw._panels is None
    got = cconv.conv2d(x, pw, b, padding=1, layout="NHWC", algorithm="winograd_f2")
    np.testing.assert_array_equal(
        got, cconv.conv2d(x, w, b, padding=1, layout="NHWC", algorithm="winograd_f2"))
    assert pw._panels is None
    got = cconv.conv2d(x, pw, b, padding=1, layout="NHWC", algorithm="im2col")
    np.testing.assert_array_equal(
        got, cconv.conv2d(x, w, b, padding=1, layout="NHWC", algorithm="im2col"))
    panels = pw._panels
    assert panels is not None and not panels.flags.writeable
    cconv.conv2d(x, pw, b, padding=1, layout="NHWC", algorithm="im2col")
    assert pw._panels is panels  # packed once


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_layer_repack_reuses_the_winograd_buffer(layout):
    """A layer repacking after a weight update writes the new Winograd transform into the
    previous pack's buffer (no fresh pages); the results are those of a fresh pack, and
    the replaced pack, if used again, transforms anew instead of reading the overwritten
    buffer."""
    rng = np.random.default_rng(16)
    layer = cconv.nn.Conv2d(64, 64, 3, padding=1, bias=False, layout=layout, rng=rng)
    shape = (32, 64, 8, 8) if layout == "NCHW" else (32, 8, 8, 64)
    x = rng.standard_normal(shape).astype(np.float32)
    layer.forward(x)
    old = layer._cache
    assert old._winograd is not None, "the shape no longer runs Winograd with packed weights"
    (key, buf), = old._winograd._packed.items()
    ptr = buf.ctypes.data
    del buf  # (a reference held here would keep the layer from taking it)
    w_old = old.weight.copy()
    layer.params["weight"][...] = rng.standard_normal(layer.params["weight"].shape)
    layer.mark_changed()
    y = layer.forward(x)
    new = layer._cache
    buf = new._winograd._packed[key]
    assert new is not old and buf.ctypes.data == ptr  # recycled
    assert not buf.flags.writeable
    np.testing.assert_array_equal(y, cconv.conv2d(x, cconv.pack_weights(
        layer.params["weight"], layout=layout), padding=1, layout=layout))
    assert old._winograd is None  # the old pack gave its buffer away
    np.testing.assert_array_equal(
        cconv.conv2d(x, old, padding=1, layout=layout),
        cconv.conv2d(x, cconv.pack_weights(w_old, layout=layout), padding=1, layout=layout))
    assert old._winograd._packed[key].ctypes.data != ptr
    # a buffer still referenced elsewhere (a call on the old pack in another thread) is
    # not taken
    busy = layer._cache
    held = busy._winograd._packed[key]
    layer.mark_changed()
    layer.forward(x)
    assert layer._cache._winograd._packed[key].ctypes.data != held.ctypes.data


def test_packed_weights_keep_their_winograd_transform():
    """A call that runs Winograd with PackedWeights transforms them once and keeps the
    result in the packing (same output as the plain weight)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((32, 64, 8, 8)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    pw = cconv.pack_weights(w)
    res = {}
    for algo in ("winograd_f4", "winograd_f2"):
        res[algo] = cconv.conv2d(x, pw, padding=1, algorithm=algo)
        np.testing.assert_array_equal(res[algo],
                                      cconv.conv2d(x, w, padding=1, algorithm=algo))
    assert len(pw.winograd()._packed) == 2          # one transform per variant
    first = dict(pw.winograd()._packed)
    cconv.conv2d(x, pw, padding=1, algorithm="winograd_f4")
    assert all(pw.winograd()._packed[k] is v for k, v in first.items())  # reused
    w[...] = 0  # the packing holds its own copy
    np.testing.assert_array_equal(cconv.conv2d(x, pw, padding=1, algorithm="winograd_f4"),
                                  res["winograd_f4"])
