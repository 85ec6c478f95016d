"""The float64 NumPy reference against PyTorch (skipped without torch)."""
import numpy as np
import pytest

from reference import (conv_nd_reference, input_shape, rel_error, resolve_padding,
                       weight_shape, output_spatial)

torch = pytest.importorskip("torch")
from torch_helpers import torch_conv  # noqa: E402

# (layout, N, C, spatial, O, k, stride, padding, dilation, groups, padding_mode, bias)
CONFIGS = [
    ("NCL", 2, 3, (11,), 5, (3,), 1, 1, 1, 1, "zeros", True),
    ("NCL", 1, 4, (17,), 6, (5,), 2, "same", 2, 2, "zeros", False),
    ("NLC", 2, 6, (9,), 6, (3,), 1, "causal", 3, 6, "zeros", True),
    ("NCL", 1, 2, (8,), 3, (4,), 1, ((2, 1),), 1, 1, "reflect", True),
    ("NLC", 3, 3, (7,), 2, (3,), 3, ((3, 0),), 1, 1, "circular", False),
    ("NCHW", 2, 3, (7, 9), 4, (3, 3), 1, 1, 1, 1, "zeros", True),
    ("NCHW", 1, 4, (10, 8), 8, (3, 2), (2, 1), (1, 0), (1, 2), 2, "reflect", True),
    ("NHWC", 2, 6, (8, 7), 12, (3, 3), 1, "same", 1, 6, "replicate", True),
    ("NHWC", 1, 5, (6, 9), 7, (1, 1), 2, 0, 1, 1, "zeros", False),
    ("NCHW", 2, 4, (9, 9), 4, (3, 3), 2, "same", 1, 4, "circular", True),
    ("NHWC", 1, 3, (12, 5), 2, (5, 3), (3, 1), ((2, 1), (0, 2)), (1, 1), 1, "zeros", True),
    ("NCHW", 1, 2, (5, 5), 3, (7, 7), 1, 1, 1, 1, "zeros", True),  # kernel > input, padded fits
    ("NCHW", 1, 2, (9, 6), 3, (2, 2), 1, "valid", (8, 5), 1, "zeros", True),  # huge dilation
    ("NCDHW", 1, 2, (4, 5, 6), 3, (2, 3, 3), 1, 1, 1, 1, "zeros", True),
    ("NDHWC", 2, 4, (5, 4, 6), 4, (3, 1, 2), (2, 1, 1), ((1, 1), (0, 0), (1, 0)), 1, 2,
     "replicate", False),
    ("NCDHW", 1, 3, (6, 6, 5), 6, (3, 3, 3), 1, "same", (2, 1, 1), 3, "reflect", True),
    ("NDHWC", 1, 2, (4, 4, 4), 3, (3, 3, 3), 2, 1, 1, 1, "circular", True),
]


def _case(rng, cfg):
    layout, N, C, sp, O, k, stride, padding, dilation, groups, mode, has_bias = cfg
    x = rng.standard_normal(input_shape(layout, N, C, sp))
    w = rng.standard_normal(weight_shape(layout, O, C // groups, k))
    b = rng.standard_normal(O) if has_bias else None
    pairs = resolve_padding(padding, sp, k, stride, dilation)
    return x, w, b, pairs


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c[0]}-{c[10]}-{c[7]}")
def test_reference_matches_torch(rng, cfg):
    layout, N, C, sp, O, k, stride, padding, dilation, groups, mode, has_bias = cfg
    x, w, b, pairs = _case(rng, cfg)
    ref = conv_nd_reference(x, w, b, stride, pairs, dilation, groups, mode, layout)
    got = torch_conv(x, w, b, stride, pairs, dilation, groups, mode, layout)
    assert ref.shape == got.shape
    assert ref.dtype == np.float64 and ref.flags.c_contiguous
    assert rel_error(ref, got) <= 1e-13


def test_reference_unbatched_matches_batched(rng):
    x = rng.standard_normal((3, 7, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    ref = conv_nd_reference(x, w, None, 1, ((1, 1), (1, 1)), 1, 1, "zeros", "NCHW")
    ref_b = conv_nd_reference(x[None], w, None, 1, ((1, 1), (1, 1)), 1, 1, "zeros", "NCHW")
    assert ref.shape == (4, 7, 8)
    np.testing.assert_array_equal(ref, ref_b[0])
    got = torch_conv(x, w, None, 1, ((1, 1), (1, 1)), 1, 1, "zeros", "NCHW")
    assert rel_error(ref, got) <= 1e-13


def test_reference_layouts_agree(rng):
    """NHWC with (*k, C/g, O) weights is NCHW with transposed data."""
    x = rng.standard_normal((2, 6, 9, 8))
    w = rng.standard_normal((6, 3, 3, 2))
    b = rng.standard_normal(6)
    pairs = ((1, 2), (0, 1))
    ref = conv_nd_reference(x, w, b, (2, 1), pairs, (1, 2), 2, "reflect", "NCHW")
    ref_l = conv_nd_reference(np.moveaxis(x, 1, -1), np.transpose(w, (2, 3, 1, 0)), b,
                              (2, 1), pairs, (1, 2), 2, "reflect", "NHWC")
    np.testing.assert_allclose(np.moveaxis(ref_l, -1, 1), ref, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("n,k,s,d", [(n, k, s, d) for n in (1, 2, 5, 7, 10) for k in (1, 2, 3, 4)
                                     for s in (1, 2, 3) for d in (1, 2)])
def test_resolve_same_matches_tensorflow_rule(n, k, s, d):
    (b, a), = resolve_padding("same", (n,), (k,), s, d)
    out = output_spatial((n,), (k,), s, ((b, a),), d)[0]
    assert out == -(-n // s)
    assert a - b in (0, 1) and b >= 0
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    assert a + b == total


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_resolve_same_stride1_matches_torch():
    """For stride 1, torch's padding='same' gives the same output as our pairs."""
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    for k, d in [(3, 1), (4, 1), (2, 3), (5, 2)]:
        x = rng.standard_normal((1, 2, 9))
        w = rng.standard_normal((3, 2, k))
        t = F.conv1d(torch.from_numpy(x), torch.from_numpy(w), padding="same", dilation=d).numpy()
        pairs = resolve_padding("same", (9,), (k,), 1, d)
        ref = conv_nd_reference(x, w, None, 1, pairs, d, 1, "zeros", "NCL")
        # torch puts the odd pixel after as well
        assert rel_error(ref, t) <= 1e-13


def test_resolve_padding_forms():
    assert resolve_padding(2, (5, 5), (3, 3)) == ((2, 2), (2, 2))
    assert resolve_padding((1, 2), (5, 5), (3, 3)) == ((1, 1), (2, 2))
    assert resolve_padding(((1, 0), (2, 3)), (5, 5), (3, 3)) == ((1, 0), (2, 3))
    assert resolve_padding("valid", (5, 5, 5), (3, 3, 3)) == ((0, 0),) * 3
    assert resolve_padding("causal", (9,), (3,), 1, 2) == ((4, 0),)
    assert resolve_padding("same", (5,), (4,), 1, 1) == ((1, 2),)
    with pytest.raises(ValueError):
        resolve_padding("causal", (5, 5), (3, 3))
    with pytest.raises(ValueError):
        resolve_padding("full", (5,), (3,))


def test_rel_error():
    a = np.array([3.0, 4.0])
    assert rel_error(a, a) == 0.0
    assert rel_error(a + np.array([0.0, 0.5]), a) == pytest.approx(0.1)
    assert rel_error(np.zeros(2), np.zeros(2)) == 0.0
    assert rel_error(np.ones(2), np.zeros(2)) > 1e100
