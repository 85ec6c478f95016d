"""Winograd F(2x2,3x3) / F(4x4,3x3) convolution (1-D: F(2,3) / F(4,3)) on the GEMM core.

Per group, with alpha = m + 2 and T = alpha*alpha transformed elements (alpha in 1-D):
  1. weights: U[t] = (G g G^T)[t] for every (o, c), computed in float64, rounded once and
     written straight into the GEMM core's packed panel layout (transform_weights; the
     result can be kept and reused, see cconv.winograd_weights).
  2. input tiles (alpha x alpha, overlapping by 2, origin (ty*m - pad_top, tx*m - pad_left);
     reads beyond the input are zeros): V[t] = (B^T d B)[t], one tile block at a time.
  3. per transformed element t, one GEMM: M[t] = U[t] . V[t] over the channels.
  4. output tiles Y = A^T M A + bias; only the outputs inside the image are written.

NCHW: M[t] (O x tiles) = U[t] (O x C, packed MR-row panels) . V[t] (C x tiles); the input
transform runs with tiles as SIMD lanes and writes V[t] straight into NR-column panels;
the output transform also runs over tiles, then scatters each tile into the image.
NHWC: M[t] (tiles x O) = V[t] (tiles x C) . U[t] (C x O, packed NR-column panels); the
transforms run with channels as SIMD lanes (contiguous in this layout), V rows are read in
place by the indirect micro-kernel, and full output tiles are written directly.

Work items are (group, tile block, output-channel block), split over OpenMP threads
(static schedule); every item owns its outputs and every sum runs in a fixed order, so
results are bitwise identical for any thread count and on every ISA path. Workspace:
the transformed weights plus, per thread, one tile block's V and M (bounded by
BLOCK_BYTES), not a multiple of the image size.
"""
cimport cython
from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset
from libc.stdint cimport int64_t

import numpy as np

include "_gemm_core.pxi"

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
                      int m, int nd, bint channels_last, type dtype):
    cdef wgeom g
    if channels_last:
        g.N, _, g.H, g.W, g.C = xshape
        _, _, g.OH, g.OW, _ = oshape
    else:
        g.N, g.C, _, g.H, g.W = xshape
        _, _, _, g.OH, g.OW = oshape
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

def packed_weights_size(Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t Og, int m, int nd,
                        bint channels_last, dtype):
    """Elements of the transformed, packed weights for the active ISA path."""
    MR, NR, _ = tile_shape(dtype)
    T = (m + 2) * (m + 2) if nd == 2 else m + 2
    if channels_last:
        return G * T * _cdiv(Og, NR) * NR * Cg
    return G * T * _cdiv(Og, MR) * MR * Cg


cdef void _weights_nchw(const floating *w, floating *up, wgeom g, int nthreads) noexcept nogil:
    # U[g, t] (Og x Cg) as MR-row panels: element (o, c) at (o/MR)*MR*Cg + c*MR + o%MR
    cdef Py_ssize_t mp = _cdiv(g.Og, g.MR), ps = mp * g.MR * g.Cg
    cdef Py_ssize_t taps = 3 if g.nd == 1 else 9
    cdef Py_ssize_t item, gi, o
    for item in prange(g.G * g.Og, schedule="static", num_threads=nthreads):
        gi = item // g.Og
        o = item % g.Og
        wino_ker(g.m, g.nd, w + item * g.Cg * taps, 3, 1, taps,
                 up + gi * g.T * ps + (o // g.MR) * g.MR * g.Cg + o % g.MR, ps, g.MR, g.Cg)


cdef void _weights_nhwc(const floating *w, floating *up, wgeom g, int nthreads) noexcept nogil:
    # U[g, t] (Cg x Og) as NR-column panels: element (c, o) at (o/NR)*NR*Cg + c*NR + o%NR;
    # w is (kh, kw, Cg, O)
    cdef Py_ssize_t npn = _cdiv(g.Og, g.NR), ps = npn * g.NR * g.Cg
    cdef Py_ssize_t item, gi, c, q
    for item in prange(g.G * g.Cg, schedule="static", num_threads=nthreads):
        gi = item // g.Cg
        c = item % g.Cg
        for q in range(npn):
            wino_ker(g.m, g.nd, w + c * g.O + gi * g.Og + q * g.NR, 3 * g.Cg * g.O, g.Cg * g.O,
                     1, up + gi * g.T * ps + q * g.NR * g.Cg + c * g.NR, ps, 1,
                     min(g.NR, g.Og - q * g.NR))


def _transform_weights(const floating[:, :, :, :, ::1] w, floating[::1] up, Py_ssize_t G,
                       int m, int nd, bint channels_last, int nthreads):
    cdef wgeom g
    g.G = G
    g.m = m
    g.nd = nd
    g.aw = m + 2
    g.ah = 1 if nd == 1 else m + 2
    g.T = g.ah * g.aw
    if channels_last:
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
    with nogil:
        if channels_last:
            _weights_nhwc[floating](&w[0, 0, 0, 0, 0], &up[0], g, nthreads)
        else:
            _weights_nchw[floating](&w[0, 0, 0, 0, 0], &up[0], g, nthreads)


def transform_weights(w5, Py_ssize_t G, int m, int nd, bint channels_last, int nthreads):
    """Transformed weights of w5 (the 5-D weight of functional._prepare_weight) in the
    packed panel layout of the active ISA path, as a 1-D array of w5's dtype."""
    if channels_last:
        Cg, O = w5.shape[3], w5.shape[4]
    else:
        O, Cg = w5.shape[0], w5.shape[1]
    up = np.zeros(packed_weights_size(G, Cg, O // G, m, nd, channels_last, w5.dtype),
                  dtype=w5.dtype)
    if up.size:
        _transform_weights(w5, up, G, m, nd, channels_last, nthreads)
    return up


# --------------------------------------------------------------------- NCHW

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


cdef void _item_nchw(const floating *x, const floating *up, const floating *bias,
                     floating *out, const wgeom *g, Py_ssize_t gi, Py_ssize_t t0, Py_ssize_t nb,
                     Py_ssize_t o0, Py_ssize_t ob, Py_ssize_t NBP, Py_ssize_t OBM,
                     floating *vp, floating *mb, floating *dbuf, floating *ybuf,
                     floating *bbuf) noexcept nogil:
    cdef Py_ssize_t NR = g.NR, MR = g.MR, Cg = g.Cg, T = g.T, HW = g.H * g.W
    cdef Py_ssize_t mp = _cdiv(g.Og, MR), ups = mp * MR * Cg
    cdef Py_ssize_t npan = _cdiv(nb, NR), q, l, li, c, t, k0, kc, o, i, j
    cdef Py_ssize_t n, ty, tx, y0, x0, rows, cols, MM = g.mh * g.m
    cdef const floating *xc
    cdef floating *dst
    cdef floating bv
    cdef bint inside
    # 1. input transform, tiles as lanes, written into NR-column panels of V[t] (C x tiles)
    for q in range(npan):
        for c in range(Cg):
            for l in range(NR):
                li = q * NR + l
                if li >= nb:
                    for i in range(T):
                        dbuf[i * NR + l] = 0
                    continue
                _tile_origin(g, t0 + li, &n, &ty, &tx)
                y0 = ty * g.mh - g.ph
                x0 = tx * g.m - g.pw
                xc = x + ((n * g.C) + gi * Cg + c) * HW
                inside = y0 >= 0 and x0 >= 0 and y0 + g.ah <= g.H and x0 + g.aw <= g.W
                if inside:
                    xc = xc + y0 * g.W + x0
                    for i in range(g.ah):
                        for j in range(g.aw):
                            dbuf[(i * g.aw + j) * NR + l] = xc[i * g.W + j]
                else:
                    _gather_tile(xc, g, y0, x0, dbuf + l, g.aw * NR, NR, 1, g.W, 1)
            wino_in(g.m, g.nd, dbuf, g.aw * NR, NR, vp + q * Cg * NR + c * NR, Cg * NBP, NR)
    # 2. one GEMM per transformed element: M[t] (ob x nb) = U[t] . V[t]
    for t in range(T):
        k0 = 0
        while k0 < Cg:
            kc = min(g.KC, Cg - k0)
            gemm_macro(ob, nb, kc, up + (gi * T + t) * ups + o0 * Cg + k0 * MR, MR * Cg,
                       vp + t * Cg * NBP + k0 * NR, Cg * NR, mb + t * OBM * NBP, NBP, k0 > 0)
            k0 = k0 + kc
    # 3. output transform over the tiles of each output channel, then scatter
    for o in range(ob):
        bv = bias[gi * g.Og + o0 + o] if bias != NULL else 0
        for l in range(nb):
            bbuf[l] = bv
        wino_out(g.m, g.nd, mb + o * NBP, OBM * NBP, bbuf, ybuf, g.m * NBP, NBP, nb)
        for li in range(nb):
            _tile_origin(g, t0 + li, &n, &ty, &tx)
            y0 = ty * g.mh
            x0 = tx * g.m
            rows = min(g.mh, g.OH - y0)
            cols = min(g.m, g.OW - x0)
            dst = out + ((n * g.O + gi * g.Og + o0 + o) * g.OH + y0) * g.OW + x0
            for i in range(rows):
                for j in range(cols):
                    dst[i * g.OW + j] = ybuf[(i * g.m + j) * NBP + li]


# --------------------------------------------------------------------- NHWC

cdef void _item_nhwc(const floating *x, const floating *up, const floating *bias,
                     floating *out, const wgeom *g, Py_ssize_t gi, Py_ssize_t t0, Py_ssize_t nb,
                     Py_ssize_t o0, Py_ssize_t ob, Py_ssize_t NB, Py_ssize_t OBM,
                     floating *v, floating *mb, floating *dbuf, floating *ybuf,
                     const floating *zeros, const floating **ap) noexcept nogil:
    cdef Py_ssize_t NR = g.NR, MR = g.MR, Cg = g.Cg, T = g.T, C = g.C, O = g.O
    cdef Py_ssize_t npn = _cdiv(g.Og, NR), ups = npn * NR * Cg
    cdef Py_ssize_t li, t, k0, kc, jp, it, i, j, n, ty, tx, y0, x0, rows, cols
    cdef const floating *xs
    cdef const floating *bw
    cdef const floating *bptr
    cdef const floating *vt
    cdef floating *mt
    cdef floating *dst
    # 1. input transform, channels as lanes: V[t] (tiles x Cg), row li at v + li*Cg
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
    bptr = bias + gi * g.Og + o0 if bias != NULL else zeros
    for li in range(nb):
        _tile_origin(g, t0 + li, &n, &ty, &tx)
        y0 = ty * g.mh
        x0 = tx * g.m
        rows = min(g.mh, g.OH - y0)
        cols = min(g.m, g.OW - x0)
        dst = out + ((n * g.OH + y0) * g.OW + x0) * O + gi * g.Og + o0
        if rows == g.mh and cols == g.m:
            wino_out(g.m, g.nd, mb + li * OBM, NB * OBM, bptr, dst, g.OW * O, O, ob)
        else:
            wino_out(g.m, g.nd, mb + li * OBM, NB * OBM, bptr, ybuf, g.m * ob, ob, ob)
            for i in range(rows):
                for j in range(cols):
                    for it in range(ob):
                        dst[(i * g.OW + j) * O + it] = ybuf[(i * g.m + j) * ob + it]


# --------------------------------------------------------------------- driver

cdef int _run_items(const floating *x, const floating *up, const floating *bias,
                    floating *out, wgeom g, bint channels_last, Py_ssize_t NB,
                    Py_ssize_t nblocks, Py_ssize_t OB, Py_ssize_t nob,
                    int nthreads) except -1 nogil:
    cdef Py_ssize_t NBP = _cdiv(NB, g.NR) * g.NR
    cdef Py_ssize_t vsz, msz, dsz, ysz, total, item, gi, b, ob_i, t0, nb, o0, ob
    cdef floating *buf
    cdef int failed = 0
    cdef int *failed_p = &failed
    if channels_last:
        vsz = g.T * NB * g.Cg
        msz = g.T * NB * OB
        dsz = g.T * g.Cg
        ysz = g.mh * g.m * OB + OB  # partial output tile + zero bias
    else:
        vsz = g.T * g.Cg * NBP
        msz = g.T * OB * NBP
        dsz = g.T * g.NR
        ysz = g.mh * g.m * NBP + NBP  # output tiles + bias lanes
    total = (vsz + msz + dsz + ysz + 64 + 15) // 16 * 16
    with parallel(num_threads=nthreads):
        # + room for MR row pointers (NHWC) after the floating-point scratch
        # zeroed per call, as calloc did, but without calloc's fresh pages (scratch.h)
        buf = <floating *> cc_scratch_acquire(0, (total + 2 * g.MR + 16) * sizeof(floating))
        if buf == NULL:
            failed_p[0] = 1
        else:
            memset(buf, 0, (total + 2 * g.MR + 16) * sizeof(floating))
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
            if channels_last:
                _item_nhwc(x, up, bias, out, &g, gi, t0, nb, o0, ob, NB, OB, buf, buf + vsz,
                           buf + vsz + msz, buf + vsz + msz + dsz,
                           buf + vsz + msz + dsz + g.mh * g.m * OB,
                           <const floating **> (buf + total))
            else:
                _item_nchw(x, up, bias, out, &g, gi, t0, nb, o0, ob, NBP, OB, buf, buf + vsz,
                           buf + vsz + msz, buf + vsz + msz + dsz,
                           buf + vsz + msz + dsz + g.mh * g.m * NBP)
        cc_scratch_release(0, buf)
    if failed:
        with gil:
            raise MemoryError("conv (winograd): cannot allocate the per-thread workspace")
    return 0


# per-thread V + M block budget (bytes): the tile block is sized to stay under it
cdef enum:
    BLOCK_BYTES = 3 * 1024 * 1024


def blocking(Py_ssize_t NT, Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t Og, int T, int itemsize,
             bint channels_last, int MR, int NR, int nthreads):
    """(NB, nblocks, OB, nob): tiles per block and output channels per block."""
    lane = MR if channels_last else NR          # tiles per GEMM register tile
    ounit = NR if channels_last else MR
    per_tile = T * (Cg + Og) * itemsize
    nbmax = max(lane, min(8 * lane if channels_last else 4 * lane,
                          BLOCK_BYTES // max(per_tile, 1) // lane * lane))
    nblocks = _cdiv(NT, nbmax)
    if nthreads > 1 and G * nblocks < 4 * nthreads:
        # even split over the threads (a block may then hold a partial register tile)
        per = _cdiv(G * nblocks, nthreads) * nthreads
        nblocks = min(NT, max(nblocks, _cdiv(per, G)))
    NB = _cdiv(NT, nblocks)
    nblocks = _cdiv(NT, NB)
    nob = 1
    if nthreads > 1 and G * nblocks < nthreads:
        nob = min(_cdiv(nthreads, G * nblocks), _cdiv(Og, ounit))
    OB = _cdiv(_cdiv(Og, nob), ounit) * ounit
    nob = _cdiv(Og, OB)
    return NB, nblocks, OB, nob


def _run(const floating[:, :, :, :, ::1] x, const floating[::1] up, floating[:, :, :, :, ::1] out,
         object bias, tuple pad, Py_ssize_t G, Py_ssize_t O, int m, int nd,
         bint channels_last, int nthreads):
    cdef const floating[::1] b
    cdef const floating *bp = NULL
    cdef wgeom g
    if bias is not None:
        b = bias
        bp = &b[0]
    g = _make_geom(tuple([x.shape[i] for i in range(5)]), tuple([out.shape[i] for i in range(5)]), pad, G, O, m, nd, channels_last,
                   np.float32 if floating is float else np.float64)
    NB, nblocks, OB, nob = blocking(g.NT, G, g.Cg, g.Og, g.T, sizeof(floating), channels_last,
                                    g.MR, g.NR, nthreads)
    _run_items[floating](&x[0, 0, 0, 0, 0], &up[0], bp, &out[0, 0, 0, 0, 0], g, channels_last,
                         NB, nblocks, OB, nob, nthreads)


def conv_forward(x5, w5, bias, out5, stride, pad, dil, groups, channels_last, nthreads,
                 m=4, nd=2, packed=None):
    """Winograd forward convolution into out5 (see functional._forward). `packed`: the
    result of transform_weights for these weights, m, layout and the active ISA path."""
    O = out5.shape[4] if channels_last else out5.shape[1]
    if packed is None:
        packed = transform_weights(w5, groups, m, nd, channels_last, nthreads)
    _run(x5, packed, out5, bias, pad, groups, O, m, nd, channels_last, nthreads)
