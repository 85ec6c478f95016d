# Batched channels-first <-> channels-last transpose (transpose.h), shared by the modules
# that run one layout through the other. Include after `from cython cimport floating`.
from cython.parallel cimport prange
from libc.stdint cimport int64_t

cdef extern from "transpose.h" nogil:
    void cconv_transpose_auto_f32(const float *src, int64_t lds, int64_t rows,
                                  int64_t cols, float *dst, int64_t ldd)
    void cconv_transpose_auto_f64(const double *src, int64_t lds, int64_t rows,
                                  int64_t cols, double *dst, int64_t ldd)
    int cconv_transpose_select(int simd)
    int cconv_transpose_simd_active()

ctypedef void (*transpose_f32_fn)(const float *, int64_t, int64_t, int64_t, float *,
                                  int64_t) noexcept nogil
ctypedef void (*transpose_f64_fn)(const double *, int64_t, int64_t, int64_t, double *,
                                  int64_t) noexcept nogil
# The per-image transpose: transpose.h's (AVX-512 register blocks where the CPU has them,
# else the portable blocked loop), unless the module embeds the GEMM kernels and points
# these at its ISA-dispatched in-register copy.
cconv_transpose_select(1)
cdef transpose_f32_fn layout_transpose_f32 = cconv_transpose_auto_f32
cdef transpose_f64_fn layout_transpose_f64 = cconv_transpose_auto_f64


cdef void transpose_batched(const floating *src, floating *dst, Py_ssize_t N, Py_ssize_t R,
                            Py_ssize_t Cn, int nthreads) noexcept nogil:
    """dst[n] (Cn x R) = src[n] (R x Cn) transposed, for n < N: the images are split over
    the threads, or the column blocks of one image when the batch is smaller."""
    cdef Py_ssize_t nb = 1, item, n, b, c0, c1
    if N < nthreads and Cn >= 64:
        nb = min(nthreads, Cn // 32)
    for item in prange(N * nb, schedule="static", num_threads=nthreads):
        n = item // nb
        b = item % nb
        c0 = Cn * b // nb // 16 * 16
        c1 = Cn if b == nb - 1 else Cn * (b + 1) // nb // 16 * 16
        if floating is float:
            layout_transpose_f32(src + n * R * Cn + c0, Cn, R, c1 - c0, dst + n * R * Cn + c0 * R,
                                 R)
        else:
            layout_transpose_f64(src + n * R * Cn + c0, Cn, R, c1 - c0, dst + n * R * Cn + c0 * R,
                                 R)
