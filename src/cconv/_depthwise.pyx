"""Depthwise convolution (groups == C, channel multiplier M = O / C >= 1): a thin nogil
driver over the direct kernels in ``_kernels/depthwise.c`` (AVX-512 / AVX2 / portable C,
chosen at run time like the GEMM kernels).

NCHW: work items are (image, input channel, output depth, output row block); each item
copies the input rows it needs into a per-thread zero-padded, stride-phase-split
scratch and computes all M output channels of that input channel, vectorised along W.
NHWC: work items are (image, output depth, output row, channel block), vectorised
along C; 2-D problems with square 3/5/7 kernels (dw = 1, stride 1, or 2 for 5x5) take
packed rows instead (_forward_nhwc_packed: items are (image, row run, channel group),
each thread copies the input rows it needs into its cached ring of zero-padded,
64-byte-aligned rows; depthwise_impl.h says why and when); for M > 1 the input channels are first repeated M times (channel c*M + m
reads input channel c), which turns the problem into M == 1.

Every output element is one running FMA sum over the taps in (kd, kh, kw) order,
started from the bias (or +0), on every ISA path and for every thread count: results
are bitwise reproducible.

Grouped problems (1 < groups < C) have their drivers here too: forward_grouped (both
layouts, _kernels/gconv_impl.h) and forward_grouped_nchw (channels-first groups of
fewer than 8 output channels); each output sums (c, kd, kh, kw) from +0, then + bias.
"""
cimport cython
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t

import numpy as np

from . import _core

include "_gemm_core.pxi"

cdef extern from "scratch.h" nogil:
    void *cc_scratch_acquire(int slot, size_t nbytes)
    void cc_scratch_release(int slot, void *p)

cdef extern from "depthwise.h" nogil:
    ctypedef struct cc_dw_geom:
        cc_idx C, M, D, H, W, OD, OH, OW, KD, KH, KW
        cc_idx sd, sh, sw, dd, dh, dw, pd, ph, pw
    cc_idx cconv_dw_nchw_scratch(const cc_dw_geom *g, cc_idx rows)
    void cconv_dw_nchw_f32(const cc_dw_geom *g, const float *x, const float *w,
                           const float *bias, float *out, cc_idx od, cc_idx oh0, cc_idx oh1,
                           float *scratch)
    void cconv_dw_nchw_f64(const cc_dw_geom *g, const double *x, const double *w,
                           const double *bias, double *out, cc_idx od, cc_idx oh0,
                           cc_idx oh1, double *scratch)
    void cconv_gconv_nchw_f32(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, const float *x,
                              const float *w, const float *bias, float *out, cc_idx od,
                              cc_idx oh0, cc_idx oh1, float *scratch)
    void cconv_gconv_nchw_f64(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, const double *x,
                              const double *w, const double *bias, double *out, cc_idx od,
                              cc_idx oh0, cc_idx oh1, double *scratch)
    cc_idx cconv_gconv_scratch(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx ngroups,
                               cc_idx rows, int cf)
    void cconv_gconv_f32(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx g0, cc_idx g1,
                         const float *x, const float *w, const float *bias, float *out,
                         cc_idx od, cc_idx oh0, cc_idx oh1, float *scratch, int cf)
    void cconv_gconv_f64(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx g0, cc_idx g1,
                         const double *x, const double *w, const double *bias, double *out,
                         cc_idx od, cc_idx oh0, cc_idx oh1, double *scratch, int cf)
    void cconv_dw_nhwc_f32(const cc_dw_geom *g, const float *x, const float *w,
                           const float *bias, float *out, cc_idx od, cc_idx oh, cc_idx c0,
                           cc_idx c1, int prefetch)
    void cconv_dw_nhwc_f64(const cc_dw_geom *g, const double *x, const double *w,
                           const double *bias, double *out, cc_idx od, cc_idx oh, cc_idx c0,
                           cc_idx c1, int prefetch)
    enum:
        DW_PREFETCH
        DW_STREAM
    cc_idx cconv_dw_nhwc_packed_scratch_f32(const cc_dw_geom *g, cc_idx nc)
    cc_idx cconv_dw_nhwc_packed_scratch_f64(const cc_dw_geom *g, cc_idx nc)
    cc_idx cconv_dw_nhwc_packed_block_f32()
    cc_idx cconv_dw_nhwc_packed_block_f64()
    void cconv_dw_nhwc_packed_f32(const cc_dw_geom *g, const float *x, const float *w,
                                  const float *bias, float *out, cc_idx c0, cc_idx c1,
                                  cc_idx oh0, cc_idx oh1, float *scratch, int prefetch)
    void cconv_dw_nhwc_packed_f64(const cc_dw_geom *g, const double *x, const double *w,
                                  const double *bias, double *out, cc_idx c0, cc_idx c1,
                                  cc_idx oh0, cc_idx oh1, double *scratch, int prefetch)


# The channels-last kernels (packed rows, strided tiles, and in _backward the weight
# gradient's prefetches and the gather's streaming stores) prefetch ahead when input +
# output reach this many bytes (a module variable, read per call, so that the tests can
# run those paths on small arrays). On a 32 MB
# L3 (2 threads), 3x3 144 channels at 56x56, batch 8 (29 MB): 0.58x the time [0.45,
# 0.87]; 5x5 240 at 28x28, batch 32: 0.70x; batch 2 (7 MB, cached): 1.5x, hence the bar.
prefetch_min_bytes = 16 * 1024 * 1024
# Those problems write their output with streaming stores (no read for ownership of each
# line, no prefetch of the output) when the kernel has at most this many taps per plane.
# In-process A/B, 5 rounds, streaming / fetching the output: 3x3 144 @ 56² batch 8 0.78,
# 96 @ 112² 0.77, stride 2 0.96; 5x5 240 @ 28² batch 32 1.02; 7x7 96 @ 56² batch 8 and
# 16 1.13-1.18 (more arithmetic per output; why streaming costs more there I did not
# measure).
stream_max_taps = 9


cdef int _prefetch_flags(cc_idx nbytes, cc_idx taps) except -1:
    """depthwise.h's prefetch argument for arrays of nbytes (input + output)."""
    if nbytes < prefetch_min_bytes:
        return 0
    return DW_PREFETCH | DW_STREAM if taps <= stream_max_taps else DW_PREFETCH


cdef enum:
    # Per-thread NCHW scratch is kept well inside L2 (rows of a row block, padded).
    _SCRATCH_BYTES = 256 * 1024
    # NHWC channel block of one work item.
    _NHWC_CBLOCK = 256
    # Per-thread NHWC packed-row scratch (the rings of an item's channel blocks).
    _PACKED_BYTES = 1024 * 1024


cdef inline void _nchw_item(const cc_dw_geom *g, const floating *x, const floating *w,
                            const floating *bias, floating *out, cc_idx od, cc_idx oh0,
                            cc_idx oh1, floating *scratch) noexcept nogil:
    if floating is float:
        cconv_dw_nchw_f32(g, x, w, bias, out, od, oh0, oh1, scratch)
    else:
        cconv_dw_nchw_f64(g, x, w, bias, out, od, oh0, oh1, scratch)


cdef inline void _gnchw_item(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, const floating *x,
                             const floating *w, const floating *bias, floating *out,
                             cc_idx od, cc_idx oh0, cc_idx oh1, floating *scratch) noexcept nogil:
    if floating is float:
        cconv_gconv_nchw_f32(g, Cg, Og, x, w, bias, out, od, oh0, oh1, scratch)
    else:
        cconv_gconv_nchw_f64(g, Cg, Og, x, w, bias, out, od, oh0, oh1, scratch)


cdef inline void _gconv_item(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx g0, cc_idx g1,
                             const floating *x, const floating *w, const floating *bias,
                             floating *out, cc_idx od, cc_idx oh0, cc_idx oh1,
                             floating *scratch, int cf) noexcept nogil:
    if floating is float:
        cconv_gconv_f32(g, Cg, Og, g0, g1, x, w, bias, out, od, oh0, oh1, scratch, cf)
    else:
        cconv_gconv_f64(g, Cg, Og, g0, g1, x, w, bias, out, od, oh0, oh1, scratch, cf)


cdef inline void _nhwc_item(const cc_dw_geom *g, const floating *x, const floating *w,
                            const floating *bias, floating *out, cc_idx od, cc_idx oh,
                            cc_idx c0, cc_idx c1, int prefetch) noexcept nogil:
    if floating is float:
        cconv_dw_nhwc_f32(g, x, w, bias, out, od, oh, c0, c1, prefetch)
    else:
        cconv_dw_nhwc_f64(g, x, w, bias, out, od, oh, c0, c1, prefetch)


cdef void _geom(cc_dw_geom *g, tuple xsp, tuple osp, tuple ksz, tuple stride, tuple pad,
                tuple dil, cc_idx C, cc_idx M):
    g.C = C
    g.M = M
    g.D, g.H, g.W = xsp
    g.OD, g.OH, g.OW = osp
    g.KD, g.KH, g.KW = ksz
    g.sd, g.sh, g.sw = stride
    g.dd, g.dh, g.dw = dil
    g.pd, g.ph, g.pw = pad


cdef cc_idx _row_block(const cc_dw_geom *g, cc_idx slabs, cc_idx planes, int nthreads,
                       cc_idx esize):
    """Output rows per NCHW work item: small enough for the scratch (`slabs` input
    channels of rows) to stay in L2 and for enough items to keep every thread busy; the
    blocking never changes any output's arithmetic."""
    cdef cc_idx rb = g.OH
    while rb > 1 and slabs * cconv_dw_nchw_scratch(g, rb) * esize > _SCRATCH_BYTES:
        rb = (rb + 1) // 2
    while rb > 4 and planes * ((g.OH + rb - 1) // rb) < 4 * nthreads:
        rb = (rb + 1) // 2
    return rb


@cython.boundscheck(False)
def _forward_nchw(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
                  floating[:, :, :, :, ::1] out, object bias, tuple stride, tuple pad,
                  tuple dil, int nthreads):
    cdef cc_idx N = x.shape[0], C = x.shape[1], O = w.shape[0]
    cdef cc_idx M = O // C
    cdef cc_dw_geom g
    _geom(&g, (x.shape[2], x.shape[3], x.shape[4]), (out.shape[2], out.shape[3], out.shape[4]),
          (w.shape[2], w.shape[3], w.shape[4]), stride, pad, dil, C, M)
    cdef cc_idx OD = g.OD, OH = g.OH
    cdef cc_idx xvol = g.D * g.H * g.W, ovol = OD * OH * g.OW, KT = g.KD * g.KH * g.KW
    cdef cc_idx planes = N * C * OD
    cdef cc_idx esize = sizeof(floating)
    cdef cc_idx rb = _row_block(&g, 1, planes, nthreads, esize)
    cdef cc_idx nrb = (OH + rb - 1) // rb
    cdef cc_idx sc = (cconv_dw_nchw_scratch(&g, rb) + 15) // 16 * 16
    cdef cc_idx nitems = planes * nrb
    cdef int nt = nthreads if nthreads > 1 else 1
    cdef floating *scratch = <floating *> malloc(nt * sc * esize + 64)
    if scratch == NULL:
        raise MemoryError("depthwise: could not allocate the per-thread scratch")
    cdef floating *sbase = <floating *> ((<size_t> scratch + 63) & ~(<size_t> 63))
    cdef const floating *bp = NULL
    cdef const floating[::1] b
    if bias is not None:
        b = bias
        bp = &b[0]
    cdef const floating *xp = &x[0, 0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0, 0]
    cdef floating *op = &out[0, 0, 0, 0, 0]
    cdef cc_idx it, n, c, od, blk, oh0, oh1, rest
    cdef int tid
    try:
        for it in prange(nitems, nogil=True, schedule="static", num_threads=nthreads):
            tid = threadid()
            blk = it % nrb
            rest = it // nrb
            od = rest % OD
            rest = rest // OD
            c = rest % C
            n = rest // C
            oh0 = blk * rb
            oh1 = oh0 + rb
            if oh1 > OH:
                oh1 = OH
            _nchw_item(&g, xp + (n * C + c) * xvol, wp + c * M * KT,
                       (bp + c * M) if bp != NULL else NULL,
                       op + (n * C * M + c * M) * ovol, od, oh0, oh1, sbase + tid * sc)
    finally:
        free(scratch)


@cython.boundscheck(False)
def forward_grouped_nchw(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
                         floating[:, :, :, :, ::1] out, object bias, tuple stride, tuple pad,
                         tuple dil, cc_idx groups, int nthreads):
    """Grouped NCHW (x (N, C, D, H, W), w (O, C/groups, KD, KH, KW)) with the direct
    grouped kernel: items are (image, group, output depth, row block)."""
    cdef cc_idx N = x.shape[0], C = x.shape[1], O = w.shape[0]
    cdef cc_idx Cg = C // groups, Og = O // groups, G = groups
    cdef cc_dw_geom g
    _geom(&g, (x.shape[2], x.shape[3], x.shape[4]), (out.shape[2], out.shape[3], out.shape[4]),
          (w.shape[2], w.shape[3], w.shape[4]), stride, pad, dil, C, 1)
    cdef cc_idx OD = g.OD, OH = g.OH
    cdef cc_idx xvol = g.D * g.H * g.W, ovol = OD * OH * g.OW, KT = g.KD * g.KH * g.KW
    cdef cc_idx planes = N * G * OD
    cdef cc_idx esize = sizeof(floating)
    cdef cc_idx rb = _row_block(&g, Cg, planes, nthreads, esize)
    cdef cc_idx nrb = (OH + rb - 1) // rb
    cdef cc_idx sc = (Cg * cconv_dw_nchw_scratch(&g, rb) + 15) // 16 * 16
    cdef cc_idx nitems = planes * nrb
    cdef int nt = nthreads if nthreads > 1 else 1
    cdef floating *scratch = <floating *> malloc(nt * sc * esize + 64)
    if scratch == NULL:
        raise MemoryError("grouped direct conv: could not allocate the per-thread scratch")
    cdef floating *sbase = <floating *> ((<size_t> scratch + 63) & ~(<size_t> 63))
    cdef const floating *bp = NULL
    cdef const floating[::1] b
    if bias is not None:
        b = bias
        bp = &b[0]
    cdef const floating *xp = &x[0, 0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0, 0]
    cdef floating *op = &out[0, 0, 0, 0, 0]
    cdef cc_idx it, n, gi, od, blk, oh0, oh1, rest
    cdef int tid
    try:
        for it in prange(nitems, nogil=True, schedule="static", num_threads=nthreads):
            tid = threadid()
            blk = it % nrb
            rest = it // nrb
            od = rest % OD
            rest = rest // OD
            gi = rest % G
            n = rest // G
            oh0 = blk * rb
            oh1 = oh0 + rb
            if oh1 > OH:
                oh1 = OH
            _gnchw_item(&g, Cg, Og, xp + (n * C + gi * Cg) * xvol, wp + gi * Og * Cg * KT,
                        (bp + gi * Og) if bp != NULL else NULL,
                        op + (n * O + gi * Og) * ovol, od, oh0, oh1, sbase + tid * sc)
    finally:
        free(scratch)


@cython.boundscheck(False)
def forward_grouped(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
                    floating[:, :, :, :, ::1] out, object bias, tuple stride, tuple pad,
                    tuple dil, cc_idx groups, bint channels_last, int nthreads):
    """Grouped convolution with the direct grouped kernel (gconv_impl.h), either layout:
    channels-last x (N, D, H, W, C), w (KD, KH, KW, C/groups, O), out (N, OD, OH, OW, O);
    channels-first x (N, C, D, H, W), w (O, C/groups, KD, KH, KW), out (N, O, OD, OH, OW).
    Items are (image, output depth, row block, block of groups); the blocks only split
    work, never an output's sum."""
    cdef int cf = 0 if channels_last else 1
    cdef cc_idx N = x.shape[0]
    cdef cc_idx C = x.shape[4] if channels_last else x.shape[1]
    cdef cc_idx O = w.shape[4] if channels_last else w.shape[0]
    cdef cc_idx Cg = C // groups, Og = O // groups, G = groups
    cdef cc_dw_geom g
    if channels_last:
        _geom(&g, (x.shape[1], x.shape[2], x.shape[3]),
              (out.shape[1], out.shape[2], out.shape[3]), (w.shape[0], w.shape[1], w.shape[2]),
              stride, pad, dil, C, 1)
    else:
        _geom(&g, (x.shape[2], x.shape[3], x.shape[4]),
              (out.shape[2], out.shape[3], out.shape[4]), (w.shape[2], w.shape[3], w.shape[4]),
              stride, pad, dil, C, 1)
    cdef cc_idx OD = g.OD, OH = g.OH
    cdef cc_idx xvol = g.D * g.H * g.W * C, ovol = OD * OH * g.OW * O
    cdef cc_idx esize = sizeof(floating)
    # rows and groups per item: the item's scratch inside L2, then enough items for
    # every thread (split groups first: their scratch rows do not overlap)
    cdef cc_idx rb = OH, gb = G
    while cconv_gconv_scratch(&g, Cg, Og, gb, rb, cf) * esize > _SCRATCH_BYTES and (gb > 1 or rb > 1):
        if gb > 1:
            gb = (gb + 1) // 2
        else:
            rb = (rb + 1) // 2
    # (but rows before fewer groups than one register tile of the AVX-512 kernel takes
    # for 8 or 4 output channels per group: gconv_pair.h, 16 / Og groups per tile)
    cdef cc_idx keep = 16 // Og if Og == 8 or Og == 4 else 1
    while N * OD * ((OH + rb - 1) // rb) * ((G + gb - 1) // gb) < 4 * nthreads:
        if gb > keep:
            gb = max(keep, (gb + 1) // 2)
        elif rb > 4:
            rb = (rb + 1) // 2
        elif gb > 1:
            gb = (gb + 1) // 2
        else:
            break
    cdef cc_idx nrb = (OH + rb - 1) // rb, ngb = (G + gb - 1) // gb
    cdef cc_idx sc = (cconv_gconv_scratch(&g, Cg, Og, gb, rb, cf) + 15) // 16 * 16
    cdef cc_idx nitems = N * OD * nrb * ngb
    cdef int nt = nthreads if nthreads > 1 else 1
    cdef floating *scratch = <floating *> malloc(nt * sc * esize + 64)
    if scratch == NULL:
        raise MemoryError("grouped direct conv: could not allocate the per-thread scratch")
    cdef floating *sbase = <floating *> ((<size_t> scratch + 63) & ~(<size_t> 63))
    cdef const floating *bp = NULL
    cdef const floating[::1] b
    if bias is not None:
        b = bias
        bp = &b[0]
    cdef const floating *xp = &x[0, 0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0, 0]
    cdef floating *op = &out[0, 0, 0, 0, 0]
    cdef cc_idx it, n, gbi, od, blk, oh0, oh1, g0, g1, rest
    cdef int tid
    try:
        for it in prange(nitems, nogil=True, schedule="static", num_threads=nthreads):
            tid = threadid()
            gbi = it % ngb
            rest = it // ngb
            blk = rest % nrb
            rest = rest // nrb
            od = rest % OD
            n = rest // OD
            oh0 = blk * rb
            oh1 = oh0 + rb
            if oh1 > OH:
                oh1 = OH
            g0 = gbi * gb
            g1 = g0 + gb
            if g1 > G:
                g1 = G
            _gconv_item(&g, Cg, Og, g0, g1, xp + n * xvol, wp, bp, op + n * ovol, od,
                        oh0, oh1, sbase + tid * sc, cf)
    finally:
        free(scratch)


cdef inline void _nhwc_packed_item(const cc_dw_geom *g, const floating *x, const floating *w,
                                   const floating *bias, floating *out, cc_idx c0, cc_idx c1,
                                   cc_idx oh0, cc_idx oh1, floating *scratch,
                                   int prefetch) noexcept nogil:
    if floating is float:
        cconv_dw_nhwc_packed_f32(g, x, w, bias, out, c0, c1, oh0, oh1, scratch, prefetch)
    else:
        cconv_dw_nhwc_packed_f64(g, x, w, bias, out, c0, c1, oh0, oh1, scratch, prefetch)


cdef cc_idx _packed_scratch(const cc_dw_geom *g, cc_idx nc, cc_idx esize) noexcept nogil:
    if esize == 4:
        return cconv_dw_nhwc_packed_scratch_f32(g, nc)
    return cconv_dw_nhwc_packed_scratch_f64(g, nc)


@cython.boundscheck(False)
cdef int _forward_nhwc_packed(const floating[:, :, :, :, ::1] x,
                              const floating[:, :, :, :, ::1] w,
                              floating[:, :, :, :, ::1] out, object bias,
                              const cc_dw_geom *g, int nthreads) except -1:
    """The packed-row path (2-D, square 3/5/7 kernels, see depthwise_impl.h); returns 0
    when the problem or the ISA path does not take it. Items: (image, row run, channel
    group); N * runs a multiple of the thread count, so the threads get equal shares of
    rows; channel groups of whole blocks, split only to keep the scratch near 1 MB."""
    cdef cc_idx esize = sizeof(floating)
    cdef cc_idx N = x.shape[0], C = g.C, OH = g.OH
    cdef cc_idx cbw = (cconv_dw_nhwc_packed_block_f32() if floating is float
                       else cconv_dw_nhwc_packed_block_f64())
    # 2-D only: a 3-D problem with a one-plane kernel (KD == 1, D or OD > 1) would have
    # its later planes skipped (the items address one plane per image)
    if g.KD != 1 or g.D != 1 or g.OD != 1 or cbw == 0 or _packed_scratch(g, C, esize) == 0:
        return 0
    cdef cc_idx cg = C
    while cg > cbw and _packed_scratch(g, cg, esize) * esize > _PACKED_BYTES:
        cg = ((cg + 1) // 2 + cbw - 1) // cbw * cbw
    cdef cc_idx ncg = (C + cg - 1) // cg
    cdef int nt = nthreads if nthreads > 1 else 1
    cdef cc_idx a = N, b = nt, t
    while b:
        t = a % b
        a = b
        b = t
    cdef cc_idx nrun = nt // a  # N * nrun = lcm(N, nt)
    if nrun > OH:
        nrun = OH
    cdef cc_idx sc = (_packed_scratch(g, cg, esize) + 15) // 16 * 16
    cdef const floating *bp = NULL
    cdef const floating[::1] bv
    if bias is not None:
        bv = bias
        bp = &bv[0]
    cdef const floating *xp = &x[0, 0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0, 0]
    cdef floating *op = &out[0, 0, 0, 0, 0]
    cdef cc_idx xvol = g.H * g.W * C, ovol = OH * g.OW * C
    cdef cc_idx nitems = N * nrun * ncg
    # software prefetch once input and output together pass half the L3 (they then
    # come from memory, read and written strided by the channel blocks)
    cdef int prefetch = _prefetch_flags((xvol + ovol) * N * esize, g.KH * g.KW)
    cdef cc_idx it, n, run, cgi, c0, c1, oh0, oh1, rest
    cdef floating *buf = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    with nogil, parallel(num_threads=nthreads):
        # this thread's cached scratch (scratch.h slot 0), as the Winograd and im2col
        # drivers keep theirs: fresh pages per call cost a page fault each
        buf = <floating *> cc_scratch_acquire(0, sc * esize)
        if buf == NULL:
            failed_p[0] = 1
        for it in prange(nitems, schedule="static"):
            if buf == NULL:
                continue
            cgi = it % ncg
            rest = it // ncg
            run = rest % nrun
            n = rest // nrun
            c0 = cgi * cg
            c1 = c0 + cg
            if c1 > C:
                c1 = C
            oh0 = run * OH // nrun
            oh1 = (run + 1) * OH // nrun
            _nhwc_packed_item(g, xp + n * xvol, wp, bp, op + n * ovol, c0, c1, oh0, oh1, buf,
                              prefetch)
        cc_scratch_release(0, buf)
    if failed:
        raise MemoryError("depthwise: could not allocate the per-thread scratch")
    return 1


@cython.boundscheck(False)
def _forward_nhwc(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
                  floating[:, :, :, :, ::1] out, object bias, tuple stride, tuple pad,
                  tuple dil, int nthreads):
    """M == 1 (x already expanded to C*M channels)."""
    cdef cc_idx N = x.shape[0], C = x.shape[4]
    cdef cc_dw_geom g
    _geom(&g, (x.shape[1], x.shape[2], x.shape[3]), (out.shape[1], out.shape[2], out.shape[3]),
          (w.shape[0], w.shape[1], w.shape[2]), stride, pad, dil, C, 1)
    if _forward_nhwc_packed(x, w, out, bias, &g, nthreads):
        return
    cdef cc_idx OD = g.OD, OH = g.OH
    cdef cc_idx xvol = g.D * g.H * g.W * C, ovol = OD * OH * g.OW * C
    cdef cc_idx cb = C if C <= _NHWC_CBLOCK else _NHWC_CBLOCK
    cdef cc_idx rows = N * OD * OH
    while cb > 64 and rows * ((C + cb - 1) // cb) < 4 * nthreads:
        cb = (cb + 1) // 2
    cb = (cb + 15) // 16 * 16  # whole vectors of every path
    cdef cc_idx ncb = (C + cb - 1) // cb
    cdef cc_idx nitems = rows * ncb
    cdef const floating *bp = NULL
    cdef const floating[::1] b
    if bias is not None:
        b = bias
        bp = &b[0]
    cdef const floating *xp = &x[0, 0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0, 0]
    cdef floating *op = &out[0, 0, 0, 0, 0]
    cdef cc_idx it, n, od, oh, cbi, c0, c1, rest
    cdef int prefetch = _prefetch_flags((xvol + ovol) * N * sizeof(floating), g.KH * g.KW)
    for it in prange(nitems, nogil=True, schedule="static", num_threads=nthreads):
        cbi = it % ncb
        rest = it // ncb
        oh = rest % OH
        rest = rest // OH
        od = rest % OD
        n = rest // OD
        c0 = cbi * cb
        c1 = c0 + cb
        if c1 > C:
            c1 = C
        _nhwc_item(&g, xp + n * xvol, wp, bp, op + n * ovol, od, oh, c0, c1, prefetch)


def conv_forward(x5, w5, bias, out5, stride, pad, dil, groups, channels_last, nthreads):
    """Depthwise forward convolution into out5; same arguments as
    ``_direct.conv_forward`` (groups must equal the input channel count)."""
    if channels_last:
        C = x5.shape[4]
        M = w5.shape[4] // C
        if M > 1:
            # output channel c*M + m reads input channel c
            xr = np.empty(x5.shape[:4] + (C * M,), x5.dtype)
            _core.repeat_channels(np.ascontiguousarray(x5).reshape(-1, C),
                                  xr.reshape(-1, C * M), M, nthreads)
            x5 = xr
        _forward_nhwc(x5, w5, out5, bias, stride, pad, dil, nthreads)
    else:
        _forward_nchw(x5, w5, out5, bias, stride, pad, dil, nthreads)
