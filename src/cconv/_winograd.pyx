"""Winograd F(2x2,3x3) / F(4x4,3x3) convolution (1-D: F(2,3) / F(4,3)) on the GEMM core.

Per group, with alpha = m + 2 and T = alpha*alpha transformed elements (alpha in 1-D):
  1. weights: U[t] = (G g G^T)[t] for every (o, c), computed in the dtype and written
     straight into the GEMM core's packed panel layout (transform_weights; the
     result can be kept and reused, see cconv.winograd_weights).
  2. input tiles (alpha x alpha, overlapping by 2, origin (ty*m - pad_top, tx*m - pad_left);
     reads beyond the input are zeros): V[t] = (B^T d B)[t], one tile block at a time.
  3. per transformed element t, one GEMM: M[t] = U[t] . V[t] over the channels.
  4. output tiles Y = A^T M A + bias; only the outputs inside the image are written.

One kernel, channels-last: M[t] (tiles x O) = V[t] (tiles x C) . U[t] (C x O, packed
NR-column panels); the transforms run with channels as SIMD lanes (contiguous in this
layout), V rows are read in place by the indirect micro-kernel, and full output tiles are
written directly. Channels-first problems run on it between two threaded transposes
(_layout.pxi, into cached scratch buffers): measured 1.2-2.3x
faster than the tiles-as-lanes NCHW kernel this module had before (its scalar tile
gathers and, on small images, half-empty panels cost more than the transposes). The
weight transform reads either weight layout directly (channels-first taps are turned
lanes-innermost 16 channels at a time, in L1).

One-shot weights: where every transformed weight would be read by a single work item
(one tile block per group: small images, many channels), each item transforms its own
output channels one NR-column panel block at a time, right before the products that
read it (_item_fused), so the T x Cg x O transformed weights are never written out;
otherwise they are transformed once into cached scratch and shared by the items.

Work items are (group, tile block, output-channel block), split over OpenMP threads
(static schedule); every item owns its outputs and every sum runs in a fixed order, so
results are bitwise identical for any thread count and on every ISA path (and the same
with or without the fused weight transform). Workspace: the transformed weights (none
when fused) plus, per thread, one tile block's V and M (bounded by BLOCK_BYTES), not a
multiple of the image size.
"""
cimport cython
from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.string cimport memset
from libc.stdint cimport int64_t

import numpy as np

include "_gemm_core.pxi"
include "_layout.pxi"

cdef extern from "scratch.h" nogil:
    void *cc_scratch_acquire(int slot, size_t nbytes)
    void cc_scratch_release(int slot, void *p)

cdef extern from "winograd.h" nogil:
    void cconv_wino_input_f32(int m, int nd, const float *d, cc_idx rs, cc_idx cs, float *v,
                              cc_idx ldv, cc_idx L)
    void cconv_wino_input_f64(int m, int nd, const double *d, cc_idx rs, cc_idx cs, double *v,
                              cc_idx ldv, cc_idx L)
    void cconv_wino_output_f32(int m, int nd, const float *mm, cc_idx ldm, const float *bias,
                               float *y, cc_idx rs, cc_idx cs, cc_idx L)
    void cconv_wino_output_f64(int m, int nd, const double *mm, cc_idx ldm, const double *bias,
                               double *y, cc_idx rs, cc_idx cs, cc_idx L)
    void cconv_wino_kernel_f32(int m, int nd, const float *g, cc_idx rs, cc_idx cs, cc_idx ls,
                               float *u, cc_idx ldu, cc_idx lu, cc_idx L)
    void cconv_wino_kernel_f64(int m, int nd, const double *g, cc_idx rs, cc_idx cs, cc_idx ls,
                               double *u, cc_idx ldu, cc_idx lu, cc_idx L)
    void cconv_wino_lanes_f32(const float *src, cc_idx lds, cc_idx rows, cc_idx cols,
                              float *dst, cc_idx ldd)
    void cconv_wino_lanes_f64(const double *src, cc_idx lds, cc_idx rows, cc_idx cols,
                              double *dst, cc_idx ldd)

# the activation transposes of channels-first calls: in-register (winograd.c)
layout_transpose_f32 = cconv_wino_lanes_f32
layout_transpose_f64 = cconv_wino_lanes_f64


def tile_shape(dtype):
    """(MR, NR, KC) of the active ISA path (the panel geometry of transformed weights)."""
    if np.dtype(dtype) == np.float32:
        return cconv_mr_f32(), cconv_nr_f32(), CCONV_KC_F32
    return cconv_mr_f64(), cconv_nr_f64(), CCONV_KC_F64


# --------------------------------------------------------------------- typed wrappers

cdef inline void wino_in(int m, int nd, const floating *d, cc_idx rs, cc_idx cs, floating *v,
                         cc_idx ldv, cc_idx L) noexcept nogil:
    if floating is float:
        cconv_wino_input_f32(m, nd, d, rs, cs, v, ldv, L)
    else:
        cconv_wino_input_f64(m, nd, d, rs, cs, v, ldv, L)


cdef inline void wino_out(int m, int nd, const floating *mm, cc_idx ldm, const floating *bias,
                          floating *y, cc_idx rs, cc_idx cs, cc_idx L) noexcept nogil:
    if floating is float:
        cconv_wino_output_f32(m, nd, mm, ldm, bias, y, rs, cs, L)
    else:
        cconv_wino_output_f64(m, nd, mm, ldm, bias, y, rs, cs, L)


cdef inline void wino_ker(int m, int nd, const floating *g, cc_idx rs, cc_idx cs, cc_idx ls,
                          floating *u, cc_idx ldu, cc_idx lu, cc_idx L) noexcept nogil:
    if floating is float:
        cconv_wino_kernel_f32(m, nd, g, rs, cs, ls, u, ldu, lu, L)
    else:
        cconv_wino_kernel_f64(m, nd, g, rs, cs, ls, u, ldu, lu, L)


cdef inline Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef struct wgeom:
    Py_ssize_t N, C, O, G, Cg, Og, H, W, OH, OW, ph, pw
    Py_ssize_t m, mh, aw, ah, T, nd, tH, tW, NT
    Py_ssize_t MR, NR, KC


cdef wgeom _make_geom(tuple xshape, tuple oshape, tuple pad, Py_ssize_t G, Py_ssize_t O,
                      int m, int nd, type dtype):
    """Geometry of a channels-last problem: x (N, 1, H, W, C), out (N, 1, OH, OW, O)."""
    cdef wgeom g
    g.N, _, g.H, g.W, g.C = xshape
    _, _, g.OH, g.OW, _ = oshape
    g.O = O
    g.G = G
    g.Cg = g.C // G
    g.Og = O // G
    g.ph = pad[1]
    g.pw = pad[2]
    g.m = m
    g.nd = nd
    g.aw = m + 2
    if nd == 1:
        g.mh, g.ah = 1, 1
    else:
        g.mh, g.ah = m, m + 2
    g.T = g.ah * g.aw
    g.tH = _cdiv(g.OH, g.mh)
    g.tW = _cdiv(g.OW, g.m)
    g.NT = g.N * g.tH * g.tW
    if dtype is np.float32:
        g.MR, g.NR, g.KC = cconv_mr_f32(), cconv_nr_f32(), CCONV_KC_F32
    else:
        g.MR, g.NR, g.KC = cconv_mr_f64(), cconv_nr_f64(), CCONV_KC_F64
    return g


# --------------------------------------------------------------------- weights

cdef struct wraw:
    # untransformed weights: tap (i, j) of output channel o, input channel c of group gi
    # at w[(gi*Og + o)*ls + c*sc + i*rs + j*cs]; kc: channels per transformed panel
    # block of a fused call (0: the weights come pre-transformed)
    Py_ssize_t ls, sc, rs, cs, kc


cdef wraw _raw_strides(tuple wshape, bint w_cl, Py_ssize_t Cg, Py_ssize_t O):
    cdef wraw wr
    wr.kc = 0
    if w_cl:  # (1, kh, kw, Cg, O): output channels contiguous
        wr.ls, wr.sc, wr.rs, wr.cs = 1, O, wshape[2] * Cg * O, Cg * O
    else:     # (O, Cg, 1, kh, kw): each output channel's (channel, tap) run contiguous
        wr.ls, wr.sc, wr.rs, wr.cs = Cg * wshape[3] * wshape[4], wshape[3] * wshape[4], \
            wshape[4], 1
    return wr


cdef inline Py_ssize_t _elem_stride(Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t Og,
                                    Py_ssize_t NR) noexcept nogil:
    # elements between transformed elements t and t+1 of the packed weights: the panels,
    # plus 16 so that the stride is no multiple of 4 KiB (the T rows one transform
    # writes then fall in different L1 sets: measured 1.3x on F(4x4)'s transform)
    return _cdiv(Og, NR) * NR * Cg + 16


def packed_weights_size(Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t Og, int m, int nd, dtype):
    """Elements of the transformed, packed weights for the active ISA path."""
    MR, NR, _ = tile_shape(dtype)
    T = (m + 2) * (m + 2) if nd == 2 else m + 2
    return G * T * _elem_stride(G, Cg, Og, NR)


cdef inline void transpose_into(const floating *src, Py_ssize_t lds, Py_ssize_t rows,
                                Py_ssize_t cols, floating *dst, Py_ssize_t ldd) noexcept nogil:
    if floating is float:
        cconv_wino_lanes_f32(src, lds, rows, cols, dst, ldd)
    else:
        cconv_wino_lanes_f64(src, lds, rows, cols, dst, ldd)


cdef enum:
    # channels of channels-first taps turned lanes-innermost at a time (wl: 16 * 9 * NR)
    RAW_CB = 16


cdef void _transform_panel_block(const floating *w, const wraw *wr, const wgeom *g,
                                 Py_ssize_t oc, Py_ssize_t nc, Py_ssize_t k0, Py_ssize_t kc,
                                 floating *dst, Py_ssize_t ts,
                                 floating *wl) noexcept nogil:
    """One NR-column panel block of U = G g G^T: output channels oc .. oc+nc-1 (global
    index) as lanes, input channels k0 .. k0+kc-1 of the group; element t, channel c,
    lane l written at dst[t*ts + c*NR + l], zero for nc <= l < NR. Channels-first
    weights go through wl (RAW_CB * taps * NR scratch) RAW_CB channels at a time, turned
    lanes-innermost in L1 so that the transform loads whole vectors instead of
    gathering lanes wr.ls apart."""
    cdef Py_ssize_t NR = g.NR, c, cb, cn, t, l
    if wr.ls == 1:
        for c in range(kc):
            wino_ker(g.m, g.nd, w + oc + (k0 + c) * wr.sc, wr.rs, wr.cs, 1, dst + c * NR, ts,
                     1, nc)
    else:
        cb = 0
        while cb < kc:
            cn = min(RAW_CB, kc - cb)
            transpose_into(w + oc * wr.ls + (k0 + cb) * wr.sc, wr.ls, nc, cn * wr.sc, wl, NR)
            for c in range(cn):
                wino_ker(g.m, g.nd, wl + c * wr.sc * NR, wr.rs * NR, NR, 1,
                         dst + (cb + c) * NR, ts, 1, nc)
            cb = cb + cn
    if nc < NR:
        for t in range(g.T):
            for c in range(kc):
                for l in range(nc, NR):
                    dst[t * ts + c * NR + l] = 0


cdef int _transform_all(const floating *w, wraw wr, floating *up, wgeom g,
                        int nthreads) except -1 nogil:
    # U[g, t] (Cg x Og) as NR-column panels: element (c, o) at
    # (gi*T + t)*es + (o/NR)*NR*Cg + c*NR + o%NR; one item per (group, panel)
    cdef Py_ssize_t npn = _cdiv(g.Og, g.NR), es = _elem_stride(g.G, g.Cg, g.Og, g.NR)
    cdef Py_ssize_t item, gi, q
    cdef floating *wl = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    with parallel(num_threads=nthreads):
        wl = <floating *> cc_scratch_acquire(4, RAW_CB * 9 * g.NR * sizeof(floating))
        if wl == NULL:
            failed_p[0] = 1
        for item in prange(g.G * npn, schedule="static"):
            gi = item // npn
            q = item % npn
            if wl != NULL:
                _transform_panel_block(w, &wr, &g, gi * g.Og + q * g.NR,
                                       min(g.NR, g.Og - q * g.NR), 0, g.Cg,
                                       up + gi * g.T * es + q * g.NR * g.Cg, es, wl)
        cc_scratch_release(4, wl)
    if failed:
        with gil:
            raise MemoryError("conv (winograd): cannot allocate the weight-transform scratch")
    return 0


def _transform_weights(const floating[:, :, :, :, ::1] w, floating[::1] up, Py_ssize_t G,
                       int m, int nd, bint w_cl, int nthreads):
    _transform_weights_into(w, &up[0], G, m, nd, w_cl, nthreads)


cdef int _transform_weights_into(const floating[:, :, :, :, ::1] w, floating *up,
                                 Py_ssize_t G, int m, int nd, bint w_cl, int nthreads) except -1:
    """Every element of the packed transformed weights, padding included, is written
    (the 16 elements between consecutive t are never read). w_cl: w is
    (kd, kh, kw, Cg, O), else (O, Cg, kd, kh, kw)."""
    cdef wgeom g
    g.G = G
    g.m = m
    g.nd = nd
    g.aw = m + 2
    g.ah = 1 if nd == 1 else m + 2
    g.T = g.ah * g.aw
    if w_cl:
        g.Cg = w.shape[3]
        g.O = w.shape[4]
    else:
        g.O = w.shape[0]
        g.Cg = w.shape[1]
    g.Og = g.O // G
    if floating is float:
        g.MR, g.NR = cconv_mr_f32(), cconv_nr_f32()
    else:
        g.MR, g.NR = cconv_mr_f64(), cconv_nr_f64()
    cdef wraw wr = _raw_strides(tuple([w.shape[i] for i in range(5)]), w_cl, g.Cg, g.O)
    with nogil:
        _transform_all(&w[0, 0, 0, 0, 0], wr, up, g, nthreads)
    return 0


def _empty_aligned64(Py_ssize_t n, dtype):
    """A 1-D array of n elements whose data starts on a cache line (the micro-kernel's
    panel loads then never split a line; NumPy's large arrays start 16 bytes past one)."""
    dtype = np.dtype(dtype)
    raw = np.empty(n * dtype.itemsize + 64, np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + n * dtype.itemsize].view(dtype)


def transform_weights(w5, Py_ssize_t G, int m, int nd, bint channels_last, int nthreads,
                      spare=None):
    """Transformed weights of w5 (the 5-D weight of functional._prepare_weight, in the
    layout given by channels_last) packed for the active ISA path, as a 1-D array of
    w5's dtype. spare: None, or an earlier result no longer used, written over when its
    size, dtype and alignment fit (a repacking layer's pages are then already mapped:
    fresh ones cost a page fault each)."""
    if channels_last:
        Cg, O = w5.shape[3], w5.shape[4]
    else:
        O, Cg = w5.shape[0], w5.shape[1]
    n = packed_weights_size(G, Cg, O // G, m, nd, w5.dtype)
    if (spare is not None and spare.ndim == 1 and spare.size == n
            and spare.dtype == w5.dtype and spare.ctypes.data % 64 == 0):
        up = spare
        up.flags.writeable = True
    else:
        up = _empty_aligned64(n, w5.dtype)
    if up.size:
        _transform_weights(w5, up, G, m, nd, channels_last, nthreads)
    return up


# --------------------------------------------------------------------- tiles

cdef void _tile_origin(const wgeom *g, Py_ssize_t tile, Py_ssize_t *n, Py_ssize_t *ty,
                       Py_ssize_t *tx) noexcept nogil:
    cdef Py_ssize_t per = g.tH * g.tW
    n[0] = tile // per
    ty[0] = (tile % per) // g.tW
    tx[0] = tile % g.tW


cdef void _gather_tile(const floating *xc, const wgeom *g, Py_ssize_t y0, Py_ssize_t x0,
                       floating *d, Py_ssize_t rs, Py_ssize_t cs, Py_ssize_t lanes,
                       Py_ssize_t xrs, Py_ssize_t xcs) noexcept nogil:
    """d(i, j, l) = x(y0 + i, x0 + j, l) for l < lanes, zero outside the input; x(y, x, l)
    at xc[y*xrs + x*xcs + l]."""
    cdef Py_ssize_t i, j, l, yy, xx
    cdef floating *dr
    cdef const floating *sr
    for i in range(g.ah):
        yy = y0 + i
        for j in range(g.aw):
            xx = x0 + j
            dr = d + i * rs + j * cs
            if yy < 0 or yy >= g.H or xx < 0 or xx >= g.W:
                for l in range(lanes):
                    dr[l] = 0
            else:
                sr = xc + yy * xrs + xx * xcs
                for l in range(lanes):
                    dr[l] = sr[l]


# --------------------------------------------------------------------- NHWC

cdef void _input_tiles(const floating *x, const wgeom *g, Py_ssize_t gi, Py_ssize_t t0,
                       Py_ssize_t nb, Py_ssize_t NB, floating *v,
                       floating *dbuf) noexcept nogil:
    """V[t] (tiles x Cg) of tiles t0 .. t0+nb-1, channels as lanes: row li at v + li*Cg."""
    cdef Py_ssize_t Cg = g.Cg, C = g.C, li, n, ty, tx, y0, x0
    cdef const floating *xs
    for li in range(nb):
        _tile_origin(g, t0 + li, &n, &ty, &tx)
        y0 = ty * g.mh - g.ph
        x0 = tx * g.m - g.pw
        xs = x + n * g.H * g.W * C + gi * Cg
        if y0 >= 0 and x0 >= 0 and y0 + g.ah <= g.H and x0 + g.aw <= g.W:
            wino_in(g.m, g.nd, xs + (y0 * g.W + x0) * C, g.W * C, C, v + li * Cg, NB * Cg, Cg)
        else:
            _gather_tile(xs, g, y0, x0, dbuf, g.aw * Cg, Cg, Cg, g.W * C, C)
            wino_in(g.m, g.nd, dbuf, g.aw * Cg, Cg, v + li * Cg, NB * Cg, Cg)


cdef void _output_tiles(const floating *mb, Py_ssize_t ldm, Py_ssize_t NB,
                        const floating *bptr, floating *out, const wgeom *g, Py_ssize_t oc,
                        Py_ssize_t L, Py_ssize_t t0, Py_ssize_t nb,
                        floating *ybuf) noexcept nogil:
    """Output channels oc .. oc+L-1 of tiles t0 .. t0+nb-1 from M (element t of tile li,
    lane l at mb[(t*NB + li)*ldm + l]), as lanes; only outputs inside the image are
    written (partial tiles through ybuf, m*m*L elements)."""
    cdef Py_ssize_t O = g.O, li, n, ty, tx, y0, x0, rows, cols, i, j, l
    cdef floating *dst
    for li in range(nb):
        _tile_origin(g, t0 + li, &n, &ty, &tx)
        y0 = ty * g.mh
        x0 = tx * g.m
        rows = min(g.mh, g.OH - y0)
        cols = min(g.m, g.OW - x0)
        dst = out + ((n * g.OH + y0) * g.OW + x0) * O + oc
        if rows == g.mh and cols == g.m:
            wino_out(g.m, g.nd, mb + li * ldm, NB * ldm, bptr, dst, g.OW * O, O, L)
        else:
            wino_out(g.m, g.nd, mb + li * ldm, NB * ldm, bptr, ybuf, g.m * L, L, L)
            for i in range(rows):
                for j in range(cols):
                    for l in range(L):
                        dst[(i * g.OW + j) * O + l] = ybuf[(i * g.m + j) * L + l]


cdef void _item_nhwc(const floating *x, const floating *up, const floating *bias,
                     floating *out, const wgeom *g, Py_ssize_t gi, Py_ssize_t t0, Py_ssize_t nb,
                     Py_ssize_t o0, Py_ssize_t ob, Py_ssize_t NB, Py_ssize_t OBM,
                     floating *v, floating *mb, floating *dbuf, floating *ybuf,
                     const floating *zeros, const floating **ap) noexcept nogil:
    cdef Py_ssize_t NR = g.NR, MR = g.MR, Cg = g.Cg, T = g.T
    cdef Py_ssize_t ups = _elem_stride(g.G, Cg, g.Og, NR)
    cdef Py_ssize_t t, k0, kc, jp, it, i
    cdef const floating *bw
    cdef const floating *vt
    cdef floating *mt
    # 1. input transform
    _input_tiles(x, g, gi, t0, nb, NB, v, dbuf)
    # 2. per t: M[t] (nb x ob) = V[t] (nb x Cg) . U[t] (Cg x ob), V rows read in place
    for t in range(T):
        vt = v + t * NB * Cg
        mt = mb + t * NB * OBM
        bw = up + (gi * T + t) * ups + o0 * Cg
        k0 = 0
        while k0 < Cg:
            kc = min(g.KC, Cg - k0)
            jp = 0
            while jp * NR < ob:
                it = 0
                while it < nb:
                    for i in range(MR):
                        ap[i] = vt + (it + i) * Cg + k0 if it + i < nb else NULL
                    igemm_tile(kc, ap, bw + jp * NR * Cg + k0 * NR, mt + it * OBM + jp * NR,
                               OBM, min(MR, nb - it), min(NR, ob - jp * NR), k0 > 0)
                    it = it + MR
                jp = jp + 1
            k0 = k0 + kc
    # 3. output transform, output channels as lanes
    _output_tiles(mb, OBM, NB, bias + gi * g.Og + o0 if bias != NULL else zeros, out, g,
                  gi * g.Og + o0, ob, t0, nb, ybuf)


cdef void _item_fused(const floating *x, const floating *w, const wraw *wr,
                      const floating *bias, floating *out, const wgeom *g, Py_ssize_t gi,
                      Py_ssize_t t0, Py_ssize_t nb, Py_ssize_t o0, Py_ssize_t ob,
                      Py_ssize_t NB, floating *v, floating *mb, floating *ub, floating *wl,
                      floating *dbuf, floating *ybuf, const floating *zeros,
                      const floating **ap) noexcept nogil:
    """_item_nhwc with one-shot weights transformed on the fly: one NR-column panel of
    U (all T elements, wr.kc channels at a time, in ub) right before the T products
    that read it, so the transformed weights never leave this thread's cache. Per panel:
    M (T x nb x NR, in mb) accumulated over the channel blocks, then its output tiles.
    Same sums in the same order as _item_nhwc (the micro-kernel's k split is exact):
    bitwise the same result."""
    cdef Py_ssize_t NR = g.NR, MR = g.MR, Cg = g.Cg, T = g.T
    cdef Py_ssize_t t, k0, kc, jp, nc, it, i, oc, us
    cdef const floating *vt
    cdef floating *ut
    _input_tiles(x, g, gi, t0, nb, NB, v, dbuf)
    jp = 0
    while jp * NR < ob:
        nc = min(NR, ob - jp * NR)
        oc = gi * g.Og + o0 + jp * NR
        k0 = 0
        while k0 < Cg:
            kc = min(wr.kc, Cg - k0)
            # U[t] panel (kc x NR) at ub + t*us; us = kc*NR + 16: no multiple of 4 KiB
            us = kc * NR + 16
            _transform_panel_block(w, wr, g, oc, nc, k0, kc, ub, us, wl)
            for t in range(T):
                vt = v + t * NB * Cg + k0
                ut = ub + t * us
                it = 0
                while it < nb:
                    for i in range(MR):
                        ap[i] = vt + (it + i) * Cg if it + i < nb else NULL
                    igemm_tile(kc, ap, ut, mb + (t * NB + it) * NR, NR, min(MR, nb - it), nc,
                               k0 > 0)
                    it = it + MR
            k0 = k0 + kc
        _output_tiles(mb, NR, NB, bias + oc if bias != NULL else zeros + jp * NR, out, g, oc,
                      nc, t0, nb, ybuf)
        jp = jp + 1


# --------------------------------------------------------------------- driver

cdef int _run_items(const floating *x, const floating *up, const floating *w, wraw wr,
                    const floating *bias, floating *out, wgeom g, Py_ssize_t NB,
                    Py_ssize_t nblocks, Py_ssize_t OB, Py_ssize_t nob,
                    int nthreads) except -1 nogil:
    """Every (group, tile block, output block) item, over the threads. up: the transformed
    weights, or NULL with w / wr.kc > 0: the raw weights, transformed per item
    (_item_fused; each item then transforms only its own output channels)."""
    cdef Py_ssize_t vsz, msz, dsz, ysz, usz = 0, total, item, gi, b, ob_i, t0, nb, o0, ob
    cdef floating *buf = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    vsz = g.T * NB * g.Cg
    msz = g.T * NB * (OB if wr.kc == 0 else g.NR)
    if wr.kc:  # U panel block + 16 channels of lanes-innermost raw taps
        usz = g.T * (wr.kc * g.NR + 16) + RAW_CB * 9 * g.NR
    dsz = g.T * g.Cg
    ysz = g.mh * g.m * OB + OB  # partial output tile + zero bias
    total = (vsz + msz + usz + dsz + ysz + 64 + 15) // 16 * 16
    with parallel(num_threads=nthreads):
        # + room for MR row pointers after the floating-point scratch. Only the zero
        # bias is cleared: every other element is written before it is read (V rows
        # < nb, the first channel block of M, all of U and of the tile buffers); a
        # memset of the whole block was 5% of 256@14 (V alone is 0.8 MB there)
        buf = <floating *> cc_scratch_acquire(0, (total + 2 * g.MR + 16) * sizeof(floating))
        if buf == NULL:
            failed_p[0] = 1
        else:
            memset(buf + vsz + msz + usz + dsz + g.mh * g.m * OB, 0, OB * sizeof(floating))
        for item in prange(g.G * nblocks * nob, schedule="static"):
            if buf == NULL:
                continue
            gi = item // (nblocks * nob)
            b = (item // nob) % nblocks
            ob_i = item % nob
            t0 = b * NB
            nb = min(NB, g.NT - t0)
            o0 = ob_i * OB
            ob = min(OB, g.Og - o0)
            if wr.kc:
                _item_fused(x, w, &wr, bias, out, &g, gi, t0, nb, o0, ob, NB, buf, buf + vsz,
                            buf + vsz + msz, buf + vsz + msz + g.T * (wr.kc * g.NR + 16),
                            buf + vsz + msz + usz,
                            buf + vsz + msz + usz + dsz,
                            buf + vsz + msz + usz + dsz + g.mh * g.m * OB,
                            <const floating **> (buf + total))
            else:
                _item_nhwc(x, up, bias, out, &g, gi, t0, nb, o0, ob, NB, OB, buf, buf + vsz,
                           buf + vsz + msz, buf + vsz + msz + dsz,
                           buf + vsz + msz + dsz + g.mh * g.m * OB,
                           <const floating **> (buf + total))
        cc_scratch_release(0, buf)
    if failed:
        with gil:
            raise MemoryError("conv (winograd): cannot allocate the per-thread workspace")
    return 0


# per-thread V + M block budget (bytes): the tile block is sized to stay under it
cdef enum:
    BLOCK_BYTES = 3 * 1024 * 1024


def blocking(Py_ssize_t NT, Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t Og, int T, int itemsize,
             int MR, int NR, int nthreads):
    """(NB, nblocks, OB, nob): tiles per block and output channels per block.

    Every tile block streams all transformed weights (T x Cg x Og per group) once. When
    they outweigh the tiles' own data (many channels, small images: 512 channels at 7x7
    is 38 MB of weights against 1 MB of tiles), blocks grow to hold all tiles and the
    threads split the output channels (each thread then reads only its share of the
    weights and repeats the cheap input transform); otherwise blocks stay within
    BLOCK_BYTES and the threads split the tiles."""
    lane = MR          # tiles per GEMM register tile
    ounit = NR
    per_tile = T * (Cg + Og) * itemsize
    weight_heavy = T * Cg * Og * itemsize > NT * per_tile
    cap = _cdiv(NT, lane) * lane if weight_heavy else 8 * lane
    budget = 4 * BLOCK_BYTES if weight_heavy else BLOCK_BYTES
    nbmax = max(lane, min(cap, budget // max(per_tile, 1) // lane * lane))
    nblocks = _cdiv(NT, nbmax)
    if nthreads > 1 and G * nblocks < 4 * nthreads and not weight_heavy:
        # even split over the threads (a block may then hold a partial register tile)
        per = _cdiv(G * nblocks, nthreads) * nthreads
        nblocks = min(NT, max(nblocks, _cdiv(per, G)))
    NB = _cdiv(NT, nblocks)
    nblocks = _cdiv(NT, NB)
    nob = 1
    if nthreads > 1 and (G * nblocks < nthreads or weight_heavy and G * nblocks < 4 * nthreads):
        nob = min(max(1, _cdiv(nthreads, G * nblocks)) if not weight_heavy else nthreads,
                  _cdiv(Og, ounit))
    OB = _cdiv(_cdiv(Og, nob), ounit) * ounit
    nob = _cdiv(Og, OB)
    return NB, nblocks, OB, nob


cdef wgeom _geom_of(const floating[:, :, :, :, ::1] x, floating[:, :, :, :, ::1] out,
                    tuple pad, Py_ssize_t G, Py_ssize_t O, int m, int nd):
    return _make_geom(tuple([x.shape[i] for i in range(5)]),
                      tuple([out.shape[i] for i in range(5)]), pad, G, O, m, nd,
                      np.float32 if floating is float else np.float64)


cdef const floating *_bias_ptr(object bias, const floating[::1] b):
    return NULL if bias is None else &b[0]


def _run(const floating[:, :, :, :, ::1] x, const floating[::1] up, floating[:, :, :, :, ::1] out,
         object bias, tuple pad, Py_ssize_t G, Py_ssize_t O, int m, int nd, int nthreads):
    cdef const floating[::1] b = bias
    cdef wgeom g = _geom_of(x, out, pad, G, O, m, nd)
    cdef wraw wr
    wr.kc = 0
    NB, nblocks, OB, nob = blocking(g.NT, G, g.Cg, g.Og, g.T, sizeof(floating), g.MR, g.NR,
                                    nthreads)
    _run_items[floating](&x[0, 0, 0, 0, 0], &up[0], NULL, wr, _bias_ptr(bias, b),
                         &out[0, 0, 0, 0, 0], g, NB, nblocks, OB, nob, nthreads)


def conv_forward(x5, w5, bias, out5, stride, pad, dil, groups, channels_last, nthreads,
                 m=4, nd=2, packed=None):
    """Winograd forward convolution into out5 (see functional._forward). `packed`: the
    result of transform_weights for these weights, m, layout and the active ISA path."""
    O = out5.shape[4] if channels_last else out5.shape[1]
    if not channels_last:
        x5 = np.ascontiguousarray(x5)
        if x5.dtype == np.float32:
            _forward_nchw[float](x5, w5, out5, bias, pad, groups, O, m, nd, packed, nthreads)
        else:
            _forward_nchw[double](x5, w5, out5, bias, pad, groups, O, m, nd, packed, nthreads)
    elif packed is not None:
        _run(x5, packed, out5, bias, pad, groups, O, m, nd, nthreads)
    else:
        _forward_transient_any(x5, w5, out5, bias, pad, groups, O, m, nd, True, nthreads)


cdef _forward_nchw(const floating[:, :, :, :, ::1] x5, w5, floating[:, :, :, :, ::1] out5,
                   object bias, tuple pad, Py_ssize_t groups, Py_ssize_t O, int m, int nd,
                   object packed, int nthreads):
    """Channels-first: the channels-last kernel between two transposes, both copies in
    this thread's cached scratch (scratch.h slots 2 and 3: fresh pages for them cost
    more than the transposes)."""
    cdef Py_ssize_t N = x5.shape[0], C = x5.shape[1], D = x5.shape[2], H = x5.shape[3]
    cdef Py_ssize_t W = x5.shape[4], OD = out5.shape[2], OH = out5.shape[3], OW = out5.shape[4]
    cdef size_t xbytes = N * D * H * W * C * sizeof(floating)
    cdef size_t obytes = N * OD * OH * OW * O * sizeof(floating)
    cdef floating *xs
    cdef floating *os
    cdef floating[:, :, :, :, ::1] xh
    cdef floating[:, :, :, :, ::1] oh
    with nogil:
        xs = <floating *> cc_scratch_acquire(2, xbytes)
        os = <floating *> cc_scratch_acquire(3, obytes)
    try:
        if xs == NULL or os == NULL:
            raise MemoryError(f"conv (winograd): cannot allocate {xbytes + obytes} bytes "
                              "for the channels-last copies")
        with nogil:
            transpose_batched(&x5[0, 0, 0, 0, 0], xs, N, C, D * H * W, nthreads)
        xh = <floating[:N, :D, :H, :W, :C]> xs
        oh = <floating[:N, :OD, :OH, :OW, :O]> os
        if packed is not None:
            _run(xh, packed, oh, bias, pad, groups, O, m, nd, nthreads)
        else:
            _forward_transient_any(xh, w5, oh, bias, pad, groups, O, m, nd, False, nthreads)
        with nogil:
            transpose_batched(os, &out5[0, 0, 0, 0, 0], N, OD * OH * OW, O, nthreads)
    finally:
        cc_scratch_release(2, xs)
        cc_scratch_release(3, os)


def _forward_transient_any(x5, w5, out5, bias, pad, groups, O, m, nd, w_cl, nthreads):
    # one-shot weights: transformed into this thread's cached scratch (scratch.h slot 1),
    # not a fresh array: a fresh 10-40 MB block costs a page fault per 4 KiB page, more
    # than the transform itself
    Cg = w5.shape[3] if w_cl else w5.shape[1]
    size = packed_weights_size(groups, Cg, O // groups, m, nd, w5.dtype)
    if w5.dtype == np.float32:
        _forward_transient[float](x5, w5, out5, bias, pad, groups, O, m, nd, w_cl, nthreads,
                                  size)
    else:
        _forward_transient[double](x5, w5, out5, bias, pad, groups, O, m, nd, w_cl, nthreads,
                                   size)


# Fused weight transform (_item_fused): on when every transformed weight would be read
# by one work item only (one tile block per group), where the full transformed-weight
# buffer is pure memory traffic. A module flag so that tests and A/B runs can force
# either path (None/True: on where it applies, False: off).
FUSE_WEIGHTS = None
# bytes of one transformed panel block (T x kc x NR) per thread: L2-resident beside V
cdef enum:
    FUSED_PANEL_BYTES = 160 * 1024


def fuses_weights(Py_ssize_t NB, Py_ssize_t nblocks, Py_ssize_t T, Py_ssize_t Cg,
                  Py_ssize_t O, int itemsize, int NR):
    """Whether a one-shot call transforms its weights inside the work items: only with
    one tile block per group (each transformed weight then has one reader), and only
    where that moves less data than writing and reading the T x Cg x O buffer once: the
    fused items re-read their tiles' V (T x NB x Cg) once per NR-column panel, NB / NR
    of the buffer's traffic per pass (at most half when NB <= NR); or where the buffer
    is too big for the caches anyway (> 8 MiB) while V stays L2-sized (<= 1.5 MiB; 4
    images of 256@14 in F(4x4), V 2.4 MB, full / fused: 6.34 / 6.99 ms at 2 threads
    channels-first, 6.85 / 6.32 at 1 thread channels-last). Measured, 1 thread, ms
    full / fused:
    F(2x2) 256@14 (NB 49) 1.84 / 2.04, 384@14 (NB 49, 9.4 MB) 5.46 / 5.08; F(4x4) 256@14
    (NB 16) 3.11 / 2.51, 512@7 batch 2 8.1 / 5.2."""
    if nblocks != 1:
        return False
    return NB <= NR or (T * Cg * O * itemsize > (8 << 20)
                        and T * NB * Cg * itemsize <= (3 << 19))


cdef _forward_transient(const floating[:, :, :, :, ::1] x5, const floating[:, :, :, :, ::1] w5,
                        floating[:, :, :, :, ::1] out5, object bias, tuple pad,
                        Py_ssize_t groups, Py_ssize_t O, int m, int nd, bint w_cl,
                        int nthreads, Py_ssize_t size):
    cdef floating *up
    cdef floating[::1] upv
    cdef const floating[::1] b = bias
    cdef wgeom g = _geom_of(x5, out5, pad, groups, O, m, nd)
    cdef wraw wr
    NB, nblocks, OB, nob = blocking(g.NT, groups, g.Cg, g.Og, g.T, sizeof(floating), g.MR,
                                    g.NR, nthreads)
    if FUSE_WEIGHTS is not False and fuses_weights(NB, nblocks, g.T, g.Cg, O,
                                                   sizeof(floating), g.NR):
        wr = _raw_strides(tuple([w5.shape[i] for i in range(5)]), w_cl, g.Cg, O)
        wr.kc = min(g.Cg, max(8, FUSED_PANEL_BYTES // (g.T * g.NR * sizeof(floating)) // 8 * 8))
        _run_items[floating](&x5[0, 0, 0, 0, 0], NULL, &w5[0, 0, 0, 0, 0], wr,
                             _bias_ptr(bias, b), &out5[0, 0, 0, 0, 0], g, NB, nblocks, OB,
                             nob, nthreads)
        return
    with nogil:
        up = <floating *> cc_scratch_acquire(1, max(size, 1) * sizeof(floating))
    if up == NULL:
        raise MemoryError(f"conv (winograd): cannot allocate {size * sizeof(floating)} "
                          "bytes for the transformed weights")
    try:
        _transform_weights_into(w5, up, groups, m, nd, w_cl, nthreads)
        upv = <floating[:size]> up
        _run(x5, upv, out5, bias, pad, groups, O, m, nd, nthreads)
    finally:
        cc_scratch_release(1, up)
