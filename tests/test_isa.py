"""Forced ISA paths (CCONV_ISA=avx512|avx2|generic) give bitwise identical results."""
import os
import textwrap

import numpy as np
import pytest

from conftest import run_python

pytest.importorskip("cconv")

ISAS = ("avx512", "avx2", "generic")


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def cpu_supports(isa):
    """True / False from /proc/cpuinfo (None where it cannot be read)."""
    if isa == "generic":
        return True
    flags = _cpu_flags()
    if flags is None:
        return None
    if isa == "avx2":
        return {"avx2", "fma"} <= flags
    return "avx512f" in flags


PROBE = textwrap.dedent(
    """
    import cconv
    from cconv_config import active_isa
    print("ISA=" + str(active_isa(cconv)))
    """
)

COMPUTE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import cconv
    rng = np.random.default_rng(1234)
    arrays = {}
    cases = [
        ("NCHW", 2, 17, (13, 19), 33, (3, 3), 1, 1, 1),
        ("NHWC", 2, 17, (13, 19), 33, (3, 3), 1, 1, 1),
        ("NCHW", 1, 7, (9, 33), 19, (5, 3), 2, 2, 1),
        ("NHWC", 3, 64, (7, 7), 65, (1, 1), 1, 0, 1),
        ("NCHW", 1, 300, (5, 5), 9, (3, 3), 1, 1, 1),   # K > KC: several K blocks
        ("NHWC", 1, 300, (5, 5), 9, (3, 3), 1, 1, 1),
        ("NCHW", 2, 16, (11, 11), 16, (3, 3), 1, 1, 16),  # depthwise
    ]
    for i, (layout, N, C, sp, O, k, s, p, g) in enumerate(cases):
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((N, C) + sp if layout == "NCHW" else (N,) + sp + (C,))
            wshape = (O, C // g) + k if layout == "NCHW" else k + (C // g, O)
            w = rng.standard_normal(wshape)
            b = rng.standard_normal(O)
            for algo in ("im2col", "direct", "auto"):
                y = cconv.conv2d(x.astype(dtype), w.astype(dtype), b.astype(dtype), s, p, 1, g,
                                 layout=layout, algorithm=algo)
                arrays[f"c{i}_{np.dtype(dtype).name}_{algo}"] = y
    np.savez(sys.argv[1] if len(sys.argv) > 1 else OUTPATH, **arrays)
    """
)


def _probe(isa):
    r = run_python(PROBE, CCONV_ISA=isa)
    return r


@pytest.fixture(scope="module")
def default_results(tmp_path_factory):
    path = tmp_path_factory.mktemp("isa") / "default.npz"
    r = run_python(COMPUTE.replace("OUTPATH", repr(str(path))), CCONV_ISA=None)
    assert r.returncode == 0, r.stderr
    return dict(np.load(path))


@pytest.mark.parametrize("isa", ISAS)
def test_forced_isa_is_available_when_cpu_has_it(isa):
    supported = cpu_supports(isa)
    r = _probe(isa)
    if supported is False:
        pytest.skip(f"CPU lacks {isa}")
    assert r.returncode == 0, f"CCONV_ISA={isa} failed on a CPU that supports it:\n{r.stderr}"
    reported = r.stdout.strip().splitlines()[-1].removeprefix("ISA=")
    if reported == "None":
        pytest.skip("show_config() does not report the active ISA path")
    assert reported == isa


def test_default_isa_is_the_best_one():
    r = _probe(None)
    assert r.returncode == 0, r.stderr
    reported = r.stdout.strip().splitlines()[-1].removeprefix("ISA=")
    if reported == "None":
        pytest.skip("show_config() does not report the active ISA path")
    best = next(i for i in ISAS if cpu_supports(i))
    assert reported == best


@pytest.mark.parametrize("isa", ISAS)
def test_forced_isa_bitwise_identical(isa, tmp_path, default_results):
    if cpu_supports(isa) is False:
        pytest.skip(f"CPU lacks {isa}")
    path = tmp_path / f"{isa}.npz"
    r = run_python(COMPUTE.replace("OUTPATH", repr(str(path))), CCONV_ISA=isa)
    if r.returncode != 0 and cpu_supports(isa) is None:
        pytest.skip(f"CCONV_ISA={isa} not usable here: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr
    got = dict(np.load(path))
    assert set(got) == set(default_results)
    for key, ref in default_results.items():
        assert np.all(np.isfinite(ref)), key
        np.testing.assert_array_equal(got[key], ref, err_msg=f"CCONV_ISA={isa}: {key}")
