"""Where cconv's arrays get their memory: the array cache (_arraycache).

Every public entry point (the conv functions, their gradients, the nn layers' forward
and backward) runs with the cache as NumPy's memory handler (`cached_arrays`), so the
arrays it makes (outputs, gradients, temporaries) take their buffers from the cache and
give them back to it when they are freed, even long after the call, in user code. A
training loop then reuses the same buffers every step instead of faulting in new pages
(glibc hands large freed blocks back to the kernel, and each new page is zero-filled on
first touch). Measured on the development VM (2 cores, 2 process alternations against
the build before the cache): CIFAR CNN training step, batch 32, 51.6-52.0 -> 43.9-44.4
ms, page faults per step 1087-1442 -> 1; a 26 MB conv1d output right after a PyTorch
call 25-27 -> 1.6-1.7 ms (NumPy's huge-page advice had met fragmented memory). Only
buffers of at least 1 MiB are cached; at most 512 MiB by default (`set_array_cache`,
or the environment variable CCONV_ARRAY_CACHE_MB read at import). Arrays the user makes
outside cconv calls keep NumPy's handler (a user's own nn.Module subclass is wrapped like
cconv's layers: its forward and backward run with the cache).
"""
import functools
import operator
import os

from . import _arraycache

_DEFAULT_MB = 512


def _limit_from_env():
    raw = os.environ.get("CCONV_ARRAY_CACHE_MB")
    if raw is None or raw.strip() == "":
        return _DEFAULT_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"CCONV_ARRAY_CACHE_MB must be a number of MiB >= 0, got {raw!r}")
    if not mb >= 0:
        raise ValueError(f"CCONV_ARRAY_CACHE_MB must be a number of MiB >= 0, got {raw!r}")
    return int(mb * (1 << 20))


_arraycache.set_limit(_limit_from_env())
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_arraycache.after_fork_in_child)


def set_array_cache(max_bytes=None):
    """Set how many bytes of freed array buffers cconv keeps for reuse (0: none, and the
    ones kept are released now); returns the previous limit. With no argument, only
    returns the current limit.

    cconv's outputs, gradients and temporaries of 1 MiB or more come from this cache and
    go back to it when they are freed, instead of to the C library, which hands large
    blocks back to the operating system: each new array would then be fresh pages, zero-
    filled by the kernel on first touch (about 1-2.6 us per 4 KiB page on the
    development machine; 10% of a small CNN's training step). Default: 512 MiB, or the
    CCONV_ARRAY_CACHE_MB environment variable (MiB) at import.
    """
    if max_bytes is None:
        return _arraycache.stats()[0]
    try:
        n = operator.index(max_bytes)
    except TypeError:
        raise TypeError(f"set_array_cache: max_bytes must be an int >= 0, got "
                        f"{max_bytes!r}") from None
    if n < 0:
        raise ValueError(f"set_array_cache: max_bytes must be >= 0, got {n}")
    return _arraycache.set_limit(n)


def array_cache_info():
    """dict: limit (bytes), cached (bytes kept now), blocks, hits, misses (allocations of
    1 MiB or more served from the cache / newly allocated)."""
    limit, cached, blocks, hits, misses = _arraycache.stats()
    return {"limit": limit, "cached": cached, "blocks": blocks, "hits": hits,
            "misses": misses}


def cached_arrays(fn):
    """Decorator: run fn with the array cache as NumPy's memory handler (restored after,
    also on errors)."""
    use, restore = _arraycache.use, _arraycache.restore

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = use()
        try:
            return fn(*args, **kwargs)
        finally:
            restore(previous)

    return wrapper
