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
