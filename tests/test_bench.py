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


def test_run_bench_packed_weights(capsys):
    """--packed times cconv with weights packed once (the table says so) and gives the
    plain call's result."""
    from cconv._bench import main

    res = _bench.run_bench(["cifar_b2", "resnext"], layout="NHWC", repeat=1, peers=(),
                           file=io.StringIO(), packed=True)
    assert [r["shape"] for r in res] == ["cifar_b2_32to64", "resnext_g32_256_14"]
    s = next(s for s in _bench.SUITE if s.name == "resnext_g32_256_14")
    x, w, b = _bench.make_problem(s, np.float32, "NHWC")
    pw = cconv.pack_weights(w, layout="NHWC", groups=s.groups)
    np.testing.assert_array_equal(
        cconv.conv2d(x, pw, b, s.stride, s.pad, s.dilation, s.groups, layout="NHWC"),
        cconv.conv2d(x, w, b, s.stride, s.pad, s.dilation, s.groups, layout="NHWC"))
    main(["--packed", "--repeat", "1", "--no-numpy", "--no-torch", "--no-ort",
          "--shapes", "cifar_b3"])
    assert "weights packed once" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--suite", "backward", "--packed"])


@pytest.mark.parametrize("n", [0, 1, 63, 64, 1000, 4097])
@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_stream_copy(n, nthreads):
    from cconv import _core
    src = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    dst = np.full(n, 7, np.uint8)
    _core.stream_copy(src, dst, nthreads)
    np.testing.assert_array_equal(dst, src)
    with pytest.raises(ValueError, match="stream_copy: src has"):
        _core.stream_copy(src, np.empty(n + 1, np.uint8), nthreads)


def test_roofline():
    s = next(s for s in _bench.SUITE if s.name == "mbv2_dw3x3_144_56")
    # 144 x 56 x 56 input and output, 144 x 9 weights, 144 biases, float32
    assert _bench.problem_bytes(s) == 4 * (2 * 144 * 56 * 56 + 144 * 9 + 144)
    # 8.1 MFLOP at 100 GFLOP/s: 0.081 ms, slower than a 0.05 ms copy, faster than 0.1
    assert _bench.roofline_ms(s, 100.0, 0.05) == pytest.approx(_bench.flops(s) / 1e8)
    assert _bench.roofline_ms(s, 100.0, 0.1) == 0.1
    out = io.StringIO()
    res = _bench.run_bench(["effnet"], repeat=1, peers=(), file=out, roofline=True)
    assert res[0]["gbs"] > 0 and 0 < res[0]["of_roof"]
    assert "GB/s (64 MiB)" in out.getvalue()


@pytest.mark.parametrize("suite", ["backward", "transposed"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_run_grad_bench_table(suite, layout):
    from cconv import _bench_grad
    out = io.StringIO()
    key = "cifar" if suite == "backward" else "convT1d"
    res = _bench_grad.run_grad_bench(suite, layout, repeat=1, peers=(), shapes=[key],
                                     file=out)
    assert len(res) == 1 and res[0]["cconv_ms"] > 0 and "torch_ms" not in res[0]
    assert res[0]["shape"] in out.getvalue() and layout in out.getvalue()


def test_grad_suite_layouts_agree():
    """The channels-last problems of both gradient suites are the channels-first ones
    moved: the same gradients and transposed outputs, transposed."""
    from cconv import _bench_grad
    s = _bench_grad.BACKWARD_SUITE[0]
    (x, w, go), _ = _bench_grad.make_backward_problem(s, "NCHW")
    (xh, wh, goh), _ = _bench_grad.make_backward_problem(s, "NHWC")
    a = cconv.conv2d_backward(go, x, w, s.stride, s.pad, s.dilation, s.groups)
    b = cconv.conv2d_backward(goh, xh, wh, s.stride, s.pad, s.dilation, s.groups,
                              layout="NHWC")
    np.testing.assert_allclose(b[0], a[0].transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b[1], a[1].transpose(2, 3, 1, 0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b[2], a[2], rtol=1e-4, atol=1e-3)
    for t in _bench_grad.TRANSPOSED_SUITE:
        if t.name.startswith("convT_64to3") or t.name.startswith("convT1d"):
            (x, w), _ = _bench_grad.make_transposed_problem(t, "NCHW")
            (xh, wh), _ = _bench_grad.make_transposed_problem(t, "NHWC")
            f = cconv.conv_transpose1d if x.ndim == 3 else cconv.conv_transpose2d
            lay = "NLC" if x.ndim == 3 else "NHWC"
            y = f(x, w, None, t.stride, t.pad)
            yh = f(xh, wh, None, t.stride, t.pad, layout=lay)
            perm = (0, 2, 1) if x.ndim == 3 else (0, 2, 3, 1)
            np.testing.assert_allclose(yh, y.transpose(perm), rtol=1e-4, atol=1e-4)


def test_bench_cli_grad_suite(capsys):
    from cconv._bench import main
    main(["--suite", "transposed", "--repeat", "1", "--no-torch", "--shapes", "convT1d"])
    assert "convT1d_64to64_k4s2_L4000_b4" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--suite", "backward", "--dtype", "float64"])
