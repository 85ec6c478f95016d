"""Direct convolution: a loop nest over output and taps, vectorised along W (NCHW)
or along output channels (NHWC). Written once over the fused floating type; 1-D and
2-D problems arrive as 3-D problems with size-1 leading dims.

Every output element is summed over (c, kd, kh, kw) in a fixed order (NCHW) or over
(kd, kh, kw, c) (NHWC), whatever the thread count: results are bitwise reproducible.
"""
cimport cython
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset
from libc.stdint cimport int64_t


include "_tap_range.pxi"
include "_gemm_core.pxi"

import numpy as np


cdef void _plane_nchw(const floating *x, const floating *w, floating *o,
                      Py_ssize_t Cg, Py_ssize_t D, Py_ssize_t H, Py_ssize_t W,
                      Py_ssize_t KD, Py_ssize_t KH, Py_ssize_t KW,
                      Py_ssize_t OD, Py_ssize_t OH, Py_ssize_t OW,
                      Py_ssize_t sd, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t dd, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t pd, Py_ssize_t ph, Py_ssize_t pw) noexcept nogil:
    """o[OD, OH, OW] = sum over c, taps of w[c, kd, kh, kw] * x[c, ...] (zero padded)."""
    cdef Py_ssize_t c, kd, kh, kw, od, oh, ow, idd, ih, lo, hi, woff
    cdef floating wv
    cdef const floating *xrow
    cdef floating *orow
    memset(o, 0, OD * OH * OW * sizeof(floating))
    for c in range(Cg):
        for kd in range(KD):
            for kh in range(KH):
                for kw in range(KW):
                    wv = w[((c * KD + kd) * KH + kh) * KW + kw]
                    woff = kw * dw - pw
                    lo = _lo(woff, sw)
                    hi = _hi(woff, sw, W, OW)
                    if lo >= hi:
                        continue
                    for od in range(OD):
                        idd = od * sd + kd * dd - pd
                        if idd < 0 or idd >= D:
                            continue
                        for oh in range(OH):
                            ih = oh * sh + kh * dh - ph
                            if ih < 0 or ih >= H:
                                continue
                            orow = o + (od * OH + oh) * OW
                            xrow = x + ((c * D + idd) * H + ih) * W + woff
                            if sw == 1:
                                for ow in range(lo, hi):
                                    orow[ow] = orow[ow] + wv * xrow[ow]
                            else:
                                for ow in range(lo, hi):
                                    orow[ow] = orow[ow] + wv * xrow[ow * sw]


cdef void _pixel_nhwc(const floating *x, const floating *w, floating *o,
                      Py_ssize_t C, Py_ssize_t O, Py_ssize_t G,
                      Py_ssize_t D, Py_ssize_t H, Py_ssize_t W,
                      Py_ssize_t KD, Py_ssize_t KH, Py_ssize_t KW,
                      Py_ssize_t od, Py_ssize_t oh, Py_ssize_t ow,
                      Py_ssize_t sd, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t dd, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t pd, Py_ssize_t ph, Py_ssize_t pw) noexcept nogil:
    """o[O] = sum over taps, c of x[pixel, c] * w[tap, c, o] (one output pixel)."""
    cdef Py_ssize_t Cg = C // G, Og = O // G
    cdef Py_ssize_t kd, kh, kw, idd, ih, iw, g, c, m
    cdef const floating *xp
    cdef const floating *wp
    cdef floating xv
    memset(o, 0, O * sizeof(floating))
    for kd in range(KD):
        idd = od * sd + kd * dd - pd
        if idd < 0 or idd >= D:
            continue
        for kh in range(KH):
            ih = oh * sh + kh * dh - ph
            if ih < 0 or ih >= H:
                continue
            for kw in range(KW):
                iw = ow * sw + kw * dw - pw
                if iw < 0 or iw >= W:
                    continue
                xp = x + ((idd * H + ih) * W + iw) * C
                wp = w + ((kd * KH + kh) * KW + kw) * Cg * O
                if Cg == 1 and Og == 1:  # depthwise: vectorise across channels
                    for c in range(C):
                        o[c] = o[c] + xp[c] * wp[c]
                    continue
                for g in range(G):
                    for c in range(Cg):
                        xv = xp[g * Cg + c]
                        for m in range(Og):
                            o[g * Og + m] = o[g * Og + m] + xv * wp[c * O + g * Og + m]


@cython.boundscheck(False)
def _forward_nchw(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
                  floating[:, :, :, :, ::1] out, object bias, tuple stride, tuple pad,
                  tuple dil, Py_ssize_t G, int nthreads):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef Py_ssize_t O = w.shape[0], Cg = w.shape[1], KD = w.shape[2], KH = w.shape[3], KW = w.shape[4]
    cdef Py_ssize_t OD = out.shape[2], OH = out.shape[3], OW = out.shape[4]
    cdef Py_ssize_t sd = stride[0], sh = stride[1], sw = stride[2]
    cdef Py_ssize_t dd = dil[0], dh = dil[1], dw = dil[2]
    cdef Py_ssize_t pd = pad[0], ph = pad[1], pw = pad[2]
    cdef Py_ssize_t Og = O // G, OSP = OD * OH * OW, idx, n, o, g, i
    cdef const floating[::1] b
    cdef bint has_bias = bias is not None
    if has_bias:
        b = bias
    for idx in prange(N * O, nogil=True, schedule="static", num_threads=nthreads):
        n = idx // O
        o = idx % O
        g = o // Og
        _plane_nchw(&x[n, g * Cg, 0, 0, 0], &w[o, 0, 0, 0, 0], &out[n, o, 0, 0, 0],
                    Cg, D, H, W, KD, KH, KW, OD, OH, OW, sd, sh, sw, dd, dh, dw, pd, ph, pw)
        if has_bias:
            for i in range(OSP):
                (&out[n, o, 0, 0, 0])[i] = (&out[n, o, 0, 0, 0])[i] + b[o]


@cython.boundscheck(False)
def _forward_nhwc(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
                  floating[:, :, :, :, ::1] out, object bias, tuple stride, tuple pad,
                  tuple dil, Py_ssize_t G, int nthreads):
    cdef Py_ssize_t N = x.shape[0], D = x.shape[1], H = x.shape[2], W = x.shape[3], C = x.shape[4]
    cdef Py_ssize_t KD = w.shape[0], KH = w.shape[1], KW = w.shape[2], O = w.shape[4]
    cdef Py_ssize_t OD = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t sd = stride[0], sh = stride[1], sw = stride[2]
    cdef Py_ssize_t dd = dil[0], dh = dil[1], dw = dil[2]
    cdef Py_ssize_t pd = pad[0], ph = pad[1], pw = pad[2]
    cdef Py_ssize_t idx, n, od, oh, ow, i
    cdef floating *op
    cdef const floating[::1] b
    cdef bint has_bias = bias is not None
    if has_bias:
        b = bias
    for idx in prange(N * OD * OH, nogil=True, schedule="static", num_threads=nthreads):
        n = idx // (OD * OH)
        od = (idx // OH) % OD
        oh = idx % OH
        for ow in range(OW):
            op = &out[n, od, oh, ow, 0]
            _pixel_nhwc(&x[n, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], op, C, O, G, D, H, W,
                        KD, KH, KW, od, oh, ow, sd, sh, sw, dd, dh, dw, pd, ph, pw)
            if has_bias:
                for i in range(O):
                    op[i] = op[i] + b[i]


# --------------------------------------------------------------------- few channels

cdef extern from "direct_fewc.h" nogil:
    int cconv_fewc_lanes_f32()
    int cconv_fewc_lanes_f64()
    void cconv_fewc_row_f32(const float *xr, const cc_idx *toff, cc_idx K, cc_idx xcs,
                            const float *w, cc_idx OP, const float *bias, float *out,
                            cc_idx O, cc_idx OW)
    void cconv_fewc_row_f64(const double *xr, const cc_idx *toff, cc_idx K, cc_idx xcs,
                            const double *w, cc_idx OP, const double *bias, double *out,
                            cc_idx O, cc_idx OW)

# channels-last problems with at most this many input channels (and groups == 1) run
# the few-channel kernel (direct_fewc.h): RGB stems, where im2col rows are 3-wide
FEWC_MAX_CHANNELS = 4


def fewc_lanes(dtype):
    """SIMD lanes of the few-channel kernel on the active ISA path (1: portable C)."""
    return cconv_fewc_lanes_f32() if np.dtype(dtype) == np.float32 else cconv_fewc_lanes_f64()


# ... and, with fewer than 16 (the indirect kernel's A rows would be row blocks) and at
# most one vector of output channels, large kernels: im2col builds a row block of
# Cg * taps columns per pixel there. Measured 2 threads, float32, 7 interleaved rounds,
# few-channel kernel / im2col: 3-D 8 -> 8 7x7x7 d2 at 12^3 batch 8 0.23 (25.5 -> 6.0 ms;
# torch 2.7), 2-D 8 -> 8 7x7 d2 0.84; but 3x3x3 12 -> 16 1.06 and Og = 32 (two
# vectors) 1.36.
FEWC_WIDE_MAX_CHANNELS = 15
FEWC_WIDE_MIN_TAPS = 49


def fewc_eligible(channels_last, Cg, groups, Og=0, taps=1, dtype=np.float32):
    """Whether a forward problem runs the few-channel kernel (Og output channels per
    group, a kernel of `taps` taps; see FEWC_MAX_CHANNELS, FEWC_WIDE_*)."""
    if not channels_last or groups != 1:
        return False
    return Cg <= FEWC_MAX_CHANNELS or (Cg <= FEWC_WIDE_MAX_CHANNELS
                                       and taps >= FEWC_WIDE_MIN_TAPS
                                       and 0 < Og <= fewc_lanes(dtype))


@cython.boundscheck(False)
@cython.wraparound(False)
def _forward_nhwc_fewc(const floating[:, :, :, :, ::1] xp, const floating[::1] wp,
                       Py_ssize_t OP, const floating[::1] bp, const cc_idx[::1] toff,
                       floating[:, :, :, :, ::1] out, tuple stride, int nthreads):
    cdef Py_ssize_t N = out.shape[0], OD = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t O = out.shape[4], Dp = xp.shape[1], Hp = xp.shape[2], Wp = xp.shape[3]
    cdef Py_ssize_t C = xp.shape[4], K = toff.shape[0]
    cdef Py_ssize_t sd = stride[0], sh = stride[1], sw = stride[2], idx, n, od, oh
    cdef const floating *xr
    for idx in prange(N * OD * OH, nogil=True, schedule="static", num_threads=nthreads):
        n = idx // (OD * OH)
        od = (idx // OH) % OD
        oh = idx % OH
        xr = &xp[0, 0, 0, 0, 0] + (((n * Dp + od * sd) * Hp + oh * sh) * Wp) * C
        if floating is float:
            cconv_fewc_row_f32(xr, &toff[0], K, sw * C, &wp[0], OP, &bp[0],
                               &out[n, od, oh, 0, 0], O, OW)
        else:
            cconv_fewc_row_f64(xr, &toff[0], K, sw * C, &wp[0], OP, &bp[0],
                               &out[n, od, oh, 0, 0], O, OW)


def _tap_offsets(Py_ssize_t KD, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t C, Py_ssize_t dd,
                 Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t Hp, Py_ssize_t Wp):
    """Offsets of the taps (kd, kh, kw, c), in that order, in a padded (Hp, Wp, C) grid."""
    toff = np.empty(KD * KH * KW * C, np.int64)
    cdef int64_t[::1] t = toff
    cdef Py_ssize_t kd, kh, kw, c, i = 0
    for kd in range(KD):
        for kh in range(KH):
            for kw in range(KW):
                for c in range(C):
                    t[i] = ((kd * dd * Hp + kh * dh) * Wp + kw * dw) * C + c
                    i += 1
    return toff


def conv_forward_fewc(x5, w5, bias, out5, stride, pad, dil, nthreads):
    """Channels-last, groups == 1: x5 (N, D, H, W, C), w5 (KD, KH, KW, C, O). The input
    is copied into a zero-padded array covering every tap (few channels: small), the
    weights are used in place when O is a multiple of the SIMD lanes, else padded."""
    N, D, H, W, C = x5.shape
    KD, KH, KW, _, O = w5.shape
    _, OD, OH, OW, _ = out5.shape
    dt = x5.dtype
    ext = [(o - 1) * s + (k - 1) * d + 1 for o, s, k, d in
           zip((OD, OH, OW), stride, (KD, KH, KW), dil)]
    xp = np.zeros((N, ext[0], ext[1], ext[2], C), dt)
    src, dst = [slice(None)], [slice(None)]
    for size, p, e in zip((D, H, W), pad, ext):
        cnt = max(0, min(size, e - p))
        src.append(slice(0, cnt))
        dst.append(slice(p, p + cnt))
    xp[tuple(dst)] = x5[tuple(src)]
    L = fewc_lanes(dt)
    OP = -(-O // L) * L
    K = KD * KH * KW * C
    wp = w5.reshape(K, O)
    bp = np.zeros(OP, dt)
    if bias is not None:
        bp[:O] = bias
    if OP != O:
        wq = np.zeros((K, OP), dt)
        wq[:, :O] = wp
        wp = wq
    toff = _tap_offsets(KD, KH, KW, C, dil[0], dil[1], dil[2], ext[1], ext[2])
    _forward_nhwc_fewc(xp, np.ascontiguousarray(wp).reshape(-1), OP, bp, toff, out5,
                       tuple(stride), nthreads)


def conv_forward(x5, w5, bias, out5, stride, pad, dil, groups, channels_last, nthreads):
    """Direct forward convolution into out5 (see functional._forward for the layouts)."""
    if channels_last and fewc_eligible(True, x5.shape[4], groups, w5.shape[4] // groups,
                                       w5.shape[0] * w5.shape[1] * w5.shape[2], x5.dtype):
        conv_forward_fewc(x5, w5, bias, out5, stride, pad, dil, nthreads)
    elif channels_last:
        _forward_nhwc(x5, w5, out5, bias, stride, pad, dil, groups, nthreads)
    else:
        _forward_nchw(x5, w5, out5, bias, stride, pad, dil, groups, nthreads)
