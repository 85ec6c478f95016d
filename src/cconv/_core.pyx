"""OpenMP runtime queries shared by the Python layer (threads, build facts)."""

cdef extern from "omp_shim.h" nogil:
    int cconv_omp_enabled()
    int cconv_omp_max_threads()
    void cconv_omp_set_threads(int n)
    int cconv_omp_version()


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(cconv_omp_enabled())


def openmp_version():
    """The _OPENMP date macro the extensions were compiled with (0 without OpenMP)."""
    return cconv_omp_version()


def omp_max_threads():
    """OpenMP's nthreads-var for the calling thread (what threadpoolctl reads and sets)."""
    return cconv_omp_max_threads()


def omp_set_threads(int n):
    """Set OpenMP's nthreads-var for the calling thread."""
    cconv_omp_set_threads(n)


# ----------------------------------------------------------------------------- layouts
cimport cython
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy

include "_layout.pxi"

import numpy as np

ISA_NAMES = ("generic", "avx2", "avx512")


def isa_select(name):
    """The layout transposes' path (_isa.configure): "avx512" moves 16 x 16 blocks
    through registers, "generic" and "avx2" run the portable loop (a copy either way: the
    same values). ValueError for unknown names, RuntimeError if unsupported."""
    if name not in ISA_NAMES:
        raise ValueError(f"unknown ISA path {name!r}; expected one of {ISA_NAMES}")
    if cconv_transpose_select(name == "avx512") != (name == "avx512"):
        raise RuntimeError(f"this CPU cannot run the {name!r} path")


def isa_active():
    """The layout transposes' path: "avx512" or "generic"."""
    return "avx512" if cconv_transpose_simd_active() else "generic"


def to_channels_last(a, int nthreads):
    """(N, C, *spatial) -> a new C-contiguous (N, *spatial, C) array (threaded blocked
    transposes; NumPy's strided copy was 2-3x slower for the way back). Cython, so that
    no Python bytecode (and so no signal delivery) runs between a kernel and its
    transposes."""
    a = np.ascontiguousarray(a)
    N, C = a.shape[0], a.shape[1]
    out = np.empty((N,) + a.shape[2:] + (C,), a.dtype)
    if out.size:
        transpose_last2(a.reshape(N, C, -1), out.reshape(N, -1, C), nthreads)
    return out


def to_channels_first_into(a, out, int nthreads):
    """out (N, C, *spatial), C-contiguous, = a (N, *spatial, C) moved to channels-first."""
    a = np.ascontiguousarray(a)
    N, C = out.shape[0], out.shape[1]
    if out.size:
        transpose_last2(a.reshape(N, -1, C), out.reshape(N, C, -1), nthreads)


def weight_to_channels_last(w5, int nthreads):
    """A conv weight (O, Cg, kd, kh, kw) as a new (kd, kh, kw, Cg, O) array: two threaded
    transposes, (Cg, taps) -> (taps, Cg) per output channel, then (O, taps * Cg) ->
    (taps * Cg, O)."""
    w5 = np.ascontiguousarray(w5)
    O, Cg = w5.shape[0], w5.shape[1]
    taps = w5.shape[2] * w5.shape[3] * w5.shape[4]
    out = np.empty(w5.shape[2:] + (Cg, O), w5.dtype)
    if out.size == 0:
        return out
    if taps > 1 and Cg > 1:
        tmp = np.empty((O, taps, Cg), w5.dtype)
        transpose_last2(w5.reshape(O, Cg, taps), tmp, nthreads)
    else:
        tmp = w5
    transpose_last2(tmp.reshape(1, O, taps * Cg), out.reshape(1, taps * Cg, O), nthreads)
    return out


def weight_to_channels_first(w5, int nthreads):
    """A channels-last conv weight (kd, kh, kw, Cg, O) as a new (O, Cg, kd, kh, kw) array:
    (taps * Cg, O) -> (O, taps * Cg), then (taps, Cg) -> (Cg, taps) per output channel."""
    w5 = np.ascontiguousarray(w5)
    Cg, O = w5.shape[3], w5.shape[4]
    taps = w5.shape[0] * w5.shape[1] * w5.shape[2]
    out = np.empty((O, Cg) + w5.shape[:3], w5.dtype)
    if out.size == 0:
        return out
    if taps > 1 and Cg > 1:
        tmp = np.empty((O, taps, Cg), w5.dtype)
        transpose_last2(w5.reshape(1, taps * Cg, O), tmp.reshape(1, O, taps * Cg), nthreads)
        transpose_last2(tmp, out.reshape(O, Cg, taps), nthreads)
    else:
        transpose_last2(w5.reshape(1, taps * Cg, O), out.reshape(1, O, taps * Cg), nthreads)
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def transpose_last2(const floating[:, :, ::1] src, floating[:, :, ::1] dst, int nthreads):
    """dst[n] = src[n].T for every n (see _layout.pxi)."""
    if src.shape[0] and src.shape[1] and src.shape[2]:
        with nogil:
            transpose_batched(&src[0, 0, 0], &dst[0, 0, 0], src.shape[0], src.shape[1],
                              src.shape[2], nthreads)


@cython.boundscheck(False)
@cython.wraparound(False)
def copy_into(const floating[:, :, :, :, :] src, floating[:, :, :, :, :] dst, int nthreads):
    """dst[...] = src for two 5-D views of one shape, any strides (a strided slice of a
    result, such as one stride phase of a transposed convolution's output), threaded
    over the three leading axes; NumPy's assignment runs on one thread."""
    cdef Py_ssize_t A = dst.shape[0], B = dst.shape[1], C = dst.shape[2]
    cdef Py_ssize_t D = dst.shape[3], E = dst.shape[4], t, a, b, c, d, e
    for d in range(5):
        if src.shape[d] != dst.shape[d]:
            raise ValueError(f"copy_into: shapes differ in axis {d}: {src.shape[d]} and "
                             f"{dst.shape[d]}")
    if A * B * C * D * E == 0:
        return
    # element strides of the two inner axes: plain pointer arithmetic in the loop
    # (indexing the 5-D memoryviews element by element ran 3x slower than NumPy)
    cdef Py_ssize_t sd = dst.strides[3] // sizeof(floating), se = dst.strides[4] // sizeof(floating)
    cdef Py_ssize_t rd = src.strides[3] // sizeof(floating), re = src.strides[4] // sizeof(floating)
    cdef floating *dp
    cdef const floating *sp
    for t in prange(A * B * C, nogil=True, schedule="static", num_threads=nthreads):
        a = t // (B * C)
        b = (t // C) % B
        c = t % C
        dp = &dst[a, b, c, 0, 0]
        sp = &src[a, b, c, 0, 0]
        for d in range(D):
            for e in range(E):
                dp[d * sd + e * se] = sp[d * rd + e * re]


@cython.boundscheck(False)
@cython.wraparound(False)
def repeat_channels(const floating[:, ::1] src, floating[:, ::1] dst, Py_ssize_t m,
                    int nthreads):
    """dst[r, c * m + j] = src[r, c] for j < m (np.repeat along the last axis of a
    channels-last array: a depthwise multiplier's inputs), threaded over rows; NumPy's
    repeat ran on one thread at a third of this speed."""
    cdef Py_ssize_t R = src.shape[0], C = src.shape[1], r, c, j
    if dst.shape[0] != R or dst.shape[1] != C * m:
        raise ValueError(f"repeat_channels: dst has shape ({dst.shape[0]}, "
                         f"{dst.shape[1]}), expected ({R}, {C * m})")
    cdef floating *dp
    cdef const floating *sp
    cdef floating v
    for r in prange(R, nogil=True, schedule="static", num_threads=nthreads):
        dp = &dst[r, 0]
        sp = &src[r, 0]
        if m == 2:  # a constant stride: the compiler interleaves whole vectors
            for c in range(C):
                dp[2 * c] = sp[c]
                dp[2 * c + 1] = sp[c]
        else:
            for c in range(C):
                v = sp[c]
                for j in range(m):
                    dp[c * m + j] = v


# ----------------------------------------------------------------------------- probes
def stream_copy(const unsigned char[::1] src, unsigned char[::1] dst, int nthreads):
    """dst[:] = src (bytes) as nthreads contiguous runs, one memcpy per thread: the
    memory-bandwidth probe of ``python -m cconv bench --roofline``."""
    cdef Py_ssize_t n = src.shape[0], t, lo, hi
    if dst.shape[0] != n:
        raise ValueError(f"stream_copy: src has {n} bytes, dst {dst.shape[0]}")
    if n == 0:
        return
    cdef int nt = nthreads if nthreads > 1 else 1
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        lo = n * t // nt // 64 * 64
        hi = n if t == nt - 1 else n * (t + 1) // nt // 64 * 64
        memcpy(&dst[lo], &src[lo], hi - lo)
