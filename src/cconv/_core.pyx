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
from libc.stdint cimport int64_t

cdef extern from "transpose.h" nogil:
    void cconv_transpose_f32(const float *src, int64_t lds, int64_t rows, int64_t cols,
                             float *dst, int64_t ldd)
    void cconv_transpose_f64(const double *src, int64_t lds, int64_t rows, int64_t cols,
                             double *dst, int64_t ldd)


import numpy as np


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


@cython.boundscheck(False)
@cython.wraparound(False)
def transpose_last2(const floating[:, :, ::1] src, floating[:, :, ::1] dst, int nthreads):
    """dst[n] = src[n].T for every n (channels-first <-> channels-last of one batch):
    the images are split over the threads, or the column blocks of one image when the
    batch is smaller than the thread count."""
    cdef Py_ssize_t N = src.shape[0], R = src.shape[1], Cn = src.shape[2]
    cdef Py_ssize_t nb = 1, item, n, b, c0, c1
    if N < nthreads and Cn >= 64:
        nb = min(nthreads, Cn // 32)
    for item in prange(N * nb, nogil=True, schedule="static", num_threads=nthreads):
        n = item // nb
        b = item % nb
        c0 = Cn * b // nb // 16 * 16
        c1 = Cn if b == nb - 1 else Cn * (b + 1) // nb // 16 * 16
        if floating is float:
            cconv_transpose_f32(&src[n, 0, c0], Cn, R, c1 - c0, &dst[n, c0, 0], R)
        else:
            cconv_transpose_f64(&src[n, 0, c0], Cn, R, c1 - c0, &dst[n, c0, 0], R)
