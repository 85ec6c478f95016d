"""Calls from many Python threads at once (the GIL is released; no shared scratch)
and after fork give the same results as serial calls."""
import os
import sys
import threading

import numpy as np
import pytest

import cconv


def _problems():
    rng = np.random.default_rng(11)
    probs = []
    for layout, algo in [("NCHW", "im2col"), ("NHWC", "im2col"), ("NCHW", "direct"),
                         ("NHWC", "auto")]:
        cl = layout == "NHWC"
        x = rng.standard_normal((2, 12, 13, 16) if cl else (2, 16, 12, 13)).astype(np.float32)
        w = rng.standard_normal((3, 3, 16, 20) if cl else (20, 16, 3, 3)).astype(np.float32)
        probs.append((x, w, layout, algo))
    x = rng.standard_normal((2, 24, 15, 15)).astype(np.float32)
    w = rng.standard_normal((24, 1, 3, 3)).astype(np.float32)
    probs.append((x, w, "NCHW", "auto"))  # depthwise
    return probs


def _run(p):
    x, w, layout, algo = p
    groups = x.shape[1] if w.shape[1] == 1 and layout == "NCHW" else 1
    return cconv.conv2d(x, w, None, 1, 1, 1, groups, layout=layout, algorithm=algo)


def test_eight_python_threads_match_serial():
    probs = _problems()
    serial = [_run(p) for p in probs]
    results = {}
    errors = []
    barrier = threading.Barrier(8)

    def worker(tid):
        try:
            barrier.wait()
            for rep in range(5):
                for i, p in enumerate(probs):
                    results[(tid, rep, i)] = _run(p)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 8 * 5 * len(probs)
    for (tid, rep, i), r in results.items():
        np.testing.assert_array_equal(r, serial[i])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
# forking a process that has run OpenMP threads is the point (Python >= 3.12 warns)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_compute_fork_compute_in_child():
    probs = _problems()
    before = [_run(p) for p in probs]
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the OpenMP pool of the parent is gone; cconv must still work
        ok = all(np.array_equal(_run(p), b) for p, b in zip(probs, before))
        os.write(wfd, b"1" if ok else b"0")
        os._exit(0)
    os.close(wfd)
    got = os.read(r, 1)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert got == b"1"
