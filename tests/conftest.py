"""Shared fixtures and helpers for the cconv test suite.

Plain helpers live here too and are imported by the test modules with
``from conftest import ...`` (tests/ is on sys.path: no package __init__).
cconv itself is imported lazily, so tests/test_reference.py runs without a build.
"""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_configure(config):
    # also registered in pyproject.toml; here too, so a copy of tests/ run outside the
    # repository (against an installed wheel) knows the marker
    config.addinivalue_line("markers", "slow: long sweeps (deselect with -m 'not slow')")


if HERE not in sys.path:
    sys.path.insert(0, HERE)

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "cconv",
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "cconv"))
except ImportError:  # pragma: no cover
    pass

@pytest.fixture(params=["generic", "avx2", "avx512"])
def isa(request):
    """Run the test on each ISA path this CPU supports (selected in-process)."""
    from cconv import _gemm
    old = _gemm.isa_name()
    try:
        _gemm.select_isa(request.param)
    except RuntimeError:
        pytest.skip(f"this CPU lacks the {request.param} path")
    yield request.param
    _gemm.select_isa(old)


# Relative Frobenius error bounds vs the float64 reference (DESIGN.md section 4).
TOLERANCES = {
    ("float32", "direct"): 2e-5,
    ("float32", "im2col"): 2e-5,
    ("float32", "auto"): 1e-4,  # "auto" may pick Winograd
    ("float32", "winograd"): 1e-4,
    ("float32", "fft"): 1e-4,
    ("float64", "direct"): 1e-11,
    ("float64", "im2col"): 1e-11,
    ("float64", "auto"): 1e-11,
    ("float64", "winograd"): 1e-11,
    ("float64", "fft"): 1e-11,
}


def tolerance(dtype, algorithm="direct"):
    """Relative Frobenius tolerance for a result of ``dtype`` computed by ``algorithm``."""
    return TOLERANCES[(np.dtype(dtype).name, algorithm)]


def exact_algorithm(algorithm):
    """Algorithms whose float32 result is exact for small-integer inputs."""
    return algorithm in ("direct", "im2col")


def conv_fn(nd):
    """cconv.conv1d / conv2d / conv3d (imports cconv lazily)."""
    import cconv

    return {1: cconv.conv1d, 2: cconv.conv2d, 3: cconv.conv3d}[nd]


def small_int_array(rng, shape, dtype, lo=-3, hi=3):
    """Small integers in [lo, hi]: float32 sums of products stay exact."""
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def random_array(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def xfail_if_unimplemented(exc, algorithm):
    """For the optional algorithms (winograd, fft): an explicit "unknown/not implemented"
    ValueError turns into an xfail so the suite shows it without hiding real bugs."""
    msg = str(exc).lower()
    if algorithm in ("winograd", "fft") and isinstance(exc, (ValueError, NotImplementedError)) and (
        "unknown" in msg or "not implemented" in msg or "not available" in msg
        or "unsupported" in msg or "invalid" in msg
    ):
        pytest.xfail(f"algorithm {algorithm!r} not implemented yet: {exc}")
    raise exc


@pytest.fixture
def rng(request):
    """A seeded Generator, different (but reproducible) per test."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def cconv_mod():
    import cconv

    return cconv


def subprocess_env(**overrides):
    """Environment for a child Python that imports the same cconv and the test helpers.
    A value of None removes the variable."""
    import importlib.util

    env = dict(os.environ)
    paths = [HERE]
    spec = importlib.util.find_spec("cconv")
    if spec is not None and spec.origin:
        paths.append(os.path.dirname(os.path.dirname(spec.origin)))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def assert_same_on_every_isa(code, tmp_path):
    """Run ``code`` (which saves arrays with np.savez to OUTPATH) under CCONV_ISA=generic,
    avx2 and avx512, skipping the paths this CPU cannot run, and assert every array is
    bitwise the generic path's."""
    got = {}
    for isa in ("generic", "avx2", "avx512"):
        out = tmp_path / f"{isa}.npz"
        r = run_python(code.replace("OUTPATH", repr(str(out))), CCONV_ISA=isa)
        if r.returncode != 0:
            if "cannot run" in r.stderr:
                continue
            raise AssertionError(r.stderr[-2000:])
        got[isa] = dict(np.load(out))
    assert "generic" in got
    for isa, d in got.items():
        for key in d:
            np.testing.assert_array_equal(d[key], got["generic"][key], err_msg=f"{isa} {key}")


def run_python(code, timeout=300, **env_overrides):
    """Run ``code`` in a fresh interpreter; returns the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, "-c", code], env=subprocess_env(**env_overrides),
                          capture_output=True, text=True, timeout=timeout)
