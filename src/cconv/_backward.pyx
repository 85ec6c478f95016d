"""Backward passes on the packed GEMM core: grad_weight and grad_input (col2im).

Every problem is 3-D (1-D and 2-D arrive with size-1 leading spatial dims) and the
input geometry (D, H, W, zero padding before) is given explicitly; other padding
modes were materialised by the caller, which folds the gradient back afterwards.
The sizes of the input and of grad_out need not be related by the forward formula
(a transposed convolution with output_padding or cropping): every tap is bounds
checked against the input, exactly as the forward packers do.

grad_weight (an implicit-GEMM reduction over images and output pixels):
  channels-first  dW_g[:, k-block] (Og x kb) += dY_g[n] (Og x pc) . cols[n]^T (pc x kb)
  Work items are (group, block of K); each item owns its block of dW and runs
  n = 0..N-1 and the output pixels in equal tiles of at most PC (a function of the
  pixel count only), in order, as one running FMA sum per dW element. cols^T is
  packed straight from x into NR-column panels (packt.c).
  channels-last   dW[tap, c-block, :] (MR x O) += x[n, pixels(tap), c-block]^T . dY[n]
  with x read in place (MR channels of a pixel are contiguous; gwrows ukernels over
  the runs of in-bounds pixels of each tap) and dY's pixel tile packed once per tile
  into NR-column panels; items are (group, run of (tap, channel block) panels).
  Thread count only changes how the work is blocked, never the order of a sum:
  results are bitwise identical for every thread count.

grad_input (col2im):
  NCHW  dcols (kb x pc) = Wt_blk (kb x Og) . dY_g[n] (Og x pc)     rows k = (c, tap)
  NHWC  dcols (pc x kb) = dY_g[n] (pc x Og) . Wt_blk^T (Og x kb)   cols k = (tap, c)
  then dcols is scatter-added into dx. Work items are (image, group, block of input
  channels): an item owns every dx element of its channels, and walks the output
  pixels in equal tiles of at most PC (a function of the pixel count only) in order, so each dx element is a sum in a fixed
  order. Wt (G, nblocks, kb, Og) is the weight rearranged by the caller.

Workspace per thread: one packed weight block, one packed dY tile and one dcols/cols
tile: bounded by the block sizes, not by N*H*W.
"""
cimport cython
from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.stdint cimport int64_t

import functools

import numpy as np

from . import _core, _depthwise

include "_gemm_core.pxi"

include "_pack.pxi"

include "_tap_range.pxi"

cdef extern from "scratch.h" nogil:
    void *cc_scratch_acquire(int slot, size_t nbytes)
    void cc_scratch_release(int slot, void *p)

cdef inline cc_idx _line(cc_idx n, cc_idx esize) noexcept nogil:
    """n elements rounded up to whole 64-byte lines (sub-buffers start on a line)."""
    return (n * esize + 63) // 64 * 64 // esize

cdef extern from "packt.h" nogil:
    void cconv_pack_bt_im2col_nchw_f32(const cc_conv_geom *g, const float *x, cc_idx k0, cc_idx kc,
                                       cc_idx p0, cc_idx pc, int nr, cc_idx ps, float *bp)
    void cconv_pack_bt_im2col_nchw_f64(const cc_conv_geom *g, const double *x, cc_idx k0,
                                       cc_idx kc, cc_idx p0, cc_idx pc, int nr, cc_idx ps,
                                       double *bp)


cdef extern from "gwdot.h" nogil:
    ctypedef struct cc_gwd_rows:
        cc_idx nq
        const cc_idx *tab
        cc_idx P
    void cconv_gwd_nchw_f32(const cc_gwd_rows *r, const float *const *dys,
                            const float *const *xim, cc_idx nb, cc_idx m, const cc_idx *koff,
                            cc_idx kc, float *dw, cc_idx ldw)
    void cconv_gwd_nchw_f64(const cc_gwd_rows *r, const double *const *dys,
                            const double *const *xim, cc_idx nb, cc_idx m,
                            const cc_idx *koff, cc_idx kc, double *dw, cc_idx ldw)


cdef extern from "dwgw.h" nogil:
    ctypedef struct cc_dwgw_geom:
        cc_idx D, H, W, C, OD, OH, OW, KD, KH, KW, sd, sh, sw, dd, dh, dw, pd, ph, pw
        int prefetch
    int cconv_dwgw_nhwc_f32(const cc_dwgw_geom *g, const float *x, const float *dy,
                            cc_idx r0, cc_idx r1, float *part, double *bias)
    int cconv_dwgw_nhwc_f64(const cc_dwgw_geom *g, const double *x, const double *dy,
                            cc_idx r0, cc_idx r1, double *part, double *bias)


cdef extern from "dwgi.h" nogil:
    ctypedef struct cc_dwgi_geom:
        cc_idx D, H, W, C, OD, OH, OW, KH, KW, Td, Th, Tw
        const cc_idx *cnt_d
        const cc_idx *k_d
        const cc_idx *o_d
        const cc_idx *cnt_h
        const cc_idx *k_h
        const cc_idx *o_h
        const cc_idx *cnt_w
        const cc_idx *k_w
        const cc_idx *o_w
        int stream
    void cconv_dwgi_nhwc_row_f32(const cc_dwgi_geom *g, const float *dy, const float *w,
                                 float *dx, cc_idx n, cc_idx id, cc_idx ih, const float *zero)
    void cconv_dwgi_nhwc_row_f64(const cc_dwgi_geom *g, const double *dy, const double *w,
                                 double *dx, cc_idx n, cc_idx id, cc_idx ih,
                                 const double *zero)


cdef extern from "biasgrad.h" nogil:
    double cconv_biasgrad_rows_f32(const float *a, cc_idx nimg, cc_idx stride, cc_idx n)
    double cconv_biasgrad_rows_f64(const double *a, cc_idx nimg, cc_idx stride, cc_idx n)
    void cconv_biasgrad_cols_f32(const float *a, cc_idx nr, cc_idx c, cc_idx lda, double *acc)
    void cconv_biasgrad_cols_f64(const double *a, cc_idx nr, cc_idx c, cc_idx lda,
                                 double *acc)


cdef inline void gwd_nchw(const cc_gwd_rows *r, const floating **dys, const floating **xim,
                          cc_idx nb, cc_idx m, const cc_idx *koff, cc_idx kc, floating *dw,
                          cc_idx ldw) noexcept nogil:
    if floating is float:
        cconv_gwd_nchw_f32(r, dys, xim, nb, m, koff, kc, dw, ldw)
    else:
        cconv_gwd_nchw_f64(r, dys, xim, nb, m, koff, kc, dw, ldw)


cdef inline void pack_bt_nchw(const cc_conv_geom *g, const floating *x, cc_idx k0, cc_idx kc,
                              cc_idx p0, cc_idx pc, int nr, floating *bp) noexcept nogil:
    if floating is float:
        cconv_pack_bt_im2col_nchw_f32(g, x, k0, kc, p0, pc, nr, pc * nr, bp)
    else:
        cconv_pack_bt_im2col_nchw_f64(g, x, k0, kc, p0, pc, nr, pc * nr, bp)


cdef enum:
    # gwdot: output positions per block of images (one lane reduction per block)
    GWD_POSITIONS = 4096
    PC = 320          # most output pixels per tile (the reduction step of grad_weight)
    GWR_PC = 256      # the same for channels-last grad_weight (a 32 KB dY panel)
    KB_TARGET = 256   # K rows/columns per work item (grad_weight), rows per block (grad_input)
    # _gw_cols: tiles of 128 output pixels (wav2vec's 1 -> 512 layer 2.9 -> 1.9 ms
    # against 256, 2.0 at 64); pixel runs with a private partial dW each: at most 16, of
    # at least 512 pixels, the partials within 4 MiB
    GWC_PC = 128
    GWC_RUNS = 16
    GWC_RUN_MIN = 512
    GWC_PART_BYTES = 4 << 20
    GW_RUN_ITEMS = 8  # _gw: (group, K block, pixel run) items wanted (_gw_runs)

cdef bint GW_COLS_ON = True   # test / A-B switch for _gw_cols (channels-last, Cg < MR)
cdef bint GW_RUNS_ON = True   # test / A-B switch for _gw's pixel runs (channels-first)


def _gw_run_count(cc_idx G, cc_idx Og, cc_idx K, cc_idx NP, cc_idx itemsize):
    """The pixel runs _grad_weight gives a channels-first GEMM weight gradient (tests)."""
    return _gw_nrun(G, Og, K, NP, itemsize)


def _set_gw_runs(bint on):
    """Test / A-B switch: the channels-first GEMM grad_weight with pixel runs where its
    (group, K block) items are few (the default) or K blocks only."""
    global GW_RUNS_ON
    GW_RUNS_ON = on


def gw_cols_max_cg():
    """Channels-last grad_weight with fewer channels per group than this (the active
    path's MR, 8 on AVX-512) runs _gw_cols (im2col rows of (tap, channel) pairs)."""
    return cconv_gwrows_mr_f32()


def _set_gw_cols(bint on):
    """Test / A-B switch: channels-last grad_weight with Cg < MR through _gw_cols (the
    default) or _gw_rows."""
    global GW_COLS_ON
    GW_COLS_ON = on


cdef inline cc_idx _cdiv(cc_idx a, cc_idx b) noexcept nogil:
    return (a + b - 1) // b


cdef inline cc_idx _imax(cc_idx a, cc_idx b) noexcept nogil:
    return a if a > b else b


cdef inline cc_idx _imin(cc_idx a, cc_idx b) noexcept nogil:
    return a if a < b else b


cdef cc_conv_geom _geom(tuple xsp, tuple ksp, tuple osp, cc_idx Cg, cc_idx ctot,
                        tuple stride, tuple pad, tuple dil):
    cdef cc_conv_geom g
    g.C = Cg
    g.D, g.H, g.W = xsp
    g.KD, g.KH, g.KW = ksp
    g.OD, g.OH, g.OW = osp
    g.sd, g.sh, g.sw = stride
    g.dd, g.dh, g.dw = dil
    g.pd, g.ph, g.pw = pad
    g.ctot = ctot
    return g


# ============================================================================ grad_weight

cdef int _finish_runs(int failed, floating *part, cc_idx nrun, cc_idx G, cc_idx R, cc_idx Cn,
                      floating *dst, cc_idx ld, cc_idx goff, int nthreads) except -1 nogil:
    """After a grad_weight's items: raise if a thread had no packing buffer, else add the
    pixel runs' partials (part, NULL without runs) in run order (the order is the
    problem's, never the threads'): group gi's partial of run r is R x Cn at part +
    ((gi * nrun + r) * R) * Cn; its row i goes to dst + gi * goff + i * ld. Frees part."""
    cdef cc_idx item, gi, i, j, r
    cdef floating *acc
    cdef const floating *src
    if failed:
        free(part)
        with gil:
            raise MemoryError("conv grad_weight: cannot allocate a packing buffer")
    if part == NULL:
        return 0
    for item in prange(G * R, schedule="static", num_threads=nthreads):
        gi = item // R
        i = item % R
        acc = dst + gi * goff + i * ld
        src = part + (gi * nrun * R + i) * Cn
        for j in range(Cn):
            acc[j] = src[j]
        for r in range(1, nrun):
            src = part + ((gi * nrun + r) * R + i) * Cn
            for j in range(Cn):
                acc[j] = acc[j] + src[j]
    free(part)
    return 0


cdef int _gw(const cc_conv_geom *g, const floating *x, const floating *dy, floating *dw,
            cc_idx N, cc_idx G, cc_idx O, cc_idx kb, cc_idx PT, cc_idx nrun, int MR, int NR,
            int nthreads) except -1 nogil:
    # channels-first: dW_g[:, k-block] (Og x kc, row stride K) += dY_g[n] (Og x pc) . cols^T (pc x kc)
    # Items (group, K block, pixel run): nrun > 1 (a function of the problem only) splits
    # the batch's output pixels q = n*P + p into runs, each summed into a private
    # partial dW (tiles end at run and image ends), the partials then added in run
    # order; each dW element's sum order is fixed by the problem, never by the threads.
    cdef cc_idx Cg = g.C, Og = O // G, taps = g.KD * g.KH * g.KW, C = g.ctot
    cdef cc_idx K = Cg * taps, P = g.OD * g.OH * g.OW, DHW = g.D * g.H * g.W
    cdef cc_idx nkb = _cdiv(K, kb), item, gi, k0, kc, n, p0, pc, i, j, r
    cdef cc_idx NP = N * P, per_run = _cdiv(NP, nrun), q, q1, OK = Og * K
    cdef cc_idx mpad = _cdiv(Og, MR) * MR, kpad = _cdiv(kb, NR) * NR
    cdef floating *abuf
    cdef floating *bbuf
    cdef floating *dwg
    cdef floating *part = NULL
    cdef int first
    cdef int failed = 0
    cdef int *failed_p = &failed
    if nrun > 1:
        part = <floating *> malloc(G * nrun * OK * sizeof(floating) + 64)
        if part == NULL:
            with gil:
                raise MemoryError("conv grad_weight: cannot allocate the partial sums")
    with parallel(num_threads=nthreads):
        # this thread's cached, 64-byte aligned scratch (scratch.h slot 0), each panel
        # block on a whole line: B panels half a line off split every vector load
        # (unaligned, the grad_weight took 1.08-1.10x the time)
        abuf = <floating *> cc_scratch_acquire(0, (_line(mpad * PT, sizeof(floating))
                                                   + kpad * PT) * sizeof(floating))
        bbuf = abuf + _line(mpad * PT, sizeof(floating))
        if abuf == NULL:
            failed_p[0] = 1
        for item in prange(G * nkb * nrun, schedule="static"):
            if abuf == NULL:
                continue
            gi = item // (nkb * nrun)
            k0 = ((item // nrun) % nkb) * kb
            r = item % nrun
            kc = _imin(kb, K - k0)
            if part != NULL:
                dwg = part + (gi * nrun + r) * OK + k0
            else:
                dwg = dw + gi * OK + k0
            first = 1
            q = r * per_run
            q1 = _imin(NP, q + per_run)
            while q < q1:
                n = q // P
                p0 = q % P
                pc = _imin(PT, _imin(P - p0, q1 - q))
                pack_a(Og, pc, dy + (n * O + gi * Og) * P + p0, P, 1, abuf)
                pack_bt_nchw(g, x + (n * C + gi * Cg) * DHW, k0, kc, p0, pc, NR, bbuf)
                gemm_macro(Og, kc, pc, abuf, pc * MR, bbuf, pc * NR, dwg, K, not first)
                first = 0
                q = q + pc
            if first:  # an empty sum (N == 0, or an empty last run)
                for i in range(Og):
                    for j in range(kc):
                        dwg[i * K + j] = 0
        cc_scratch_release(0, abuf)
    return _finish_runs(failed, part, nrun, G, Og, K, dw, K, OK, nthreads)


cdef extern from "gemm.h" nogil:
    ctypedef struct cc_gwseg:
        cc_idx x
        cc_idx p
        cc_idx len
    int cconv_gwrows_mr_f32()
    int cconv_gwrows_mr_f64()
    void cconv_gwrows_ukernel_f32(cc_idx n, cc_idx nseg, const cc_gwseg *seg, const float *x, cc_idx xs,
                                  const float *b, cc_idx ldb, float *c, cc_idx ldc,
                                  int accumulate)
    void cconv_gwrows_ukernel_f64(cc_idx n, cc_idx nseg, const cc_gwseg *seg, const double *x,
                                  cc_idx xs, const double *b, cc_idx ldb, double *c, cc_idx ldc,
                                  int accumulate)
    void cconv_gwrows4_ukernel_f32(cc_idx n, cc_idx nseg, const cc_gwseg *seg, const float *x,
                                   cc_idx xs, const float *b, cc_idx ldb, float *c, cc_idx ldc,
                                   int accumulate)
    void cconv_gwrows4_ukernel_f64(cc_idx n, cc_idx nseg, const cc_gwseg *seg, const double *x,
                                   cc_idx xs, const double *b, cc_idx ldb, double *c,
                                   cc_idx ldc, int accumulate)


cdef inline void gwrows(cc_idx n, cc_idx nseg, const cc_gwseg *seg, const floating *x, cc_idx xs,
                        const floating *b, cc_idx ldb, floating *c, cc_idx ldc,
                        int accumulate) noexcept nogil:
    if floating is float:
        cconv_gwrows_ukernel_f32(n, nseg, seg, x, xs, b, ldb, c, ldc, accumulate)
    else:
        cconv_gwrows_ukernel_f64(n, nseg, seg, x, xs, b, ldb, c, ldc, accumulate)


cdef cc_idx _tap_runs(const cc_conv_geom *g, cc_idx t, cc_idx q0, cc_idx qc,
                      cc_gwseg *seg) noexcept nogil:
    """The runs of output pixels q0 .. q0+qc-1 (over the whole batch: q = n*P + p) whose
    input pixel for tap t lies inside the input (channels-last: seg.x = that pixel's
    offset / C, image included), in pixel order."""
    cdef cc_idx kd = t // (g.KH * g.KW), kh = (t // g.KW) % g.KH, kw = t % g.KW
    cdef cc_idx P = g.OD * g.OH * g.OW, DHW = g.D * g.H * g.W
    cdef cc_idx woff = kw * g.dw - g.pw, ns = 0, q = q0, n, p, od, oh, ow, run, i_d, i_h, lo, hi
    cdef cc_idx ow_min = _lo(woff, g.sw), ow_max = _hi(woff, g.sw, g.W, g.OW)
    while q < q0 + qc:
        n = q // P
        p = q % P
        od = p // (g.OH * g.OW)
        oh = (p // g.OW) % g.OH
        ow = p % g.OW
        run = _imin(g.OW - ow, q0 + qc - q)
        i_d = od * g.sd + kd * g.dd - g.pd
        i_h = oh * g.sh + kh * g.dh - g.ph
        lo = _imax(ow, ow_min)
        hi = _imin(ow + run, ow_max)
        if 0 <= i_d < g.D and 0 <= i_h < g.H and lo < hi:
            seg[ns].x = n * DHW + (i_d * g.H + i_h) * g.W + lo * g.sw + woff
            seg[ns].p = q - q0 + lo - ow
            seg[ns].len = hi - lo
            ns += 1
        q += run
    return ns


cdef int _gw_rows(const cc_conv_geom *g, const floating *x, const floating *dy, floating *dw,
                  cc_idx N, cc_idx G, cc_idx O, cc_idx PT, int MR, int NR,
                  int nthreads) except -1 nogil:
    # Channels-last dW (K x O, row k = tap*Cg + c) with x read in place. Work items are
    # (group, run of MR-row panels (tap, channel block)); each item owns its dW rows and
    # runs the output pixels of the whole batch (q = n*P + p; small images still make
    # long tiles) in tiles of PT, in order: dY's tile is packed
    # into NR-column panels once per tile, then every panel's MR x NR tiles take the
    # tap's runs of in-bounds pixels (gwrows ukernel). Each dW element is one running FMA
    # sum over the pixels in order (a padding pixel adds nothing), whatever the threads.
    # A partial channel block (c0 + MR > Cg) is packed, zero-filled, into a strip.
    cdef cc_idx Cg = g.C, Og = O // G, taps = g.KD * g.KH * g.KW, C = g.ctot
    cdef cc_idx NP = N * g.OD * g.OH * g.OW
    cdef cc_idx npt = _cdiv(Cg, MR), npan = taps * npt, nq = _cdiv(Og, NR)
    # items: one per thread when there are panels enough (each item packs dY's tile
    # once per tile: two per thread measured 1.00-1.12x the time); the split never
    # changes a sum
    cdef cc_idx nblk = _imin(npan, _imax(1, _cdiv(nthreads, G)))
    cdef cc_idx per = _cdiv(npan, nblk)
    # too few panels for the threads (1x1 with a few input channels: one panel): the
    # items split the NR-column panels of dY too, each packing only its own columns
    # (8 images of 3 -> 128 1x1 at 56x56 ran on one thread)
    cdef cc_idx nqb = _imin(nq, _imax(1, _cdiv(nthreads, G * nblk)))
    cdef cc_idx qper = _cdiv(nq, nqb)
    cdef cc_idx qb0, qb1
    cdef cc_idx esz = sizeof(floating)
    cdef cc_idx bsz = _line(nq * NR * PT, esz), ssz = _line(PT * MR, esz)
    cdef cc_idx tsz = _line(MR * NR, esz)
    cdef cc_idx item, gi, pan0, pan1, pan, t, cur_t, c0, m, q, nn, p0, pc, ns, s, kk, i, j
    cdef floating *buf
    cdef floating *bp
    cdef floating *strip
    cdef floating *tile
    cdef cc_gwseg *seg
    cdef cc_gwseg *sseg
    cdef const floating *xn
    cdef const floating *xa
    cdef const floating *src
    cdef floating *cp
    cdef cc_idx xs
    cdef int first
    cdef int failed = 0
    cdef int *failed_p = &failed
    with parallel(num_threads=nthreads):
        buf = <floating *> cc_scratch_acquire(
            0, (bsz + ssz + tsz) * esz + 2 * (PT + 2) * sizeof(cc_gwseg))
        bp = buf
        strip = buf + bsz
        tile = strip + ssz
        seg = <cc_gwseg *> (tile + tsz)
        sseg = seg + PT + 2
        if buf == NULL:
            failed_p[0] = 1
        for item in prange(G * nblk * nqb, schedule="static"):
            if buf == NULL:
                continue
            gi = item // (nblk * nqb)
            pan0 = ((item // nqb) % nblk) * per
            pan1 = _imin(npan, pan0 + per)
            qb0 = (item % nqb) * qper
            qb1 = _imin(nq, qb0 + qper)
            if qb0 >= qb1:
                continue
            first = 1
            xn = x + gi * Cg
            p0 = 0
            while p0 < NP:
                pc = _imin(PT, NP - p0)
                # panels qb0 .. qb1-1 of dY's tile, panel q at bp + q * pc * NR
                pack_b(pc, _imin(Og, qb1 * NR) - qb0 * NR, dy + p0 * O + gi * Og + qb0 * NR,
                       O, 1, bp + qb0 * pc * NR)
                cur_t = -1
                ns = 0
                for pan in range(pan0, pan1):
                    t = pan // npt
                    c0 = (pan % npt) * MR
                    m = _imin(MR, Cg - c0)
                    if t != cur_t:
                        ns = _tap_runs(g, t, p0, pc, seg)
                        for s in range(ns):
                            sseg[s].x = seg[s].p * MR
                            sseg[s].p = seg[s].p
                            sseg[s].len = seg[s].len
                            seg[s].x = seg[s].x * C
                        cur_t = t
                    if m == MR:
                        xa = xn + c0
                        xs = g.sw * C
                        for q in range(qb0, qb1):
                            nn = _imin(NR, Og - q * NR)
                            cp = dw + (t * Cg + c0) * O + gi * Og + q * NR
                            if nn == NR:
                                gwrows(NR, ns, seg, xa, xs, bp + q * pc * NR, NR, cp, O,
                                       not first)
                            else:
                                _gw_edge(ns, seg, xa, xs, bp + q * pc * NR, NR, cp, O, m, nn,
                                         MR, NR, tile, first)
                    else:
                        # partial channel block: its channels, zero-filled to MR
                        for s in range(ns):
                            for kk in range(seg[s].len):
                                src = xn + c0 + seg[s].x + kk * g.sw * C
                                for i in range(m):
                                    strip[(seg[s].p + kk) * MR + i] = src[i]
                                for i in range(m, MR):
                                    strip[(seg[s].p + kk) * MR + i] = 0
                        for q in range(qb0, qb1):
                            nn = _imin(NR, Og - q * NR)
                            cp = dw + (t * Cg + c0) * O + gi * Og + q * NR
                            _gw_edge(ns, sseg, strip, MR, bp + q * pc * NR, NR, cp, O, m, nn,
                                     MR, NR, tile, first)
                first = 0
                p0 = p0 + pc
        cc_scratch_release(0, buf)
    if failed:
        with gil:
            raise MemoryError("conv grad_weight: cannot allocate a packing buffer")
    return 0


cdef void _pack_cols_nhwc(const cc_conv_geom *g, const floating *x, cc_idx c0, cc_idx q0,
                          cc_idx qc, cc_idx Kp, floating *strip) noexcept nogil:
    """Channels-last im2col rows of output pixels q0 .. q0+qc-1 (q = n*P + p over the
    batch): strip[q - q0, t*Cg + c] = x[n, input pixel of tap t, c0 + c] (0 in the
    padding), columns K .. Kp-1 zero. Cg = g.C channels from channel c0 of g.ctot; the
    forward's row packer (pack.h) per image."""
    cdef cc_idx K = g.C * g.KD * g.KH * g.KW, P = g.OD * g.OH * g.OW
    cdef cc_idx DHWC = g.D * g.H * g.W * g.ctot, q = 0, p, m
    while q < qc:
        p = (q0 + q) % P
        m = _imin(qc - q, P - p)
        pack_rows_nhwc(g, x + ((q0 + q) // P) * DHWC + c0, p, m, 0, K, strip + q * Kp, Kp)
        q += m
    for q in range(qc):
        for m in range(K, Kp):
            strip[q * Kp + m] = 0


cdef void _gw_cols_run(const cc_conv_geom *g, const floating *x, const floating *dy,
                       cc_idx O, cc_idx gi, cc_idx q0, cc_idx q1, cc_idx qb0, cc_idx qb1,
                       cc_idx pan0, cc_idx pan1, floating *cw, cc_idx ldc, cc_idx PT,
                       int MR, int NR, floating *bp, floating *strip, floating *tile,
                       cc_gwseg *seg) noexcept nogil:
    """cw[k, q*NR + j] (row stride ldc) = the sum over output pixels q0 .. q1-1 of the
    batch, in order, of x's im2col row (k in MR-row panels pan0 .. pan1-1) times dY's
    columns gi*Og + (NR-column panels qb0 .. qb1-1) of group gi. Whole NR-column panels
    of dY are read in place (rows O apart): only a last partial panel is packed."""
    cdef cc_idx Cg = g.C, Og = O // (g.ctot // g.C), K = Cg * g.KD * g.KH * g.KW
    cdef cc_idx Kp = _cdiv(K, MR) * MR, p0 = q0, pc, pan, k0, m, q, nn
    cdef cc_idx qfull = _imin(qb1, Og // NR)   # panels qb0 .. qfull-1 are whole
    cdef floating *cp
    cdef const floating *b
    cdef int first = 1
    # rows of dY of 1 KB or more: the next tile's dY rows are prefetched a share per
    # kernel call. Each call reads NR columns of every pixel (rows O apart), an access
    # the hardware prefetchers did not stream from memory (1 -> 512 channels at 16000
    # samples: dY read at 6.5 GB/s)
    cdef cc_idx pfrows, pf0, pfn, calls = (qb1 - qb0) * (pan1 - pan0)
    cdef bint pf = O * sizeof(floating) >= 1024 and calls > 0
    cdef cc_idx pfbytes = (_imin(qb1 * NR, Og) - qb0 * NR) * sizeof(floating)
    while p0 < q1:
        pc = _imin(PT, q1 - p0)
        if qfull < qb1:
            pack_b(pc, Og - qfull * NR, dy + p0 * O + gi * Og + qfull * NR, O, 1, bp)
        _pack_cols_nhwc(g, x, gi * Cg, p0, pc, Kp, strip)
        seg.x = 0
        seg.p = 0
        seg.len = pc
        pf0 = p0 + pc
        pfn = _imin(PT, q1 - pf0)
        pfrows = _cdiv(pfn, calls) if pf and pfn > 0 else 0
        for q in range(qb0, qb1):
            for pan in range(pan0, pan1):
                if pfrows > 0 and pfn > 0:
                    cc_prefetch_rows(dy + pf0 * O + gi * Og + qb0 * NR, _imin(pfrows, pfn),
                                     O * sizeof(floating), pfbytes)
                    pf0 = pf0 + pfrows
                    pfn = pfn - pfrows
                k0 = pan * MR
                m = _imin(MR, K - k0)
                cp = cw + k0 * ldc + q * NR
                if q < qfull:
                    b = dy + p0 * O + gi * Og + q * NR
                    if m == MR:
                        gwrows(NR, 1, seg, strip + k0, Kp, b, O, cp, ldc, not first)
                    else:
                        _gw_edge(1, seg, strip + k0, Kp, b, O, cp, ldc, m, NR, MR, NR, tile,
                                 first)
                else:
                    nn = Og - q * NR
                    _gw_edge(1, seg, strip + k0, Kp, bp, NR, cp, ldc, m, nn, MR, NR, tile,
                             first)
        first = 0
        p0 = p0 + pc


cdef inline cc_idx _gw_runs(cc_idx items, cc_idx NP, cc_idx part_bytes) noexcept nogil:
    """Pixel runs of the channels-first GEMM grad_weight (_gw): with fewer than
    GW_RUN_ITEMS (group, K block) items, enough runs to make that many, each of at least
    GWC_RUN_MIN pixels, their partials within GWC_PART_BYTES; 1 (no partials) when fewer
    than 2 fit. A function of the problem only, never of the thread count."""
    if items >= GW_RUN_ITEMS:
        return 1
    cdef cc_idx r = _imin(_cdiv(GW_RUN_ITEMS, items),
                          _imin(NP // GWC_RUN_MIN, GWC_PART_BYTES // part_bytes))
    return r if r >= 2 else 1


cdef inline cc_idx _gw_nrun(cc_idx G, cc_idx Og, cc_idx K, cc_idx NP,
                           cc_idx itemsize) noexcept nogil:
    """The pixel runs of a channels-first GEMM grad_weight: 1 from KB_TARGET (channel,
    tap) pairs (one K block otherwise), else _gw_runs over its G groups."""
    if not GW_RUNS_ON or K >= KB_TARGET:
        return 1
    return _gw_runs(G * _cdiv(K, KB_TARGET), NP, G * Og * K * itemsize)


cdef inline cc_idx _gw_cols_runs(cc_idx NP, cc_idx KO, cc_idx esz) noexcept nogil:
    """Pixel runs of _gw_cols: at most GWC_RUNS, each of at least GWC_RUN_MIN pixels,
    their partials (K x O each) within GWC_PART_BYTES; 1 (no partials) when fewer than 2
    fit. A function of the problem only, never of the thread count."""
    cdef cc_idx r = _imin(GWC_RUNS, _imin(NP // GWC_RUN_MIN, GWC_PART_BYTES // (KO * esz)))
    return r if r >= 2 else 1


cdef int _gw_cols(const cc_conv_geom *g, const floating *x, const floating *dy, floating *dw,
                  cc_idx N, cc_idx G, cc_idx O, cc_idx PT, cc_idx nchunk, int MR, int NR,
                  int nthreads) except -1 nogil:
    # Channels-last dW (K x O, row k = tap*Cg + c) for few channels per group (Cg < MR):
    # _gw_rows would fill each tap's MR-row panel with Cg channels; here a tile's pixels
    # are im2col rows (pixels x Kp, all (tap, channel) pairs, Kp = K rounded up to MR)
    # and the MR-row panels run over those pairs, so only the last one is partial
    # (3 channels, 3x3: 27 of 32 rows busy against 27 of 72).
    # nchunk > 1 (a function of the problem only): the batch's output pixels split into
    # nchunk runs of whole tiles; items (group, run) sum their run into a private K x Og
    # partial (each thread packs only its own pixels: dY and the strip once), then the
    # partials are added in run order. Else items split dW's columns and rows and each
    # runs every pixel. Either way each dW element's sum order is fixed by the problem:
    # running FMA sums over the pixels in order (a padding pixel adds fma(0, dy)), then
    # the runs in order; the thread count never changes it.
    cdef cc_idx Cg = g.C, Og = O // G, taps = g.KD * g.KH * g.KW
    cdef cc_idx K = Cg * taps, Kp = _cdiv(K, MR) * MR, npan = Kp // MR
    cdef cc_idx NP = N * g.OD * g.OH * g.OW, nq = _cdiv(Og, NR)
    cdef cc_idx esz = sizeof(floating)
    cdef cc_idx bsz = _line(nq * NR * PT, esz), ssz = _line(PT * Kp, esz)
    cdef cc_idx tsz = _line(MR * NR, esz)
    cdef cc_idx per_run = _cdiv(_cdiv(NP, nchunk), PT) * PT
    cdef cc_idx nqb = 1, qper = nq, nblk = 1, per = npan
    cdef cc_idx item, gi, r, pan0, pan1, qb0, qb1, q0, q1, nitems
    cdef floating *buf
    cdef floating *part = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    if nchunk > 1:
        nchunk = _cdiv(NP, per_run)
        part = <floating *> malloc(G * nchunk * K * Og * esz + 64)
        if part == NULL:
            with gil:
                raise MemoryError("conv grad_weight: cannot allocate the partial sums")
        nitems = G * nchunk
    else:
        nqb = _imin(nq, _imax(1, _cdiv(nthreads, G)))
        qper = _cdiv(nq, nqb)
        nqb = _cdiv(nq, qper)
        nblk = _imin(npan, _imax(1, _cdiv(nthreads, G * nqb)))
        per = _cdiv(npan, nblk)
        nitems = G * nqb * nblk
    with parallel(num_threads=nthreads):
        buf = <floating *> cc_scratch_acquire(0, (bsz + ssz + tsz) * esz + sizeof(cc_gwseg))
        if buf == NULL:
            failed_p[0] = 1
        for item in prange(nitems, schedule="static"):
            if buf == NULL:
                continue
            if part != NULL:
                gi = item // nchunk
                r = item % nchunk
                q0 = r * per_run
                q1 = _imin(NP, q0 + per_run)
                _gw_cols_run(g, x, dy, O, gi, q0, q1, 0, nq, 0, npan,
                             part + item * K * Og, Og, PT, MR, NR, buf, buf + bsz,
                             buf + bsz + ssz, <cc_gwseg *> (buf + bsz + ssz + tsz))
            else:
                gi = item // (nqb * nblk)
                qb0 = ((item // nblk) % nqb) * qper
                qb1 = _imin(nq, qb0 + qper)
                pan0 = (item % nblk) * per
                pan1 = _imin(npan, pan0 + per)
                if qb0 < qb1 and pan0 < pan1:
                    _gw_cols_run(g, x, dy, O, gi, 0, NP, qb0, qb1, pan0, pan1,
                                 dw + gi * Og, O, PT, MR, NR, buf, buf + bsz,
                                 buf + bsz + ssz, <cc_gwseg *> (buf + bsz + ssz + tsz))
        cc_scratch_release(0, buf)
    return _finish_runs(failed, part, nchunk, G, K, Og, dw, O, Og, nthreads)


cdef inline void _gw_edge(cc_idx ns, const cc_gwseg *seg, const floating *xa, cc_idx xs,
                          const floating *b, cc_idx ldb, floating *cp, cc_idx ldc, cc_idx m,
                          cc_idx nn, int MR, int NR, floating *tile, int first) noexcept nogil:
    """An m x nn corner of a tile (m <= MR, nn <= NR) through the local MR x NR tile."""
    cdef cc_idx i, j
    if not first:
        for i in range(m):
            for j in range(nn):
                tile[i * NR + j] = cp[i * ldc + j]
    if m <= 4:  # the four-row kernels: half the FMAs of a panel with 4 rows or fewer
        if floating is float:
            cconv_gwrows4_ukernel_f32(nn, ns, seg, xa, xs, b, ldb, tile, NR, not first)
        else:
            cconv_gwrows4_ukernel_f64(nn, ns, seg, xa, xs, b, ldb, tile, NR, not first)
    else:
        gwrows(nn, ns, seg, xa, xs, b, ldb, tile, NR, not first)
    for i in range(m):
        for j in range(nn):
            cp[i * ldc + j] = tile[i * NR + j]


cdef inline cc_idx _pixel_tile(cc_idx P) noexcept nogil:
    """Output pixels per tile: equal tiles of at most PC (a function of P only)."""
    return _cdiv(P, _cdiv(P, PC))


def _grad_weight(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] dy,
                 floating[:, :, :, :, ::1] dw, tuple stride, tuple pad, tuple dil,
                 cc_idx G, bint channels_last, int nthreads):
    cdef cc_conv_geom geom
    cdef cc_idx N = x.shape[0], O, Cg, K, kb, nkb, taps, P, nrun
    cdef int MR, NR
    if floating is float:
        MR, NR = cconv_mr_f32(), cconv_nr_f32()
    else:
        MR, NR = cconv_mr_f64(), cconv_nr_f64()
    if channels_last:
        O, Cg = dw.shape[4], dw.shape[3]
        geom = _geom((x.shape[1], x.shape[2], x.shape[3]), (dw.shape[0], dw.shape[1], dw.shape[2]),
                     (dy.shape[1], dy.shape[2], dy.shape[3]), Cg, x.shape[4], stride, pad, dil)
    else:
        O, Cg = dw.shape[0], dw.shape[1]
        geom = _geom((x.shape[2], x.shape[3], x.shape[4]), (dw.shape[2], dw.shape[3], dw.shape[4]),
                     (dy.shape[2], dy.shape[3], dy.shape[4]), Cg, x.shape[1], stride, pad, dil)
    P = geom.OD * geom.OH * geom.OW
    if channels_last:
        MR = cconv_gwrows_mr_f32() if floating is float else cconv_gwrows_mr_f64()
        if Cg < MR and GW_COLS_ON:
            _gw_cols(&geom, &x[0, 0, 0, 0, 0], &dy[0, 0, 0, 0, 0], &dw[0, 0, 0, 0, 0], N, G,
                     O, GWC_PC, _gw_cols_runs(N * P, Cg * geom.KD * geom.KH * geom.KW * O,
                                              sizeof(floating)), MR, NR, nthreads)
            return
        _gw_rows(&geom, &x[0, 0, 0, 0, 0], &dy[0, 0, 0, 0, 0], &dw[0, 0, 0, 0, 0], N, G, O,
                 _cdiv(N * P, _cdiv(N * P, GWR_PC)), MR, NR, nthreads)
        return
    taps = geom.KD * geom.KH * geom.KW
    K = Cg * taps
    # K blocks: about KB_TARGET wide, and at least 2 per thread when K allows (the
    # blocking of K never changes a sum, so it may follow the thread count)
    nkb = _cdiv(K, KB_TARGET)
    # one K block (K < KB_TARGET) in fewer than GW_RUN_ITEMS groups: pixel runs too
    # (_gw_runs, from the problem only) instead of K blocks narrower than K, which left
    # the threads unbalanced and each packing dY's tiles. Measured 2 threads, float32,
    # 7-11 interleaved rounds, runs / K blocks: ResNet stem 7x7/2 3 -> 64 at 224^2 batch 8
    # 0.80-0.81 (batch 1 0.84), 64 -> 256 1x1 at 56^2 0.89-0.93; but with K >= 256
    # (256 -> 64 1x1 1.03-1.09, 3x3/2 128 -> 256 1.14) the K blocks stay
    nrun = _gw_nrun(G, O // G, K, N * P, sizeof(floating))
    if nrun == 1 and G * nkb < 8 * nthreads and (G * nkb) % nthreads:
        # round the item count up to a multiple of the threads (balance)
        nkb = _cdiv(_cdiv(G * nkb, nthreads) * nthreads, G)
    nkb = _imax(_imin(nkb, _cdiv(K, NR)), 1)
    kb = _cdiv(_cdiv(K, nkb), NR) * NR
    _gw(&geom, &x[0, 0, 0, 0, 0], &dy[0, 0, 0, 0, 0], &dw[0, 0, 0, 0, 0], N, G, O, kb,
        _pixel_tile(P), nrun, MR, NR, nthreads)


def grad_weight(x5, dy5, dw5, stride, pad, dil, groups, channels_last, nthreads):
    """dw5 = gradient of the convolution w.r.t. its weight (overwritten, 5-D layouts
    as in functional._prepare_*). x5 must have N >= 1 (callers handle empty batches)."""
    _grad_weight(x5, dy5, dw5, stride, pad, dil, groups, channels_last, nthreads)


# ============================================================================ grad_weight, dot

cdef int _gwd(const cc_conv_geom *g, const floating *x, const floating *dy, floating *dw,
             cc_idx N, cc_idx G, cc_idx O, cc_idx cb, cc_idx ob, int nthreads) except -1 nogil:
    # NCHW: items (group, block of cb input channels, block of ob output channels) own
    # dW[g*Og + o0 : + ob, block]; each runs the images in order: copy the block's
    # channels of image n, zero-padded and split into stride phases (as the forward's
    # padded grid), then gwdot.h adds the image's dot products. Each (o, k) sum is one
    # accumulator's (gwdot.h): blocking and thread count never change a sum.
    cdef cc_idx Cg = g.C, Og = O // G, C = Cg * G, taps = g.KD * g.KH * g.KW
    cdef cc_idx K = Cg * taps, P = g.OD * g.OH * g.OW, DHW = g.D * g.H * g.W
    cdef cc_idx Dp = g.OD + (g.KD - 1) * g.dd // g.sd
    cdef cc_idx Hp = g.OH + (g.KH - 1) * g.dh // g.sh
    cdef cc_idx Wp = g.OW + (g.KW - 1) * g.dw // g.sw
    cdef cc_idx HWp = Hp * Wp, DHWp = Dp * HWp
    cdef cc_idx CP = g.sd * g.sh * g.sw * DHWp
    cdef bint same_grid = (Dp == g.D and Hp == g.H and Wp == g.W and CP == DHWp
                           and g.pd == 0 and g.ph == 0 and g.pw == 0)
    cdef cc_idx cstride = DHW if same_grid else CP
    cdef cc_idx nblk = _cdiv(Cg, cb), nob = _cdiv(Og, ob), item, gi, c0, ncb, n, c, k, t, td, th, tw
    cdef cc_idx o0, nou
    cdef cc_gwd_rows rows
    cdef cc_idx *koff = <cc_idx *> malloc(cb * taps * sizeof(cc_idx) + 8)
    cdef floating *buf
    cdef const floating *src
    cdef int failed = 0
    cdef int *failed_p = &failed
    if koff == NULL:
        with gil:
            raise MemoryError("conv grad_weight: cannot allocate the tap offsets")
    # chunks of at most LANES positions along each output row (gwdot.h); a grid with
    # no gaps between output rows is one row
    cdef cc_idx lanes = 64 // sizeof(floating), nrow, rowlen, nq, q, r, j, od, oh
    if Wp == g.OW and Hp == g.OH:
        nrow, rowlen = 1, P
    else:
        nrow, rowlen = g.OD * g.OH, g.OW
    nq = nrow * _cdiv(rowlen, lanes)
    cdef cc_idx *tab = <cc_idx *> malloc(3 * nq * sizeof(cc_idx) + 8)
    if tab == NULL:
        free(koff)
        with gil:
            raise MemoryError("conv grad_weight: cannot allocate the chunk table")
    q = 0
    for r in range(nrow):
        od = r // g.OH
        oh = r % g.OH
        j = 0
        while j < rowlen:
            tab[3 * q] = (od * HWp + oh * Wp + j) if nrow > 1 else j
            tab[3 * q + 1] = r * rowlen + j
            tab[3 * q + 2] = _imin(lanes, rowlen - j)
            q += 1
            j += lanes
    rows.nq = nq
    rows.tab = tab
    rows.P = P
    for k in range(cb * taps):
        c = k // taps
        t = k % taps
        td = (t // (g.KH * g.KW)) * g.dd
        th = ((t // g.KW) % g.KH) * g.dh
        tw = (t % g.KW) * g.dw
        koff[k] = (c * cstride
                   + (((td % g.sd) * g.sh + th % g.sh) * g.sw + tw % g.sw) * DHWp
                   + (td // g.sd) * HWp + (th // g.sh) * Wp + tw // g.sw)
    # images per block: enough output positions (GWD_POSITIONS) that the lane
    # reductions at the end of a block cost little; a function of the problem only
    cdef cc_idx NB = _imax(1, _imin(N, _cdiv(GWD_POSITIONS, P))), n0, nb, b
    cdef const floating **ptrs
    memset(dw, 0, O * K * sizeof(floating))
    with parallel(num_threads=nthreads):
        ptrs = <const floating **> malloc(2 * NB * sizeof(floating *))
        buf = NULL
        if not same_grid:
            buf = <floating *> cc_scratch_acquire(0, NB * cb * CP * sizeof(floating))
        if ptrs == NULL or (buf == NULL and not same_grid):
            failed_p[0] = 1
        for item in prange(G * nblk * nob, schedule="static"):
            if failed_p[0]:
                continue
            gi = item // (nblk * nob)
            c0 = ((item // nob) % nblk) * cb
            ncb = _imin(cb, Cg - c0)
            o0 = (item % nob) * ob
            nou = _imin(ob, Og - o0)
            n0 = 0
            while n0 < N:
                nb = _imin(NB, N - n0)
                for b in range(nb):
                    n = n0 + b
                    ptrs[b] = dy + (n * O + gi * Og + o0) * P
                    src = x + (n * C + gi * Cg + c0) * DHW
                    if not same_grid:
                        for c in range(ncb):
                            pad_channel(src + c * DHW, g, buf + (b * cb + c) * CP, Dp, Hp, Wp)
                        src = buf + b * cb * CP
                    ptrs[NB + b] = src
                gwd_nchw(&rows, ptrs, ptrs + NB, nb, nou, koff, ncb * taps,
                         dw + (gi * Og + o0) * K + c0 * taps, K)
                n0 = n0 + nb
        cc_scratch_release(0, buf)
        free(ptrs)
    free(koff)
    free(tab)
    if failed:
        with gil:
            raise MemoryError("conv grad_weight: cannot allocate a padding buffer")
    return 0


def _grad_weight_dot(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] dy,
                     floating[:, :, :, :, ::1] dw, tuple stride, tuple pad, tuple dil,
                     cc_idx G, int nthreads):
    cdef cc_idx O = dw.shape[0], Cg = dw.shape[1]
    cdef cc_conv_geom geom = _geom((x.shape[2], x.shape[3], x.shape[4]),
                                   (dw.shape[2], dw.shape[3], dw.shape[4]),
                                   (dy.shape[2], dy.shape[3], dy.shape[4]), Cg, x.shape[1],
                                   stride, pad, dil)
    cdef cc_idx taps = geom.KD * geom.KH * geom.KW
    # channel blocks: at least 4 items per thread when the channels allow, and a block
    # of 1x1 channels a multiple of 6 (the AVX-512 4 x 6 tile)
    cdef cc_idx nblk = _imax(1, _imin(Cg, _cdiv(4 * nthreads, G)))
    cdef cc_idx cb = _cdiv(Cg, nblk)
    if taps == 1 and cb > 6:
        cb = _imin(Cg, _cdiv(cb, 6) * 6)
    # too few (group, channel block) items to spread (one input channel: one item):
    # output channel blocks too, multiples of 12 rows (every gwdot tile height divides
    # 12); each block copies its input channels again, one copy per 12 * taps dot rows
    cdef cc_idx items = G * _cdiv(Cg, cb), Og = O // G, ob = Og
    if items < 4 * nthreads and Og >= 24:
        ob = _imax(12, _cdiv(_cdiv(Og, _cdiv(4 * nthreads, items)), 12) * 12)
    _gwd(&geom, &x[0, 0, 0, 0, 0], &dy[0, 0, 0, 0, 0], &dw[0, 0, 0, 0, 0], x.shape[0], G, O,
         cb, ob, nthreads)


def grad_weight_dot(x5, dy5, dw5, stride, pad, dil, groups, nthreads):
    """dw5 = gradient of an NCHW convolution w.r.t. its weight by the gwdot kernel
    (gwdot.h; overwritten). x5 must have N >= 1."""
    _grad_weight_dot(x5, dy5, dw5, stride, pad, dil, groups, nthreads)



# ============================================================================ grad_input

cdef void _scatter_rows(const cc_conv_geom *g, const floating *dc, cc_idx ldd, cc_idx cb,
                        cc_idx p0, cc_idx pc, floating *dx, cc_idx cs) noexcept nogil:
    """NCHW col2im add: dc row (ci*taps + t), column p - p0 adds into dx[ci*cs + pixel]."""
    cdef cc_idx taps = g.KD * g.KH * g.KW, HW = g.H * g.W, OHW = g.OH * g.OW
    cdef cc_idx ci, t, kd, kh, kw, woff, ow_lo, ow_hi, p, pend, od, oh, ow, run_end, ow_end
    cdef cc_idx idd, ih, a, b, sw = g.sw
    cdef const floating *row
    cdef floating *xrow
    cdef floating *dxc
    # the first pixel's (od, oh, ow), stepped row by row below: three divisions per output
    # row run were a tenth of a 3x3 stride-2 grad_input
    cdef cc_idx od0 = p0 // OHW, oh0 = (p0 // g.OW) % g.OH, ow0 = p0 % g.OW
    pend = p0 + pc
    for ci in range(cb):
        dxc = dx + ci * cs
        for t in range(taps):
            kd = t // (g.KH * g.KW)
            kh = (t // g.KW) % g.KH
            kw = t % g.KW
            row = dc + (ci * taps + t) * ldd - p0
            woff = kw * g.dw - g.pw
            ow_lo = _lo(woff, sw)
            ow_hi = _hi(woff, sw, g.W, g.OW)
            if ow_lo >= ow_hi:
                continue
            p = p0
            od = od0
            oh = oh0
            ow = ow0
            while p < pend:
                run_end = _imin(pend, p + (g.OW - ow))
                ow_end = ow + (run_end - p)
                idd = od * g.sd + kd * g.dd - g.pd
                ih = oh * g.sh + kh * g.dh - g.ph
                if idd >= 0 and idd < g.D and ih >= 0 and ih < g.H:
                    a = _imax(ow, ow_lo)
                    b = _imin(ow_end, ow_hi)
                    xrow = dxc + idd * HW + ih * g.W + woff
                    if b > a:
                        add_strided(xrow + a * sw, sw, row + p + a - ow, b - a)
                p = run_end
                ow = 0
                oh = oh + 1
                if oh == g.OH:
                    oh = 0
                    od = od + 1


cdef inline void _step3(cc_idx *a, cc_idx *b, cc_idx *c, cc_idx nb, cc_idx nc) noexcept nogil:
    """(a, b, c) -> the next index of a row-major grid whose last two sizes are nb, nc."""
    c[0] += 1
    if c[0] == nc:
        c[0] = 0
        b[0] += 1
        if b[0] == nb:
            b[0] = 0
            a[0] += 1


cdef void _scatter_cols(const cc_conv_geom *g, const floating *dc, cc_idx ldd, cc_idx cb,
                        cc_idx cbl, cc_idx p0, cc_idx pc, floating *dx) noexcept nogil:
    """NHWC col2im add: dc row p - p0, column (t*cb + ci) adds into dx[pixel*ctot + ci]."""
    cdef cc_idx taps = g.KD * g.KH * g.KW, OHW = g.OH * g.OW, ct = g.ctot
    cdef cc_idx i, t, kd, kh, kw, p, od, oh, ow, idd, ih, iw, ci
    cdef const floating *src
    cdef floating *dst
    # pixel and tap coordinates stepped as counters, in the same order as before (six
    # integer divisions per (pixel, tap) outweighed the adds of a few channels)
    od = p0 // OHW
    oh = (p0 // g.OW) % g.OH
    ow = p0 % g.OW
    for i in range(pc):
        kd = 0
        kh = 0
        kw = 0
        for t in range(taps):
            idd = od * g.sd + kd * g.dd - g.pd
            ih = oh * g.sh + kh * g.dh - g.ph
            iw = ow * g.sw + kw * g.dw - g.pw
            if idd >= 0 and idd < g.D and ih >= 0 and ih < g.H and iw >= 0 and iw < g.W:
                src = dc + i * ldd + t * cb
                dst = dx + ((idd * g.H + ih) * g.W + iw) * ct
                for ci in range(cbl):
                    dst[ci] = dst[ci] + src[ci]
            _step3(&kd, &kh, &kw, g.KH, g.KW)
        _step3(&od, &oh, &ow, g.OH, g.OW)


cdef int _gi(const cc_conv_geom *g, const floating *dy, const floating *wt, floating *dx,
             cc_idx N, cc_idx G, cc_idx O, cc_idx cb, bint last, int MR, int NR,
             int nthreads) except -1 nogil:
    cdef cc_idx Cg = g.C, Og = O // G, taps = g.KD * g.KH * g.KW
    cdef cc_idx P = g.OD * g.OH * g.OW, DHW = g.D * g.H * g.W, C = g.ctot
    cdef cc_idx ncb = _cdiv(Cg, cb), kb = cb * taps, KC, PT = _pixel_tile(P)
    cdef cc_idx item, n, gi, bi, c0, cbl, p0, pc, o0, oc
    cdef cc_idx wpad, ppad
    cdef floating *wbuf
    cdef floating *ybuf
    cdef floating *cbuf
    cdef floating *dxb
    cdef floating *wp
    cdef floating *wall = NULL
    cdef const floating *wblk
    cdef cc_idx blk, wstride
    cdef int failed = 0
    cdef int *failed_p = &failed
    # 1x1 kernel, stride 1, no padding, same size: the GEMM writes dx directly
    cdef bint ident = (taps == 1 and g.sd == 1 and g.sh == 1 and g.sw == 1 and g.pd == 0
                       and g.ph == 0 and g.pw == 0 and g.D == g.OD and g.H == g.OH
                       and g.W == g.OW)
    if floating is float:
        KC = CCONV_KC_F32
    else:
        KC = CCONV_KC_F64
    if last:
        wpad = _cdiv(kb, NR) * NR   # B operand: kb columns
        ppad = _cdiv(PC, MR) * MR   # A operand: pc rows
    else:
        wpad = _cdiv(kb, MR) * MR   # A operand: kb rows
        ppad = _cdiv(PC, NR) * NR   # B operand: pc columns
    wstride = _line(wpad * Og, sizeof(floating))
    if N > 1:
        # every image's items use the same weight blocks: pack them once, not once per
        # image (8 images of 48 <- 256 3x3 at 7x7 spent a third of their time repacking)
        wall = <floating *> cc_scratch_acquire(1, G * ncb * wstride * sizeof(floating))
        if wall != NULL:
            for blk in prange(G * ncb, schedule="static", num_threads=nthreads):
                if last:
                    pack_b(Og, kb, wt + blk * kb * Og, 1, Og, wall + blk * wstride)
                else:
                    pack_a(kb, Og, wt + blk * kb * Og, Og, 1, wall + blk * wstride)
    with parallel(num_threads=nthreads):
        wbuf = <floating *> cc_scratch_acquire(0, (_line(wpad * Og, sizeof(floating))
                                          + _line(ppad * Og, sizeof(floating)) + kb * PC)
                                         * sizeof(floating))
        ybuf = wbuf + _line(wpad * Og, sizeof(floating))
        cbuf = ybuf + _line(ppad * Og, sizeof(floating))
        if wbuf == NULL:
            failed_p[0] = 1
        for item in prange(N * G * ncb, schedule="static"):
            if wbuf == NULL:
                continue
            n = item // (G * ncb)
            gi = (item // ncb) % G
            bi = item % ncb
            c0 = bi * cb
            cbl = _imin(cb, Cg - c0)
            wblk = wt + (gi * ncb + bi) * kb * Og
            if wall != NULL:
                wp = wall + (gi * ncb + bi) * wstride
            else:
                wp = wbuf
                if last:
                    pack_b(Og, kb, wblk, 1, Og, wbuf)
                else:
                    pack_a(kb, Og, wblk, Og, 1, wbuf)
            if last:
                dxb = dx + n * DHW * C + gi * Cg + c0
            else:
                dxb = dx + (n * C + gi * Cg + c0) * DHW
            p0 = 0
            while p0 < P:
                pc = _imin(PT, P - p0)
                if last:
                    pack_a(pc, Og, dy + (n * P + p0) * O + gi * Og, O, 1, ybuf)
                    o0 = 0
                    while o0 < Og:
                        oc = _imin(KC, Og - o0)
                        if ident:  # 1x1, stride 1, no padding: dcols is dx itself
                            gemm_macro(pc, cbl, oc, ybuf + o0 * MR, Og * MR, wp + o0 * NR,
                                       Og * NR, dxb + p0 * C, C, o0 > 0)
                        else:
                            gemm_macro(pc, kb, oc, ybuf + o0 * MR, Og * MR, wp + o0 * NR,
                                       Og * NR, cbuf, kb, o0 > 0)
                        o0 = o0 + oc
                    if not ident:
                        _scatter_cols(g, cbuf, kb, cb, cbl, p0, pc, dxb)
                else:
                    pack_b(Og, pc, dy + (n * O + gi * Og) * P + p0, P, 1, ybuf)
                    o0 = 0
                    while o0 < Og:
                        oc = _imin(KC, Og - o0)
                        if ident:
                            gemm_macro(cbl, pc, oc, wp + o0 * MR, Og * MR, ybuf + o0 * NR,
                                       Og * NR, dxb + p0, DHW, o0 > 0)
                        else:
                            gemm_macro(cbl * taps, pc, oc, wp + o0 * MR, Og * MR,
                                       ybuf + o0 * NR, Og * NR, cbuf, pc, o0 > 0)
                        o0 = o0 + oc
                    if not ident:
                        _scatter_rows(g, cbuf, pc, cbl, p0, pc, dxb, DHW)
                p0 = p0 + pc
        cc_scratch_release(0, wbuf)
    cc_scratch_release(1, wall)
    if failed:
        with gil:
            raise MemoryError("conv grad_input: cannot allocate a packing buffer")
    return 0


def _grad_input(const floating[:, :, :, :, ::1] dy, const floating[:, :, :, ::1] wt,
                floating[:, :, :, :, ::1] dx, tuple ksp, cc_idx cb, tuple stride, tuple pad,
                tuple dil, cc_idx G, bint channels_last, int nthreads):
    cdef cc_conv_geom geom
    cdef cc_idx N = dx.shape[0], O, C
    cdef int MR, NR
    if floating is float:
        MR, NR = cconv_mr_f32(), cconv_nr_f32()
    else:
        MR, NR = cconv_mr_f64(), cconv_nr_f64()
    if channels_last:
        O, C = dy.shape[4], dx.shape[4]
        geom = _geom((dx.shape[1], dx.shape[2], dx.shape[3]), ksp,
                     (dy.shape[1], dy.shape[2], dy.shape[3]), C // G, C, stride, pad, dil)
    else:
        O, C = dy.shape[1], dx.shape[1]
        geom = _geom((dx.shape[2], dx.shape[3], dx.shape[4]), ksp,
                     (dy.shape[2], dy.shape[3], dy.shape[4]), C // G, C, stride, pad, dil)
    _gi(&geom, &dy[0, 0, 0, 0, 0], &wt[0, 0, 0, 0], &dx[0, 0, 0, 0, 0], N, G, O, cb,
        channels_last, MR, NR, nthreads)


# rows (input channel x tap) per grad_input block: more input channels x taps than this
# split a channels-last block's scatter into short channel runs (backward.py reads it)
GRAD_INPUT_BLOCK_ROWS = KB_TARGET


def channel_block(Py_ssize_t N, Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t taps, int nthreads):
    """Input channels per grad_input work item: about KB_TARGET dcols rows, split finer
    when there are too few items for the threads (this never changes a sum)."""
    cdef Py_ssize_t cb = max(1, KB_TARGET // max(taps, 1)), ncb
    cb = max(1, min(cb, Cg))
    ncb = (Cg + cb - 1) // cb
    if 0 < N * G * ncb < 2 * nthreads:
        ncb = max(1, min(Cg, (2 * nthreads + N * G - 1) // (N * G)))
        cb = (Cg + ncb - 1) // ncb
    return max(cb, 1)


def grad_input(dy5, wt, dx5, ksp, cb, stride, pad, dil, groups, channels_last, nthreads):
    """Scatter-add the gradient of the convolution w.r.t. its input into dx5 (which the
    caller zeroes). wt: (G, ncb, kb, Og) weight blocks (see backward._weight_blocks)."""
    _grad_input(dy5, wt, dx5, ksp, cb, stride, pad, dil, groups, channels_last, nthreads)


# ============================================================================ depthwise
#
# Direct loops for depthwise-style problems (one input channel per group, O = C * m):
# a GEMM per group would have one row or column. Written like the forward's direct
# kernel (vectorised along W for NCHW, along channels for NHWC); every element is a sum
# in a fixed order whatever the thread count.


@cython.boundscheck(False)
def _dw_grad_input_nchw(const floating[:, :, :, :, ::1] dy, const floating[:, :, :, :, ::1] w,
                        floating[:, :, :, :, ::1] dx, tuple stride, tuple pad, tuple dil,
                        int nthreads):
    # dx (N, C, D, H, W), zeroed; dy (N, O, OD, OH, OW); w (O, 1, KD, KH, KW); O = C*m
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], D = dx.shape[2], H = dx.shape[3]
    cdef Py_ssize_t W = dx.shape[4], O = dy.shape[1], OD = dy.shape[2], OH = dy.shape[3]
    cdef Py_ssize_t OW = dy.shape[4], KD = w.shape[2], KH = w.shape[3], KW = w.shape[4]
    cdef Py_ssize_t sd = stride[0], sh = stride[1], sw = stride[2]
    cdef Py_ssize_t dd = dil[0], dh = dil[1], dw_ = dil[2]
    cdef Py_ssize_t pd = pad[0], ph = pad[1], pw = pad[2]
    cdef Py_ssize_t m = O // C, item, n, c, j, o, kd, kh, kw, od, oh, ow, idd, ih, woff, lo, hi
    cdef floating wv
    cdef floating *xrow
    cdef const floating *yrow
    for item in prange(N * C, nogil=True, schedule="static", num_threads=nthreads):
        n = item // C
        c = item % C
        for j in range(m):
            o = c * m + j
            for kd in range(KD):
                for kh in range(KH):
                    for kw in range(KW):
                        wv = w[o, 0, kd, kh, kw]
                        woff = kw * dw_ - pw
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
                                xrow = &dx[n, c, idd, ih, 0]
                                xrow = xrow + woff
                                yrow = &dy[n, o, od, oh, 0]
                                if sw == 1:
                                    for ow in range(lo, hi):
                                        xrow[ow] = xrow[ow] + wv * yrow[ow]
                                else:
                                    for ow in range(lo, hi):
                                        xrow[ow * sw] = xrow[ow * sw] + wv * yrow[ow]


@cython.boundscheck(False)
def _dw_grad_input_nhwc(const floating[:, :, :, :, ::1] dy, const floating[:, :, :, :, ::1] w,
                        floating[:, :, :, :, ::1] dx, tuple stride, tuple pad, tuple dil,
                        Py_ssize_t cb, int nthreads):
    # dx (N, D, H, W, C), zeroed; dy (N, OD, OH, OW, O); w (KD, KH, KW, 1, O); O = C*m
    cdef Py_ssize_t N = dx.shape[0], D = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t C = dx.shape[4], OD = dy.shape[1], OH = dy.shape[2], OW = dy.shape[3]
    cdef Py_ssize_t O = dy.shape[4], KD = w.shape[0], KH = w.shape[1], KW = w.shape[2]
    cdef Py_ssize_t sd = stride[0], sh = stride[1], sw = stride[2]
    cdef Py_ssize_t dd = dil[0], dh = dil[1], dw_ = dil[2]
    cdef Py_ssize_t pd = pad[0], ph = pad[1], pw = pad[2]
    cdef Py_ssize_t m = O // C, ncb = (C + cb - 1) // cb
    cdef Py_ssize_t item, n, c0, c1, c, j, kd, kh, kw, od, oh, ow, idd, ih, iw
    cdef floating *xp
    cdef const floating *yp
    cdef const floating *wp
    for item in prange(N * ncb, nogil=True, schedule="static", num_threads=nthreads):
        n = item // ncb
        c0 = (item % ncb) * cb
        c1 = c0 + cb
        if c1 > C:
            c1 = C
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    yp = &dy[n, od, oh, ow, 0]
                    for kd in range(KD):
                        idd = od * sd + kd * dd - pd
                        if idd < 0 or idd >= D:
                            continue
                        for kh in range(KH):
                            ih = oh * sh + kh * dh - ph
                            if ih < 0 or ih >= H:
                                continue
                            for kw in range(KW):
                                iw = ow * sw + kw * dw_ - pw
                                if iw < 0 or iw >= W:
                                    continue
                                xp = &dx[n, idd, ih, iw, 0]
                                wp = &w[kd, kh, kw, 0, 0]
                                if m == 1:
                                    for c in range(c0, c1):
                                        xp[c] = xp[c] + wp[c] * yp[c]
                                else:
                                    for c in range(c0, c1):
                                        for j in range(m):
                                            xp[c] = xp[c] + wp[c * m + j] * yp[c * m + j]


# taps one dx pixel may receive in dwgi.c (its GI_MAXTAPS; the pointer lists on its stack)
GATHER_MAX_TAPS = 512


@functools.lru_cache(maxsize=64)
def _gather_taps(Py_ssize_t n, Py_ssize_t s, Py_ssize_t p, Py_ssize_t K, Py_ssize_t O):
    """dwgi.h's tap table of one dim: per coordinate i < n the taps k (decreasing) with
    (i + p - k) % s == 0 and their output positions o (-1 outside [0, O)). Cached (a
    few NumPy calls, tens of microseconds against a small problem's hundreds)."""
    T = (K + s - 1) // s  # not -(-K // s): this module compiles with cdivision
    r = np.arange(n, dtype=np.intp)[:, None] + p - np.arange(K - 1, -1, -1, dtype=np.intp)
    valid = r % s == 0
    order = np.argsort(~valid, axis=1, kind="stable")[:, :T]
    ks = np.ascontiguousarray((K - 1 - order).astype(np.intp))
    o = np.take_along_axis(r, order, axis=1) // s
    ok = np.take_along_axis(valid, order, axis=1)
    o = np.ascontiguousarray(np.where(ok & (o >= 0) & (o < O), o, -1).astype(np.intp))
    cnt = np.ascontiguousarray(valid.sum(axis=1).astype(np.intp))
    for a in (cnt, ks, o):
        a.flags.writeable = False
    return cnt, ks, o, T


@cython.boundscheck(False)
@cython.wraparound(False)
def dw_grad_input_gather(const floating[:, :, :, :, ::1] dy,
                         const floating[:, :, :, :, ::1] w, floating[:, :, :, :, ::1] dx,
                         tuple stride, tuple pad, int nthreads):
    """Depthwise (O == C) channels-last grad_input, dilation 1, every stride at most
    its kernel size: dwgi.h's gather, each dx element written once (no zeroing).
    dy (N, OD, OH, OW, C); w (KD, KH, KW, 1, C); dx (N, D, H, W, C)."""
    cdef cc_dwgi_geom g
    cdef Py_ssize_t N = dx.shape[0], r, rows, n, idd, ih
    g.D, g.H, g.W, g.C = dx.shape[1], dx.shape[2], dx.shape[3], dx.shape[4]
    g.OD, g.OH, g.OW = dy.shape[1], dy.shape[2], dy.shape[3]
    g.KH, g.KW = w.shape[1], w.shape[2]
    # the depthwise kernels' bar for arrays that leave the cache (read per call)
    g.stream = (dx.nbytes + dy.nbytes) >= _depthwise.prefetch_min_bytes
    td = _gather_taps(g.D, stride[0], pad[0], w.shape[0], g.OD)
    th = _gather_taps(g.H, stride[1], pad[1], g.KH, g.OH)
    tw = _gather_taps(g.W, stride[2], pad[2], g.KW, g.OW)
    if td[3] * th[3] * tw[3] > GATHER_MAX_TAPS:  # the caller checks: not reached
        raise AssertionError("cconv: dw_grad_input_gather: too many taps per pixel")
    cdef const cc_idx[::1] cd = td[0], ch = th[0], cw = tw[0]
    cdef const cc_idx[:, ::1] kd_ = td[1], kh_ = th[1], kw_ = tw[1]
    cdef const cc_idx[:, ::1] od_ = td[2], oh_ = th[2], ow_ = tw[2]
    g.Td, g.Th, g.Tw = td[3], th[3], tw[3]
    g.cnt_d, g.k_d, g.o_d = &cd[0], &kd_[0, 0], &od_[0, 0]
    g.cnt_h, g.k_h, g.o_h = &ch[0], &kh_[0, 0], &oh_[0, 0]
    g.cnt_w, g.k_w, g.o_w = &cw[0], &kw_[0, 0], &ow_[0, 0]
    zeros = np.zeros(max(g.C, 1), np.float32 if floating is float else np.float64)
    cdef const floating[::1] z = zeros
    rows = N * g.D * g.H
    with nogil:
        for r in prange(rows, schedule="static", num_threads=nthreads):
            n = r // (g.D * g.H)
            idd = r // g.H % g.D
            ih = r % g.H
            if floating is float:
                cconv_dwgi_nhwc_row_f32(&g, &dy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0],
                                        &dx[0, 0, 0, 0, 0], n, idd, ih, &z[0])
            else:
                cconv_dwgi_nhwc_row_f64(&g, &dy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0],
                                        &dx[0, 0, 0, 0, 0], n, idd, ih, &z[0])


def _channel_split(Py_ssize_t n_items, Py_ssize_t channels, int nthreads):
    """Channels per block: all of them, or fewer so that there are >= 1 item per thread
    (never below 16 channels). Blocking never changes a sum."""
    cdef Py_ssize_t nb = 1
    if n_items < nthreads:
        nb = (nthreads + n_items - 1) // n_items
    cdef Py_ssize_t b = (channels + nb - 1) // nb
    return max(min(channels, max(b, 16)), 1)


def dw_grad_input(dy5, w5, dx5, stride, pad, dil, channels_last, nthreads):
    """Depthwise-style grad_input (one input channel per group) into zeroed dx5."""
    if channels_last:
        cb = _channel_split(dx5.shape[0], dx5.shape[4], nthreads)
        _dw_grad_input_nhwc(dy5, w5, dx5, stride, pad, dil, cb, nthreads)
    else:
        _dw_grad_input_nchw(dy5, w5, dx5, stride, pad, dil, nthreads)


@cython.boundscheck(False)
@cython.wraparound(False)
def _dwgw_nhwc_blocks(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] dy,
                      floating[:, ::1] part, tuple ksize, tuple stride, tuple pad,
                      tuple dil, Py_ssize_t rb, int nthreads, double[:, ::1] bpart=None):
    """part[b] = dwgw.h's partial of row block b (rows b * rb ..), on the threads; with
    bpart, bpart[b] = the block's bias sums as well."""
    cdef cc_dwgw_geom g
    g.D, g.H, g.W, g.C = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    g.OD, g.OH, g.OW = dy.shape[1], dy.shape[2], dy.shape[3]
    g.KD, g.KH, g.KW = ksize
    g.sd, g.sh, g.sw = stride
    g.dd, g.dh, g.dw = dil
    g.pd, g.ph, g.pw = pad
    # the forward kernels' bar (_depthwise.prefetch_min_bytes), read per call
    g.prefetch = (x.nbytes + dy.nbytes) >= _depthwise.prefetch_min_bytes
    cdef Py_ssize_t R = dy.shape[0] * g.OD * g.OH, nb = part.shape[0], b, r0, r1
    cdef double *bp = NULL
    if bpart is not None:
        bp = &bpart[0, 0]
    cdef int failed = 0
    with nogil:
        for b in prange(nb, schedule="static", num_threads=nthreads):
            r0 = b * rb
            r1 = min(r0 + rb, R)
            if floating is float:
                if cconv_dwgw_nhwc_f32(&g, &x[0, 0, 0, 0, 0], &dy[0, 0, 0, 0, 0], r0, r1,
                                       &part[b, 0], bp + b * g.C if bp != NULL else NULL):
                    failed = 1
            else:
                if cconv_dwgw_nhwc_f64(&g, &x[0, 0, 0, 0, 0], &dy[0, 0, 0, 0, 0], r0, r1,
                                       &part[b, 0], bp + b * g.C if bp != NULL else NULL):
                    failed = 1
    if failed:
        raise MemoryError("conv grad_weight (depthwise): cannot allocate an index table")


# Row blocks of the channels-last depthwise weight gradient: a function of the problem
# only (bitwise the same for every thread count): about 32 blocks, fewer when a block's
# partial (taps x channels) is large, at least 4 (memory for the partials: <= 16 MiB
# unless one partial alone is larger than 4 MiB).
cdef enum:
    DWGW_BLOCKS = 32
    DWGW_MIN_BLOCKS = 4
    DWGW_PART_BYTES = 4 << 20


def dw_row_block(Py_ssize_t rows, Py_ssize_t taps, Py_ssize_t C, Py_ssize_t itemsize):
    """Rows (n, od, oh) of dY per block of the channels-last depthwise weight gradient,
    and of its bias gradient (dw_grad_weight_nhwc), from the problem only."""
    per = DWGW_PART_BYTES // max(taps * C * itemsize, 1)
    target = min(rows, max(DWGW_MIN_BLOCKS, min(DWGW_BLOCKS, per)))
    return max(-(-rows // max(target, 1)), 1)


def dw_grad_weight_nhwc(x5, dy5, dw5, stride, pad, dil, nthreads, db=None):
    """Depthwise-style grad_weight, channels-last (overwrites dw5 (KD, KH, KW, 1, C * m)).
    Channels-first problems use grad_weight_dot. The dwgw.h kernel over row blocks,
    whose partials are added in block order. With a channel multiplier m > 1, x's
    channel c repeated for its outputs c * m + j (as the forward kernel reads it), so one
    pass covers all C * m lanes (one pass per j on C lanes, each re-reading x: 2 input
    channels x 8 ran 30x slower than channels-first).
    db: None, or a zeroed float64 (C * m,) that receives the bias gradient sums, in
    grad_bias's order with dw_row_block's blocks (bitwise grad_bias(..., rows_per_block))."""
    C, O = x5.shape[4], dy5.shape[4]
    m = O // C
    ksize = dw5.shape[:3]
    taps = ksize[0] * ksize[1] * ksize[2]
    R = dy5.shape[0] * dy5.shape[1] * dy5.shape[2]
    rb = dw_row_block(R, taps, O, dw5.itemsize)
    nb = -(-R // rb)
    part = np.empty((nb, taps * O), dw5.dtype)
    bpart = np.empty((nb, O), np.float64) if db is not None else None
    if m > 1:
        xr = np.empty(x5.shape[:4] + (O,), x5.dtype)
        _core.repeat_channels(x5.reshape(-1, C), xr.reshape(-1, O), m, nthreads)
        x5 = xr
    _dwgw_nhwc_blocks(x5, dy5, part, ksize, stride, pad, dil, rb, nthreads, bpart)
    total = part[0]
    with np.errstate(all="ignore"):  # Inf - Inf is NaN by definition: no warning
        for b in range(1, part.shape[0]):
            total += part[b]  # block order; elementwise: thread-independent
    dw5.reshape(taps, O)[...] = total.reshape(taps, O)
    if db is not None:
        bsum = np.zeros(O, np.float64)
        _sum_rows_f64(bpart, bsum)
        db[...] = bsum


@cython.boundscheck(False)
@cython.wraparound(False)
def _sum_rows_f64(double[:, ::1] part, double[::1] out):
    """out[c] += part[b, c] for the blocks b in order (biasgrad.h)."""
    with nogil:
        cconv_biasgrad_cols_f64(&part[0, 0], part.shape[0], part.shape[1], part.shape[1],
                                &out[0])


# ----------------------------------------------------------------------------- bias
# Rows of a channels-last grad_out summed per block: a function of the row count only
# (never of the thread count), about 64 blocks so that two threads share them evenly.
cdef enum:
    BG_MIN_ROWS = 32
    BG_BLOCKS = 64


@cython.boundscheck(False)
@cython.wraparound(False)
def _grad_bias_rows(const floating[:, :, ::1] dy, double[::1] out, int nthreads):
    """out[c] = sum of dy[:, c, :] (channels-first), channels split over the threads."""
    cdef Py_ssize_t N = dy.shape[0], C = dy.shape[1], S = dy.shape[2], c
    with nogil:
        for c in prange(C, schedule="static", num_threads=nthreads):
            if floating is float:
                out[c] = cconv_biasgrad_rows_f32(&dy[0, c, 0], N, C * S, S)
            else:
                out[c] = cconv_biasgrad_rows_f64(&dy[0, c, 0], N, C * S, S)


@cython.boundscheck(False)
@cython.wraparound(False)
def _grad_bias_cols(const floating[:, ::1] dy, double[::1] out, int nthreads,
                    Py_ssize_t rb=0):
    """out[c] = sum of dy[:, c] (channels-last rows): per-block partial sums of rb rows
    (0: the default blocks) on the threads, then the partials added in block order
    (zeroed out on entry)."""
    cdef Py_ssize_t R = dy.shape[0], C = dy.shape[1], b, r0
    if rb <= 0:
        rb = max(<Py_ssize_t>BG_MIN_ROWS, (R + BG_BLOCKS - 1) // BG_BLOCKS)
    cdef Py_ssize_t nb = (R + rb - 1) // rb
    cdef double[:, ::1] part = np.zeros((nb, C), np.float64)
    with nogil:
        for b in prange(nb, schedule="static", num_threads=nthreads):
            r0 = b * rb
            if floating is float:
                cconv_biasgrad_cols_f32(&dy[r0, 0], min(rb, R - r0), C, C, &part[b, 0])
            else:
                cconv_biasgrad_cols_f64(&dy[r0, 0], min(rb, R - r0), C, C, &part[b, 0])
        cconv_biasgrad_cols_f64(&part[0, 0], nb, C, C, &out[0])


def grad_bias(dy, Py_ssize_t channels, bint channels_last, int nthreads,
              Py_ssize_t rows_per_block=0):
    """The bias gradient: grad_out (batched, contiguous) summed over batch and space per
    channel, in double (biasgrad.h: fixed order, bitwise the same for every thread
    count and ISA path), returned in grad_out's dtype. rows_per_block: channels-last
    only, the pixel rows of a block (0: BG_BLOCKS-based default)."""
    out = np.zeros(channels, np.float64)
    if dy.size:
        if channels_last:
            _grad_bias_cols(dy.reshape(-1, channels), out, nthreads, rows_per_block)
        else:
            _grad_bias_rows(dy.reshape(dy.shape[0], channels, -1), out, nthreads)
    return out.astype(dy.dtype)
