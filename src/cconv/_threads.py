"""Thread count: one source of truth, OpenMP's own setting.

The count cconv uses is OpenMP's ``nthreads-var`` for the calling thread, i.e. what
``omp_get_max_threads()`` returns. So ``OMP_NUM_THREADS`` is honoured (OpenMP reads
it at start-up), threadpoolctl's ``threadpool_limits(n, user_api="openmp")`` limits
cconv (it calls ``omp_set_num_threads`` on cconv's OpenMP runtime), and
``set_num_threads`` simply sets that value. Without OpenMP the count is always 1.
"""
import contextlib
import operator
import os

from . import _core

_requested = None  # last value given to set_num_threads (applies to new Python threads too)
_forked_child = False  # set in a child made by os.fork()


def _after_fork_in_child():
    # GNU OpenMP's thread pool does not survive fork(): a parallel region in the child
    # of a process that already ran one can hang. A forked child runs on one thread
    # (no parallel region is started), which is always safe.
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads():
    """Number of OpenMP threads cconv's kernels will use in the calling thread.

    It is OpenMP's setting for the calling thread, capped by the last
    ``set_num_threads`` value (OpenMP keeps one setting per OS thread, so the cap is
    what makes ``set_num_threads`` apply to other Python threads as well). In a child
    process made by ``os.fork()`` it is 1: GNU OpenMP's threads do not survive fork.
    """
    if not _core.openmp_enabled() or _forked_child:
        return 1
    n = _core.omp_max_threads()
    return n if _requested is None else min(n, _requested)


def _check_count(n, fname):
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{fname}: n must be an int >= 1, got {n!r}") from None
    if n < 1:
        raise ValueError(f"{fname}: n must be >= 1, got {n}")
    return n


def set_num_threads(n):
    """Use ``n`` OpenMP threads (n >= 1) for every following cconv call.

    Values above the CPU count are allowed (useful to test thread-count invariance).
    Without OpenMP the call is accepted and cconv keeps running on one thread.
    """
    global _requested
    n = _check_count(n, "set_num_threads")
    _requested = n
    _core.omp_set_threads(n)


@contextlib.contextmanager
def num_threads(n):
    """Scoped thread count: ``with cconv.num_threads(1): ...`` restores the previous one."""
    global _requested
    n = _check_count(n, "num_threads")
    prev_req = _requested
    prev_omp = _core.omp_max_threads()
    _requested = n
    _core.omp_set_threads(n)
    try:
        yield n
    finally:
        _requested = prev_req
        _core.omp_set_threads(prev_omp)
