"""The layout transposes (channels-first <-> channels-last) that the routes through the
other layout, the channels-last weights and the depthwise multipliers run on: every path
(_core.isa_select: AVX-512 register blocks or the portable loop) gives NumPy's transpose
exactly, for wide and tall matrices, whole blocks, edges and tiny ones, on 1-3 threads."""
import numpy as np
import pytest

from test_isa import cpu_supports

cconv = pytest.importorskip("cconv")
from cconv import _core  # noqa: E402

PATHS = [p for p in ("avx512", "generic") if cpu_supports(p) is not False]
SHAPES = [(2, 16, 16), (3, 64, 300), (2, 300, 64), (1, 33, 47), (2, 47, 33), (4, 3, 1000),
          (2, 1000, 3), (1, 144, 3136), (1, 1, 5), (5, 17, 16), (2, 128, 129)]


@pytest.fixture
def path(request):
    before = _core.isa_active()
    _core.isa_select(request.param)
    yield request.param
    _core.isa_select(before)


@pytest.mark.parametrize("path", PATHS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_transpose_last2_is_numpy_transpose(rng, path, dtype, shape):
    src = rng.standard_normal(shape).astype(dtype)
    expected = np.ascontiguousarray(src.transpose(0, 2, 1))
    for nthreads in (1, 2, 3):
        dst = np.full(expected.shape, np.nan, dtype)
        _core.transpose_last2(src, dst, nthreads)
        np.testing.assert_array_equal(dst, expected)
    assert _core.isa_active() == path


def _at_offset(shape, dtype, offset):
    """A C-contiguous NaN-filled array whose data starts `offset` bytes past a cache line."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.empty(n * dtype.itemsize + 128, np.uint8)
    o = (-raw.ctypes.data) % 64 + offset
    a = raw[o:o + n * dtype.itemsize].view(dtype).reshape(shape)
    a[...] = np.nan
    return a


@pytest.mark.parametrize("path", PATHS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 1024, 32), (2, 32, 1024), (1, 20, 16), (1, 16, 20),
                                   (2, 48, 17), (1, 17, 48), (1, 64, 64), (3, 256, 24)])
def test_transpose_last2_at_every_alignment(rng, path, dtype, shape):
    # the AVX-512 blocks start the walk along the long rows at their first aligned element
    # when every long row shares one alignment (row length a multiple of a vector), with
    # overlapping blocks for the edges: every element is written, at every offset of
    # either array within a cache line, rows of 16-20 elements included (the aligned
    # start then falls within the last block)
    itemsize = np.dtype(dtype).itemsize
    src0 = rng.standard_normal(shape).astype(dtype)
    expected = np.ascontiguousarray(src0.transpose(0, 2, 1))
    for so in range(0, 64, itemsize * 3):
        for do in range(0, 64, itemsize):
            src = _at_offset(shape, dtype, so)
            src[...] = src0
            dst = _at_offset(expected.shape, dtype, do)
            _core.transpose_last2(src, dst, 1 + (do // itemsize) % 3)
            np.testing.assert_array_equal(dst, expected, err_msg=f"src +{so} B, dst +{do} B")
            np.testing.assert_array_equal(src, src0)


@pytest.mark.parametrize("path", PATHS, indirect=True)
def test_layout_helpers(rng, path):
    x = rng.standard_normal((3, 40, 5, 7)).astype(np.float32)
    xl = _core.to_channels_last(x, 2)
    np.testing.assert_array_equal(xl, x.transpose(0, 2, 3, 1))
    back = np.full(x.shape, np.nan, np.float32)
    _core.to_channels_first_into(xl, back, 2)
    np.testing.assert_array_equal(back, x)
    w = rng.standard_normal((24, 20, 3, 3, 1))
    np.testing.assert_array_equal(_core.weight_to_channels_last(w, 2), w.transpose(2, 3, 4, 1, 0))


def test_isa_select_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown ISA path"):
        _core.isa_select("sse9")
