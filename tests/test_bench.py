"""The `python -m cconv bench` harness: its baseline and peers compute the same
convolution as cconv (so the timings compare like with like)."""
import io

import numpy as np
import pytest

import cconv
from cconv import _bench

SHAPES = [s for s in _bench.SUITE if s.name in ("cifar_b1_3to32", "mbv2_dw3x3s2_96_112",
                                                "resnext_g32_256_14", "r50_3x3_64_56")]


def _small(s):
    return s._replace(N=1, H=min(s.H, 20), W=min(s.W, 20))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("s", SHAPES, ids=lambda s: s.name)
def test_numpy_baseline_matches(s, layout):
    s = _small(s)
    x, w, b = _bench.make_problem(s, np.float64, layout)
    ref = cconv.conv2d(x, w, b, s.stride, s.pad, s.dilation, s.groups, layout=layout)
    got = _bench.numpy_conv2d(x, w, b, s, layout)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("s", SHAPES, ids=lambda s: s.name)
def test_onnxruntime_peer_matches(s, layout):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    s = _small(s)
    x, w, b = _bench.make_problem(s, np.float32, layout)
    ref = cconv.conv2d(x, w, b, s.stride, s.pad, s.dilation, s.groups, layout=layout)
    y = _bench._ort_fn(s, x, w, b, layout, 1)()[0]
    if layout == "NHWC":
        y = y.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    assert _bench._ort_fn(s, x.astype(np.float64), w, b, layout, 1) is None


def test_run_bench_table():
    out = io.StringIO()
    res = _bench.run_bench(["cifar_b1"], repeat=1, peers=("numpy",), file=out)
    assert len(res) == 1 and res[0]["numpy_over_cconv"] > 0
    assert "geomean numpy/cconv" in out.getvalue()
