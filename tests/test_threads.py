"""Thread control and the bitwise-reproducibility contract across thread counts."""
import os
import textwrap

import numpy as np
import pytest

from conftest import conv_fn, run_python, xfail_if_unimplemented
from reference import input_shape, weight_shape

cconv = pytest.importorskip("cconv")

ALL_ALGOS = ("auto", "direct", "im2col", "winograd")


def _expect(n):
    """What get_num_threads reports after asking for n: n, or 1 in a build without
    OpenMP (which always runs on one thread)."""
    return n if cconv._core.openmp_enabled() else 1


def test_get_set_num_threads():
    n0 = cconv.get_num_threads()
    assert isinstance(n0, int) and n0 >= 1
    try:
        for n in (1, 2, 3, 5):
            cconv.set_num_threads(n)
            assert cconv.get_num_threads() == _expect(n)
    finally:
        cconv.set_num_threads(n0)
    assert cconv.get_num_threads() == n0


@pytest.mark.parametrize("bad", [0, -1])
def test_set_num_threads_rejects_below_one(bad):
    n0 = cconv.get_num_threads()
    with pytest.raises(ValueError):
        cconv.set_num_threads(bad)
    assert cconv.get_num_threads() == n0


def test_num_threads_context_restores():
    n0 = cconv.get_num_threads()
    with cconv.num_threads(3):
        assert cconv.get_num_threads() == _expect(3)
        with cconv.num_threads(1):
            assert cconv.get_num_threads() == 1
        assert cconv.get_num_threads() == _expect(3)
    assert cconv.get_num_threads() == n0
    with pytest.raises(RuntimeError):
        with cconv.num_threads(2):
            assert cconv.get_num_threads() == _expect(2)
            raise RuntimeError("boom")
    assert cconv.get_num_threads() == n0


def _problem(layout, dtype, groups=1, C=16, O=24):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(input_shape(layout, 2, C, (20, 20))).astype(dtype)
    w = rng.standard_normal(weight_shape(layout, O, C // groups, (3, 3))).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("groups,C,O", [(1, 16, 24), (16, 16, 16), (4, 16, 24)],
                         ids=["dense", "depthwise", "grouped"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("algorithm", ALL_ALGOS)
def test_bitwise_identical_across_thread_counts(algorithm, layout, dtype, groups, C, O):
    x, w, b = _problem(layout, dtype, groups, C, O)
    results = []
    for n in (1, 2, 3):
        with cconv.num_threads(n):
            try:
                y = conv_fn(2)(x, w, b, 1, 1, 1, groups, layout=layout, algorithm=algorithm)
            except Exception as exc:  # noqa: BLE001
                xfail_if_unimplemented(exc, algorithm)
            results.append(y)
    assert np.all(np.isfinite(results[0]))
    for n, y in zip((2, 3), results[1:]):
        np.testing.assert_array_equal(y, results[0], err_msg=f"{n} threads vs 1")


@pytest.mark.parametrize("nd,layout", [(1, "NCL"), (1, "NLC"), (3, "NCDHW"), (3, "NDHWC")])
@pytest.mark.parametrize("algorithm", ("auto", "direct", "im2col"))
def test_bitwise_identical_across_thread_counts_1d_3d(nd, layout, algorithm):
    rng = np.random.default_rng(3)
    sp = (301,) if nd == 1 else (6, 7, 9)
    k = (5,) if nd == 1 else (3, 3, 3)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(input_shape(layout, 3, 12, sp)).astype(dtype)
        w = rng.standard_normal(weight_shape(layout, 20, 12, k)).astype(dtype)
        ys = []
        for n in (1, 2, 3):
            with cconv.num_threads(n):
                ys.append(conv_fn(nd)(x, w, None, 2, 1, layout=layout, algorithm=algorithm))
        np.testing.assert_array_equal(ys[1], ys[0])
        np.testing.assert_array_equal(ys[2], ys[0])


def test_omp_num_threads_honoured():
    for n in (1, 3):
        r = run_python("import cconv; print(cconv.get_num_threads())", OMP_NUM_THREADS=n)
        assert r.returncode == 0, r.stderr
        got = int(r.stdout.strip().splitlines()[-1])
        if n == 1:
            assert got == 1
        else:
            from cconv_config import openmp_enabled
            if openmp_enabled(cconv) is False:
                assert got == 1
            else:
                assert got == n


def test_default_thread_count_is_affinity():
    from cconv_config import openmp_enabled

    if openmp_enabled(cconv) is not True:
        pytest.skip("show_config() does not say OpenMP is enabled")
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no sched_getaffinity")
    r = run_python("import os, cconv; print(cconv.get_num_threads(), len(os.sched_getaffinity(0)))",
                   OMP_NUM_THREADS=None)
    assert r.returncode == 0, r.stderr
    got, ncpu = map(int, r.stdout.split())
    assert got == ncpu


THREADPOOL_CODE = textwrap.dedent(
    """
    import json, cconv
    from threadpoolctl import threadpool_info, threadpool_limits
    cconv.get_num_threads()
    info = [d for d in threadpool_info() if d.get("user_api") == "openmp"]
    before = cconv.get_num_threads()
    with threadpool_limits(1, user_api="openmp"):
        inside = cconv.get_num_threads()
    after = cconv.get_num_threads()
    print(json.dumps({"info": info, "before": before, "inside": inside, "after": after}))
    """
)


def test_threadpoolctl_sees_and_limits_cconv():
    pytest.importorskip("threadpoolctl")
    import json

    from cconv_config import openmp_enabled

    enabled = openmp_enabled(cconv)
    if enabled is None:
        pytest.skip("cannot tell from cconv.show_config() whether OpenMP is enabled")
    if not enabled:
        pytest.skip("cconv was built without OpenMP")
    # A fresh interpreter that loads only numpy and cconv: any OpenMP runtime it sees is cconv's.
    r = run_python(THREADPOOL_CODE, OMP_NUM_THREADS=3)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["info"], "threadpoolctl sees no OpenMP runtime after importing cconv"
    assert res["before"] == 3
    assert res["inside"] == 1
    assert res["after"] == 3
