"""Cython kernels for the element-wise and pooling layers of cconv.nn, where NumPy's
temporaries and masks would dominate a training step. Written once over the fused
floating type; OpenMP over independent slices, so results do not depend on the
thread count (pooling backward accumulates each input plane on one thread, in output
order)."""
cimport cython
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset
from libc.stdint cimport int32_t, int64_t

import numpy as np


@cython.boundscheck(False)
def relu_forward(const floating[::1] x, floating[::1] y, int nthreads):
    """y = max(x, 0), NaN kept (as torch.relu)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v
    for i in prange(n, nogil=True, schedule="static", num_threads=nthreads):
        v = x[i]
        y[i] = 0 if v <= 0 else v  # one compare, false for NaN: branch-free select


cdef extern from "eltwise.h" nogil:
    void cconv_relu_backward_f32(const float *g, const float *y, float *dx, int64_t n)
    void cconv_relu_backward_f64(const double *g, const double *y, double *dx, int64_t n)
    void cconv_maxpool2x2_plane_f32(const float *x, int64_t W, float *y, int32_t *arg,
                                    int64_t OH, int64_t OW)
    void cconv_maxpool2x2_plane_f64(const double *x, int64_t W, double *y, int32_t *arg,
                                    int64_t OH, int64_t OW)

cdef enum:
    CHUNK = 16384  # elements per parallel step


@cython.boundscheck(False)
def relu_backward(const floating[::1] g, const floating[::1] y, floating[::1] dx, int nthreads):
    """dx = g where the forward output y > 0 (i.e. x > 0), else 0."""
    cdef Py_ssize_t c, i0, n = g.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="static",
                    num_threads=nthreads):
        i0 = c * CHUNK
        if floating is float:
            cconv_relu_backward_f32(&g[i0], &y[i0], &dx[i0], min(CHUNK, n - i0))
        else:
            cconv_relu_backward_f64(&g[i0], &y[i0], &dx[i0], min(CHUNK, n - i0))


@cython.boundscheck(False)
def maxpool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                      int32_t[:, :, :, ::1] arg, int kh, int kw, int sh, int sw, int ph,
                      int pw, int dh, int dw, bint channels_last, int nthreads):
    """Max over each window (taps outside the input skipped, as -inf padding); arg gets
    the winning input position h*W + w. NaN wins, the last NaN in tap order (PyTorch)."""
    cdef Py_ssize_t N = x.shape[0], C, H, W, OH, OW, plane, n, c, oh, ow, i, j, ih, iw
    cdef Py_ssize_t best_i
    cdef floating best, v
    if channels_last:
        H, W, C = x.shape[1], x.shape[2], x.shape[3]
        OH, OW = y.shape[1], y.shape[2]
    else:
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
        OH, OW = y.shape[2], y.shape[3]
    if (not channels_last and kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0
            and pw == 0 and dh == 1 and dw == 1 and 2 * OH <= H and 2 * OW <= W):
        # the common 2x2 / 2 window: a branch-free loop per plane (same rule)
        for plane in prange(N * C, nogil=True, schedule="static", num_threads=nthreads):
            n = plane // C
            c = plane % C
            if floating is float:
                cconv_maxpool2x2_plane_f32(&x[n, c, 0, 0], W, &y[n, c, 0, 0], &arg[n, c, 0, 0],
                                           OH, OW)
            else:
                cconv_maxpool2x2_plane_f64(&x[n, c, 0, 0], W, &y[n, c, 0, 0], &arg[n, c, 0, 0],
                                           OH, OW)
        return
    for plane in prange(N * C, nogil=True, schedule="static", num_threads=nthreads):
        n = plane // C
        c = plane % C
        for oh in range(OH):
            for ow in range(OW):
                best_i = -1
                best = 0
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= H:
                        continue
                    for j in range(kw):
                        iw = ow * sw - pw + j * dw
                        if iw < 0 or iw >= W:
                            continue
                        v = x[n, ih, iw, c] if channels_last else x[n, c, ih, iw]
                        if best_i < 0 or v > best or v != v:
                            best = v
                            best_i = ih * W + iw
                if channels_last:
                    y[n, oh, ow, c] = best
                    arg[n, oh, ow, c] = <int32_t> best_i
                else:
                    y[n, c, oh, ow] = best
                    arg[n, c, oh, ow] = <int32_t> best_i


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void _maxpool_scatter_cl(const floating[:, :, :, ::1] g,
                                     const int32_t[:, :, :, ::1] arg, floating[:, :, :, ::1] dx,
                                     Py_ssize_t n, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """dx[n, winner, c] += g[n, oh, ow, c] for channels c0 .. c1-1 of channels-last image n,
    output positions in (oh, ow) order."""
    cdef Py_ssize_t W = dx.shape[2], oh, ow, c, a
    for oh in range(g.shape[1]):
        for ow in range(g.shape[2]):
            for c in range(c0, c1):
                a = arg[n, oh, ow, c]
                if a >= 0:
                    dx[n, a // W, a % W, c] += g[n, oh, ow, c]


@cython.boundscheck(False)
def maxpool2d_backward(const floating[:, :, :, ::1] g, const int32_t[:, :, :, ::1] arg,
                       floating[:, :, :, ::1] dx, bint channels_last, int nthreads):
    """dx[window argmax] += g, each output position in (oh, ow) order. Each thread zeroes
    the part of dx it then scatters into (a channels-first plane, or a channels-last
    image; with fewer images than threads, rows zeroed in parallel first, then one
    channel per item), so the zeroing runs threaded and the adds find the lines in cache
    (one single-threaded memset of dx first was most of the call: CIFAR CNN 2x2 pool at
    32x32, batch 32, 2.0 ms)."""
    cdef Py_ssize_t N = dx.shape[0], C, H, W, OH, OW, plane, n, c, oh, ow, a
    if channels_last:
        H, W, C = dx.shape[1], dx.shape[2], dx.shape[3]
        if N >= nthreads:
            for n in prange(N, nogil=True, schedule="static", num_threads=nthreads):
                memset(&dx[n, 0, 0, 0], 0, H * W * C * sizeof(floating))
                _maxpool_scatter_cl(g, arg, dx, n, 0, C)
            return
        # fewer images than threads: rows zeroed in parallel, then one channel per item
        for plane in prange(N * H, nogil=True, schedule="static", num_threads=nthreads):
            memset(&dx[plane // H, plane % H, 0, 0], 0, W * C * sizeof(floating))
        for plane in prange(N * C, nogil=True, schedule="static", num_threads=nthreads):
            _maxpool_scatter_cl(g, arg, dx, plane // C, plane % C, plane % C + 1)
        return
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    OH, OW = g.shape[2], g.shape[3]
    for plane in prange(N * C, nogil=True, schedule="static", num_threads=nthreads):
        n = plane // C
        c = plane % C
        memset(&dx[n, c, 0, 0], 0, H * W * sizeof(floating))
        for oh in range(OH):
            for ow in range(OW):
                a = arg[n, c, oh, ow]
                if a >= 0:
                    dx[n, c, a // W, a % W] += g[n, c, oh, ow]


# ----------------------------------------------------------------------------- batch norm
# x is viewed as (A, C, B): NCHW (A=N, B=H*W) or channels-last (A=N*H*W, B=1). Per-channel
# sums are taken over fixed blocks of A (partials in float64), then added in block order:
# the result does not depend on the thread count.

cdef Py_ssize_t _bn_rows(Py_ssize_t C, Py_ssize_t B) noexcept nogil:
    cdef Py_ssize_t r = 16384 // (C * B) if C * B > 0 else 1
    return r if r > 0 else 1


cdef extern from "bn.h" nogil:
    double cconv_bn_sum_f32(const float *x, int64_t n)
    double cconv_bn_sum_f64(const double *x, int64_t n)
    double cconv_bn_sqdev_f32(const float *x, int64_t n, double m)
    double cconv_bn_sqdev_f64(const double *x, int64_t n, double m)
    void cconv_bn_dot_f32(const float *g, const float *x, int64_t n, float m, float ic,
                          double *out)
    void cconv_bn_dot_f64(const double *g, const double *x, int64_t n, double m, double ic,
                          double *out)
    void cconv_bn_norm_f32(const float *x, int64_t n, float m, float ic, float gc, float bc,
                           float *y)
    void cconv_bn_norm_f64(const double *x, int64_t n, double m, double ic, double gc,
                           double bc, double *y)
    void cconv_bn_dx_f32(const float *g, const float *x, int64_t n, float m, float ic,
                         float dg, float db, float sc, float *dx)
    void cconv_bn_dx_f64(const double *g, const double *x, int64_t n, double m, double ic,
                         double dg, double db, double sc, double *dx)
    void cconv_bn_sum_cl_f32(const float *x, int64_t rows, int64_t C, double *part)
    void cconv_bn_sum_cl_f64(const double *x, int64_t rows, int64_t C, double *part)
    void cconv_bn_sqdev_cl_f32(const float *x, int64_t rows, int64_t C, const double *m,
                               double *part)
    void cconv_bn_sqdev_cl_f64(const double *x, int64_t rows, int64_t C, const double *m,
                               double *part)
    void cconv_bn_dot_cl_f32(const float *g, const float *x, int64_t rows, int64_t C,
                             const float *m, const float *ic, double *ps, double *pp)
    void cconv_bn_dot_cl_f64(const double *g, const double *x, int64_t rows, int64_t C,
                             const double *m, const double *ic, double *ps, double *pp)
    void cconv_bn_norm_cl_f32(const float *x, int64_t rows, int64_t C, const float *m,
                              const float *ic, const float *gc, const float *bc, float *y)
    void cconv_bn_norm_cl_f64(const double *x, int64_t rows, int64_t C, const double *m,
                              const double *ic, const double *gc, const double *bc,
                              double *y)
    void cconv_bn_dx_cl_f32(const float *g, const float *x, int64_t rows, int64_t C,
                            const float *m, const float *ic, const float *dg, const float *db,
                            const float *sc, float *dx)
    void cconv_bn_dx_cl_f64(const double *g, const double *x, int64_t rows, int64_t C,
                            const double *m, const double *ic, const double *dg,
                            const double *db, const double *sc, double *dx)
    void cconv_bn_affine_f32(const float *x, int64_t n, float a, float b, float *y)
    void cconv_bn_affine_f64(const double *x, int64_t n, double a, double b, double *y)
    void cconv_bn_affine_cl_f32(const float *x, int64_t rows, int64_t C, const float *a,
                                const float *b, float *y)
    void cconv_bn_affine_cl_f64(const double *x, int64_t rows, int64_t C, const double *a,
                                const double *b, double *y)


@cython.boundscheck(False)
@cython.wraparound(False)
def bn_affine(const floating[:, :, ::1] x, const floating[::1] a, const floating[::1] b,
              floating[:, :, ::1] y, int nthreads):
    """y = x * a[c] + b[c]: batch norm with fixed statistics (eval mode), one pass."""
    cdef Py_ssize_t A = x.shape[0], C = x.shape[1], B = x.shape[2]
    cdef Py_ssize_t R = _bn_rows(C, B), nb = (A + R - 1) // R, blk, a_, c, a0, a1
    cdef bint cl = B == 1
    for blk in prange(nb, nogil=True, schedule="static", num_threads=nthreads):
        a0 = blk * R
        a1 = min(A, a0 + R)
        if cl:
            if floating is float:
                cconv_bn_affine_cl_f32(&x[a0, 0, 0], a1 - a0, C, &a[0], &b[0], &y[a0, 0, 0])
            else:
                cconv_bn_affine_cl_f64(&x[a0, 0, 0], a1 - a0, C, &a[0], &b[0], &y[a0, 0, 0])
        else:
            for a_ in range(a0, a1):
                for c in range(C):
                    if floating is float:
                        cconv_bn_affine_f32(&x[a_, c, 0], B, a[c], b[c], &y[a_, c, 0])
                    else:
                        cconv_bn_affine_f64(&x[a_, c, 0], B, a[c], b[c], &y[a_, c, 0])


@cython.boundscheck(False)
@cython.wraparound(False)
def bn_train_forward(const floating[:, :, ::1] x, const floating[::1] gamma,
                     const floating[::1] beta, double eps, floating[:, :, ::1] y,
                     floating[::1] mc, double[::1] mean, double[::1] var,
                     floating[::1] inv, int nthreads):
    """Batch statistics (mean, biased var; two passes) and y = xhat * gamma + beta with
    xhat = (x - mc) * inv in x's type; mc (the mean rounded to that type) and inv are
    what bn_train_backward needs besides x (xhat itself is not stored)."""
    cdef Py_ssize_t A = x.shape[0], C = x.shape[1], B = x.shape[2]
    cdef Py_ssize_t R = _bn_rows(C, B), nb = (A + R - 1) // R, blk, a, c, a0, a1
    cdef double[:, ::1] part = np.zeros((nb, C), np.float64)
    cdef double s, n = A * B
    cdef bint cl = B == 1
    for blk in prange(nb, nogil=True, schedule="static", num_threads=nthreads):
        a0 = blk * R
        a1 = min(A, a0 + R)
        if cl:
            if floating is float:
                cconv_bn_sum_cl_f32(&x[a0, 0, 0], a1 - a0, C, &part[blk, 0])
            else:
                cconv_bn_sum_cl_f64(&x[a0, 0, 0], a1 - a0, C, &part[blk, 0])
        else:
            for a in range(a0, a1):
                for c in range(C):
                    if floating is float:
                        part[blk, c] += cconv_bn_sum_f32(&x[a, c, 0], B)
                    else:
                        part[blk, c] += cconv_bn_sum_f64(&x[a, c, 0], B)
    for c in range(C):
        s = 0
        for blk in range(nb):
            s = s + part[blk, c]
        mean[c] = s / n
    part[:, :] = 0
    for blk in prange(nb, nogil=True, schedule="static", num_threads=nthreads):
        a0 = blk * R
        a1 = min(A, a0 + R)
        if cl:
            if floating is float:
                cconv_bn_sqdev_cl_f32(&x[a0, 0, 0], a1 - a0, C, &mean[0], &part[blk, 0])
            else:
                cconv_bn_sqdev_cl_f64(&x[a0, 0, 0], a1 - a0, C, &mean[0], &part[blk, 0])
        else:
            for a in range(a0, a1):
                for c in range(C):
                    if floating is float:
                        part[blk, c] += cconv_bn_sqdev_f32(&x[a, c, 0], B, mean[c])
                    else:
                        part[blk, c] += cconv_bn_sqdev_f64(&x[a, c, 0], B, mean[c])
    for c in range(C):
        s = 0
        for blk in range(nb):
            s = s + part[blk, c]
        var[c] = s / n
        inv[c] = <floating> (1.0 / (var[c] + eps) ** 0.5)
        mc[c] = <floating> mean[c]
    for blk in prange(nb, nogil=True, schedule="static", num_threads=nthreads):
        a0 = blk * R
        a1 = min(A, a0 + R)
        if cl:
            if floating is float:
                cconv_bn_norm_cl_f32(&x[a0, 0, 0], a1 - a0, C, &mc[0], &inv[0], &gamma[0],
                                     &beta[0], &y[a0, 0, 0])
            else:
                cconv_bn_norm_cl_f64(&x[a0, 0, 0], a1 - a0, C, &mc[0], &inv[0], &gamma[0],
                                     &beta[0], &y[a0, 0, 0])
        else:
            for a in range(a0, a1):
                for c in range(C):
                    if floating is float:
                        cconv_bn_norm_f32(&x[a, c, 0], B, mc[c], inv[c], gamma[c], beta[c],
                                          &y[a, c, 0])
                    else:
                        cconv_bn_norm_f64(&x[a, c, 0], B, mc[c], inv[c], gamma[c], beta[c],
                                          &y[a, c, 0])


@cython.boundscheck(False)
@cython.wraparound(False)
def bn_train_backward(const floating[:, :, ::1] g, const floating[:, :, ::1] x,
                      const floating[::1] mc, const floating[::1] inv,
                      const floating[::1] scale, floating[::1] dgamma, floating[::1] dbeta,
                      floating[:, :, ::1] dx, bint need_dx, int nthreads):
    """dbeta = sum g, dgamma = sum g * xhat (returned), and, with batch statistics,
    dx = (g - xhat * dgamma / n - dbeta / n) * scale   (scale = gamma / sqrt(var + eps)),
    with xhat = (x - mc) * inv recomputed as bn_train_forward rounded it."""
    cdef Py_ssize_t A = g.shape[0], C = g.shape[1], B = g.shape[2]
    cdef Py_ssize_t R = _bn_rows(C, B), nb = (A + R - 1) // R, blk, a, c, a0, a1
    cdef double[:, :, ::1] part = np.zeros((nb, 2, C), np.float64)
    cdef double[:, ::1] acc = np.zeros((nb, 2), np.float64)
    cdef double s, t, n = A * B
    cdef bint cl = B == 1
    dt = np.float32 if floating is float else np.float64
    cdef floating[::1] dg = np.empty(C, dt)
    cdef floating[::1] db = np.empty(C, dt)
    for blk in prange(nb, nogil=True, schedule="static", num_threads=nthreads):
        a0 = blk * R
        a1 = min(A, a0 + R)
        if cl:
            if floating is float:
                cconv_bn_dot_cl_f32(&g[a0, 0, 0], &x[a0, 0, 0], a1 - a0, C, &mc[0], &inv[0],
                                    &part[blk, 0, 0], &part[blk, 1, 0])
            else:
                cconv_bn_dot_cl_f64(&g[a0, 0, 0], &x[a0, 0, 0], a1 - a0, C, &mc[0], &inv[0],
                                    &part[blk, 0, 0], &part[blk, 1, 0])
        else:
            for a in range(a0, a1):
                for c in range(C):
                    acc[blk, 0] = 0
                    acc[blk, 1] = 0
                    if floating is float:
                        cconv_bn_dot_f32(&g[a, c, 0], &x[a, c, 0], B, mc[c], inv[c], &acc[blk, 0])
                    else:
                        cconv_bn_dot_f64(&g[a, c, 0], &x[a, c, 0], B, mc[c], inv[c], &acc[blk, 0])
                    part[blk, 0, c] += acc[blk, 0]
                    part[blk, 1, c] += acc[blk, 1]
    for c in range(C):
        s = 0
        t = 0
        for blk in range(nb):
            s = s + part[blk, 0, c]
            t = t + part[blk, 1, c]
        dbeta[c] = <floating> s
        dgamma[c] = <floating> t
        dg[c] = <floating> (t / n)
        db[c] = <floating> (s / n)
    if not need_dx:
        return
    for blk in prange(nb, nogil=True, schedule="static", num_threads=nthreads):
        a0 = blk * R
        a1 = min(A, a0 + R)
        if cl:
            if floating is float:
                cconv_bn_dx_cl_f32(&g[a0, 0, 0], &x[a0, 0, 0], a1 - a0, C, &mc[0], &inv[0],
                                   &dg[0], &db[0], &scale[0], &dx[a0, 0, 0])
            else:
                cconv_bn_dx_cl_f64(&g[a0, 0, 0], &x[a0, 0, 0], a1 - a0, C, &mc[0], &inv[0],
                                   &dg[0], &db[0], &scale[0], &dx[a0, 0, 0])
        else:
            for a in range(a0, a1):
                for c in range(C):
                    if floating is float:
                        cconv_bn_dx_f32(&g[a, c, 0], &x[a, c, 0], B, mc[c], inv[c], dg[c], db[c],
                                        scale[c], &dx[a, c, 0])
                    else:
                        cconv_bn_dx_f64(&g[a, c, 0], &x[a, c, 0], B, mc[c], inv[c], dg[c], db[c],
                                        scale[c], &dx[a, c, 0])
