"""cconv against PyTorch on a few dozen configurations (skipped without torch)."""
import numpy as np
import pytest

from conftest import conv_fn, tolerance
from reference import input_shape, rel_error, resolve_padding, weight_shape

pytest.importorskip("torch")
from torch_helpers import torch_conv  # noqa: E402

# (nd, N, C, spatial, O, k, stride, padding, dilation, groups, padding_mode, bias)
CONFIGS = [
    (1, 2, 3, (31,), 8, (3,), 1, 1, 1, 1, "zeros", True),
    (1, 1, 16, (50,), 16, (5,), 2, "same", 1, 16, "zeros", False),
    (1, 2, 8, (40,), 12, (3,), 1, "causal", 4, 4, "zeros", True),
    (1, 1, 5, (19,), 7, (4,), 3, ((2, 1),), 2, 1, "reflect", True),
    (1, 2, 6, (17,), 6, (3,), 1, 2, 1, 3, "circular", False),
    (2, 2, 3, (32, 32), 16, (3, 3), 1, 1, 1, 1, "zeros", True),  # CIFAR stem
    (2, 1, 64, (14, 14), 64, (3, 3), 1, 1, 1, 1, "zeros", False),
    (2, 1, 64, (14, 14), 256, (1, 1), 1, 0, 1, 1, "zeros", True),  # ResNet 1x1
    (2, 1, 32, (15, 15), 64, (1, 1), 2, 0, 1, 1, "zeros", False),  # strided 1x1
    (2, 2, 32, (12, 12), 32, (3, 3), 1, 1, 1, 32, "zeros", True),  # depthwise
    (2, 1, 32, (13, 13), 32, (3, 3), 2, 1, 1, 32, "zeros", True),  # depthwise s2
    (2, 1, 16, (10, 10), 48, (3, 3), 1, 1, 1, 16, "zeros", False),  # channel multiplier 3
    (2, 1, 64, (8, 8), 64, (3, 3), 1, 1, 1, 8, "zeros", True),  # ResNeXt grouped
    (2, 1, 8, (20, 20), 8, (3, 3), 1, 4, 4, 1, "zeros", True),  # dilated
    (2, 1, 3, (28, 27), 6, (7, 7), 2, 3, 1, 1, "zeros", True),  # ResNet stem
    (2, 2, 5, (9, 11), 7, (3, 5), (2, 1), "same", (1, 2), 1, "zeros", True),
    (2, 1, 4, (8, 8), 4, (3, 3), 1, 1, 1, 1, "reflect", True),
    (2, 1, 4, (8, 9), 6, (3, 3), 1, ((2, 0), (1, 2)), 1, 2, "replicate", False),
    (2, 1, 4, (7, 7), 4, (5, 5), 1, 2, 1, 1, "circular", True),
    (2, 1, 3, (6, 6), 2, (6, 6), 1, "valid", 1, 1, "zeros", True),  # full-image kernel
    (2, 1, 17, (19, 7), 33, (2, 2), 3, 0, 1, 1, "zeros", True),  # stride > kernel
    (3, 1, 3, (8, 8, 8), 8, (3, 3, 3), 1, 1, 1, 1, "zeros", True),
    (3, 2, 4, (5, 6, 7), 6, (3, 1, 3), (1, 2, 1), "same", 1, 2, "zeros", False),
    (3, 1, 6, (6, 6, 6), 6, (3, 3, 3), 1, 1, 1, 6, "replicate", True),
    (3, 1, 4, (5, 5, 5), 4, (2, 2, 2), 2, 0, 1, 1, "zeros", True),
    (3, 1, 2, (6, 5, 6), 3, (3, 3, 3), 1, 1, (2, 1, 1), 1, "reflect", True),
    (3, 1, 2, (4, 4, 4), 3, (3, 3, 3), 1, 1, 1, 1, "circular", False),
]

LAYOUTS = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}


def _params():
    out = []
    for i, c in enumerate(CONFIGS):
        for fam in (0, 1):
            out.append(pytest.param(c, LAYOUTS[c[0]][fam], id=f"{i}-{LAYOUTS[c[0]][fam]}-{c[10]}"))
    return out


@pytest.mark.parametrize("algorithm", ["auto", "direct", "im2col"])
@pytest.mark.parametrize("cfg,layout", _params())
def test_against_torch(rng, cfg, layout, algorithm):
    nd, N, C, sp, O, k, stride, padding, dilation, groups, mode, has_bias = cfg
    x = rng.standard_normal(input_shape(layout, N, C, sp))
    w = rng.standard_normal(weight_shape(layout, O, C // groups, k))
    b = rng.standard_normal(O) if has_bias else None
    pairs = resolve_padding(padding, sp, k, stride, dilation)
    t64 = torch_conv(x, w, b, stride, pairs, dilation, groups, mode, layout)
    fn = conv_fn(nd)
    for dtype in (np.float32, np.float64):
        xd, wd = x.astype(dtype), w.astype(dtype)
        bd = None if b is None else b.astype(dtype)
        y = fn(xd, wd, bd, stride, padding, dilation, groups, padding_mode=mode, layout=layout,
               algorithm=algorithm)
        assert y.shape == t64.shape and y.dtype == dtype
        assert rel_error(y, t64) <= tolerance(dtype, algorithm)
        if dtype == np.float32:
            # torch's own float32 result is a sanity bound on ours (same order of error)
            t32 = torch_conv(xd, wd, bd, stride, pairs, dilation, groups, mode, layout,
                             dtype=np.float32)
            assert rel_error(y, t32) <= 1e-4
