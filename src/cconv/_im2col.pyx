"""Implicit-GEMM ("im2col") convolution on the packed GEMM core.

NCHW: out[n, g] (Og x P) = W_g (Og x K) . cols (K x P); W_g is packed once into MR-row
panels, cols are packed KC x NC at a time straight from the input (pack.c).
NHWC: out[n] (P x Og per group) = cols (P x K) . W_g (K x Og); W_g is packed once into
NR-column panels, cols are packed MC x KC at a time straight from the input.

Workspace: the packed weights (about the size of the weights) plus, per thread, one
KC x NC (NCHW) or MC x KC (NHWC) panel block: a constant, not a multiple of N*H*W.
Work is split over (image, group, row block, column block) items; the K loop inside an
item always runs in KC steps in order, so results do not depend on the thread count.
"""
cimport cython
from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.stdint cimport int64_t

import numpy as np

from . import _core

include "_gemm_core.pxi"

cdef extern from "scratch.h" nogil:
    void *cc_scratch_acquire(int slot, size_t nbytes)
    void cc_scratch_release(int slot, void *p)
    void *cc_scratch_alloc64(size_t nbytes)

include "_pack.pxi"

cdef extern from "pwfew.h" nogil:
    void cconv_pwfew_f32(const float *x, cc_idx P, cc_idx C, const float *w, cc_idx O,
                         float *out, cc_idx ldo)
    void cconv_pwfew_f64(const double *x, cc_idx P, cc_idx C, const double *w, cc_idx O,
                         double *out, cc_idx ldo)

cdef extern from "unpack.h" nogil:
    void cconv_unpack_tile_nchw_f32(const float *ct, cc_idx ldc, cc_idx npix, cc_idx nc,
                                    const float *bias, float *dst, cc_idx ldd)
    void cconv_unpack_tile_nchw_f64(const double *ct, cc_idx ldc, cc_idx npix, cc_idx nc,
                                    const double *bias, double *dst, cc_idx ldd)


# --------------------------------------------------------------------- typed wrappers

cdef inline void pack_rows(const floating *base, const cc_idx *offs, cc_idx kc, cc_idx j0,
                           cc_idx nc, int nr, cc_idx ps, floating *bp) noexcept nogil:
    if floating is float:
        cconv_pack_b_rows_f32(base, offs, kc, j0, nc, nr, ps, bp)
    else:
        cconv_pack_b_rows_f64(base, offs, kc, j0, nc, nr, ps, bp)


cdef inline void pack_cols_nchw(const cc_conv_geom *g, const floating *x, cc_idx k0, cc_idx kc,
                                cc_idx p0, cc_idx nc, int nr, cc_idx ps,
                                floating *bp) noexcept nogil:
    if floating is float:
        cconv_pack_b_im2col_nchw_f32(g, x, k0, kc, p0, nc, nr, ps, bp)
    else:
        cconv_pack_b_im2col_nchw_f64(g, x, k0, kc, p0, nc, nr, ps, bp)


def tile_shape(dtype):
    """(MR, NR, KC) of the active ISA path for float32 or float64."""
    if np.dtype(dtype) == np.float32:
        return cconv_mr_f32(), cconv_nr_f32(), CCONV_KC_F32
    return cconv_mr_f64(), cconv_nr_f64(), CCONV_KC_F64


# --------------------------------------------------------------------- blocking

cdef inline Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b  # a >= 0, b >= 1 (cdivision is on: no Python floor semantics)


def _split(Py_ssize_t n, Py_ssize_t target, Py_ssize_t unit):
    """Block size (a multiple of unit, about target) and block count covering n >= 1."""
    cdef Py_ssize_t nb = _cdiv(n, max(target, 1))
    cdef Py_ssize_t bs = _cdiv(_cdiv(n, nb), unit) * unit
    return bs, _cdiv(n, bs)


def _blocking(Py_ssize_t batch, Py_ssize_t wdim, Py_ssize_t pdim, Py_ssize_t wunit,
              Py_ssize_t punit, Py_ssize_t wtarget, Py_ssize_t ptarget, int nthreads):
    """Blocks over the weight dimension (wdim: O per group) and the pixel dimension
    (pdim), so that batch * blocks spreads evenly over nthreads (more, smaller pixel
    blocks first; then weight blocks). Thread count only changes how the output is
    tiled, never the order of a sum, so results stay bitwise identical."""
    cdef Py_ssize_t wb, nwb, pb, npb, t
    wb, nwb = _split(wdim, wtarget, wunit)
    pb, npb = _split(pdim, ptarget, punit)
    if nthreads <= 1 or batch * nwb * npb >= 8 * nthreads:
        return wb, nwb, pb, npb
    # Try finer pixel blocks, then finer weight blocks, until the item count divides
    # evenly over the threads (each loop is bounded by the dimension size).
    t = npb
    while (batch * nwb * npb) % nthreads and pb > punit and t < pdim:
        t += 1
        pb, npb = _split(pdim, _cdiv(pdim, t), punit)
    t = nwb
    while (batch * nwb * npb) % nthreads and wb > wunit and t < wdim:
        t += 1
        wb, nwb = _split(wdim, _cdiv(wdim, t), wunit)
    return wb, nwb, pb, npb


# --------------------------------------------------------------------- drivers
#
# Two ways to split the work over threads, chosen per problem in _run:
#   "private": items are blocks of output pixels; each thread packs its own block of
#       cols and runs every weight row/column against it (no pack is done twice).
#   "shared": too few pixel blocks to keep the threads busy (a small image, batch 1):
#       all threads pack the whole cols matrix of one image together, then split the
#       weight dimension. Workspace K x P, used only while it stays under SHARED_MAX.
# The K loop always runs in KC steps in order, so the split never changes a sum.

cdef enum:
    # channels-last 1x1 problems with at most this many input channels run as one plain
    # GEMM (_run)
    PW_GEMM_MAX_K = 128
    PWFEW_ROWS = 512      # pixels per block of the few-output 1x1 kernel (pwfew.h)
    # ... and its output limits per dtype (float64 with 4-8 outputs: 1.16-1.42x the
    # GEMM's time at 17-1024 channels; float32 up to 8: 0.23-1.0x)
    PWFEW_MAX_O_F32 = 8
    PWFEW_MAX_O_F64 = 3
    PW_GROUP_ROWS = 256   # pixels per block of the grouped 1x1 GEMMs
    PW_GROUPS_MAX_CG = 16  # ... for fewer channels per group (16 with Og >= 32)
    SHARED_MAX_BYTES = 32 * 1024 * 1024
    MC_ROWS = 240      # weight rows per macro-kernel call (NCHW), rounded to a multiple of MR
    NC_COLS = 512      # weight columns per macro-kernel call (NHWC), rounded to NR
    # channels-last with at least this many channels per group reads A rows in place
    # (indirect micro-kernel) instead of packing them: the transposing pack of a few
    # channels per pixel costs more than the product.
    INDIRECT_MIN_CHANNELS = 16


cdef extern from "eltwise.h" nogil:
    int cconv_all_finite_f32(const float *x, int64_t n)
    int cconv_all_finite_f64(const double *x, int64_t n)

# Channels-last indirect convolutions skip the taps that read only zero padding in a
# whole MR-pixel tile (_indirect_tiles) where that saves at least a tenth of the tile
# work (skip_exec_fraction <= SKIP_PAD_MAX_EXEC) and the weights are finite (one pass
# over them per call: a NaN/Inf weight times the padding must still give NaN). Problems
# with less than SKIP_PAD_MIN_FRACTION of their (output position, tap) pairs in the
# padding (pad_fraction) are not even counted: most 3x3 layers. Module-level so that
# tests can force skipping on (0 and 1) or off (a fraction above 1).
SKIP_PAD_MIN_FRACTION = 0.1
SKIP_PAD_MAX_EXEC = 0.9
# tests only: None (tiles end at output rows where skip_exec_fraction counts fewer
# calls that way), or True / False to force it
SKIP_PAD_ROW_TILES = None
# tests only: skip without looking at the weights, so that a non-finite weight shows
# which taps a tile skipped
SKIP_PAD_ASSUME_FINITE = False
# (output pixels, taps) pairs counted per problem at most (a prefix of the batch)
cdef Py_ssize_t _EXEC_COUNT_MAX = 1 << 22
_EXEC_CACHE = {}


cdef double _dim_valid(Py_ssize_t n, Py_ssize_t on, Py_ssize_t k, Py_ssize_t s, Py_ssize_t d,
                       Py_ssize_t p) noexcept nogil:
    # (output, tap) pairs of one dimension that read a real input position
    cdef Py_ssize_t kk, off, lo, hi, cnt = 0
    for kk in range(k):
        off = kk * d - p
        lo = 0 if off >= 0 else (-off + s - 1) // s
        hi = min(on, (n - 1 - off) // s + 1) if n - 1 - off >= 0 else 0
        if hi > lo:
            cnt = cnt + hi - lo
    return cnt


cdef double _pad_fraction(const cc_conv_geom *g) noexcept nogil:
    cdef double v = (_dim_valid(g.D, g.OD, g.KD, g.sd, g.dd, g.pd) / (g.OD * g.KD)
                     * _dim_valid(g.H, g.OH, g.KH, g.sh, g.dh, g.ph) / (g.OH * g.KH)
                     * _dim_valid(g.W, g.OW, g.KW, g.sw, g.dw, g.pw) / (g.OW * g.KW))
    return 1.0 - v


def all_finite(floating[::1] a, int nthreads=1):
    """Whether no element of a is NaN or Inf (the check behind skipping padding taps)."""
    if a.shape[0] == 0:
        return True
    return _all_finite(&a[0], a.shape[0], nthreads)


def pad_fraction(tuple isp, tuple osp, tuple ksp, tuple stride, tuple pad, tuple dil):
    """Fraction of (output position, tap) pairs of a problem that read the zero padding
    (3-D sizes; pad: the padding before each dim)."""
    cdef cc_conv_geom g = _geom(isp, ksp, osp, 1, 1, stride, pad, dil)
    return _pad_fraction(&g)


cdef Py_ssize_t _tile_tap_runs(const cc_conv_geom *g, Py_ssize_t rows, int MR,
                               Py_ssize_t row) noexcept nogil:
    # (tile, tap) pairs over output pixels [0, rows) of the batch (tiles from pixel 0 of
    # MR pixels, ending at output rows of `row` pixels too when row > 0) in which some
    # pixel reads a real input position
    cdef Py_ssize_t P = g.OD * g.OH * g.OW
    cdef Py_ssize_t q = 0, i, m, kd, kh, kw, p, od, oh, ow, run = 0
    cdef Py_ssize_t pd[64]
    cdef Py_ssize_t ph[64]
    cdef Py_ssize_t pw[64]
    cdef bint hit
    while q < rows:
        m = min(MR, rows - q)
        if row > 0:
            m = min(m, row - q % row)
        for i in range(m):
            p = (q + i) % P
            pd[i] = (p // (g.OH * g.OW)) * g.sd - g.pd
            ph[i] = ((p // g.OW) % g.OH) * g.sh - g.ph
            pw[i] = (p % g.OW) * g.sw - g.pw
        for kd in range(g.KD):
            for kh in range(g.KH):
                for kw in range(g.KW):
                    hit = False
                    for i in range(m):
                        od = pd[i] + kd * g.dd
                        oh = ph[i] + kh * g.dh
                        ow = pw[i] + kw * g.dw
                        if (od >= 0 and od < g.D and oh >= 0 and oh < g.H
                                and ow >= 0 and ow < g.W):
                            hit = True
                            break
                    if hit:
                        run = run + 1
        q = q + m
    return run


cdef double _tile_exec_fraction(const cc_conv_geom *g, Py_ssize_t N, int MR,
                                int *aligned) noexcept nogil:
    # Share of the tile work left after skipping, in MR-pixel tile calls against the
    # unskipped count (tiles from pixel 0, as _indirect_tiles sees them), with the better
    # of the plain tiles and tiles that also end at output rows (aligned[0] = 1: more,
    # shorter tiles, each a full kernel call). Counted on a prefix of the batch of at
    # most _EXEC_COUNT_MAX (pixel, tap) pairs (whole images when possible).
    cdef Py_ssize_t P = g.OD * g.OH * g.OW, taps = g.KD * g.KH * g.KW
    cdef Py_ssize_t rows = N * P, plain, rowed
    aligned[0] = 0
    if MR > 64 or P == 0 or taps == 0:
        return 1.0
    if rows * taps > _EXEC_COUNT_MAX:
        rows = max(P, _EXEC_COUNT_MAX // (taps * P) * P)
        rows = min(rows, N * P)
    plain = _tile_tap_runs(g, rows, MR, 0)
    rowed = _tile_tap_runs(g, rows, MR, g.OW)
    if rowed < plain:
        aligned[0] = 1
        plain = rowed
    return plain / <double> (((rows + MR - 1) // MR) * taps)


cdef double _skip_exec(const cc_conv_geom *g, Py_ssize_t N, int MR, int *aligned=NULL):
    """_tile_exec_fraction, 1.0 below SKIP_PAD_MIN_FRACTION of padding; cached."""
    cdef int al = 0
    cdef double f
    if aligned != NULL:
        aligned[0] = 0
    if _pad_fraction(g) < SKIP_PAD_MIN_FRACTION:
        return 1.0
    key = (g.D, g.H, g.W, g.OD, g.OH, g.OW, g.KD, g.KH, g.KW, g.sd, g.sh, g.sw,
           g.dd, g.dh, g.dw, g.pd, g.ph, g.pw, N, MR)
    v = _EXEC_CACHE.get(key)
    if v is None:
        if len(_EXEC_CACHE) >= 1024:
            _EXEC_CACHE.clear()
        with nogil:
            f = _tile_exec_fraction(g, N, MR, &al)
        _EXEC_CACHE[key] = v = (f, al)
    if aligned != NULL:
        aligned[0] = v[1]
    return v[0]


def skip_exec_fraction(tuple isp, tuple osp, tuple ksp, tuple stride, tuple pad,
                       tuple dil, Py_ssize_t N, dtype, bint with_rows=False):
    """Share of the channels-last indirect kernel's tile work left after skipping the
    taps that read only padding (1.0 when it would not skip), 3-D sizes, for the active
    ISA's MR; with_rows: (share, whether the tiles end at output rows)."""
    cdef cc_conv_geom g = _geom(isp, ksp, osp, 1, 1, stride, pad, dil)
    cdef int aligned = 0
    cdef double f = _skip_exec(&g, N, tile_shape(dtype)[0], &aligned)
    return (f, bool(aligned)) if with_rows else f


cdef bint _all_finite(const floating *w, Py_ssize_t n, int nthreads) noexcept nogil:
    cdef Py_ssize_t nb = 8 * (nthreads if nthreads > 1 else 1), chunk = (n + nb - 1) // nb
    cdef Py_ssize_t b
    cdef int bad = 0
    for b in prange(nb, schedule="static", num_threads=nthreads):
        if b * chunk < n:
            if floating is float:
                if not cconv_all_finite_f32(w + b * chunk, min(chunk, n - b * chunk)):
                    bad += 1
            else:
                if not cconv_all_finite_f64(w + b * chunk, min(chunk, n - b * chunk)):
                    bad += 1
    return bad == 0


cdef floating *_pack_weights_nchw(const floating *w, Py_ssize_t G, Py_ssize_t Og,
                                  Py_ssize_t K, int MR, int nthreads) noexcept nogil:
    """W_g (Og x K, row-major) of every group into MR-row panels holding all of K (panel
    pi of group g at (g * mp + pi) * MR * K, element (i, k) at [k * MR + i]). With MR =
    NR these are the pixel rows' B panels (W_g^T in NR-column panels)."""
    cdef Py_ssize_t mp = (Og + MR - 1) // MR
    # one-shot weights: this thread's cached, 64-byte aligned scratch (scratch.h slot 1)
    # instead of fresh pages on every call (measured ~1 ms for 512 x 512 x 3 x 3)
    cdef floating *wp = <floating *> cc_scratch_acquire(1, G * mp * MR * K * sizeof(floating))
    if wp != NULL:
        _pack_weights_nchw_into(w, G, Og, K, MR, wp, nthreads)
    return wp


cdef void _pack_weights_nchw_into(const floating *w, Py_ssize_t G, Py_ssize_t Og,
                                  Py_ssize_t K, int MR, floating *wp,
                                  int nthreads) noexcept nogil:
    """_pack_weights_nchw's panels at wp (G * ceil(Og / MR) * MR * K elements)."""
    cdef Py_ssize_t mp = (Og + MR - 1) // MR, t, g, pi
    for t in prange(G * mp, schedule="static", num_threads=nthreads):
        g = t // mp
        pi = t % mp
        pack_rows_to_panels(MR, min(MR, Og - pi * MR), K, w + (g * Og + pi * MR) * K, K,
                            wp + t * MR * K)


cdef void _pack_weights_nhwc_into(const floating *w, Py_ssize_t G, Py_ssize_t Og,
                                  Py_ssize_t K, int NR, floating *wp,
                                  int nthreads) noexcept nogil:
    """W_g (K x Og, row stride G * Og) of every group into NR-column panels holding all
    of K (G * ceil(Og / NR) * NR * K elements at wp)."""
    cdef Py_ssize_t npn = (Og + NR - 1) // NR, t, g, k0
    # row blocks, each read sequentially across all groups and panels
    cdef Py_ssize_t kb = 64, nkb = (K + kb - 1) // kb
    for t in prange(nkb, schedule="static", num_threads=nthreads):
        k0 = t * kb
        for g in range(G):
            pack_b_rows_to_panels(k0, min(K, k0 + kb), Og, w + g * Og, G * Og,
                                  wp + g * npn * NR * K, K)


cdef floating *_pack_weights_nhwc(const floating *w, Py_ssize_t G, Py_ssize_t Og,
                                  Py_ssize_t K, int NR, int nthreads) noexcept nogil:
    """_pack_weights_nhwc_into this thread's cached scratch (slot 1); NULL when it
    cannot be allocated."""
    cdef Py_ssize_t npn = (Og + NR - 1) // NR
    cdef floating *wp = <floating *> cc_scratch_acquire(1, G * npn * NR * K * sizeof(floating))
    if wp != NULL:
        _pack_weights_nhwc_into(w, G, Og, K, NR, wp, nthreads)
    return wp


cdef void _bias_rows(floating *out, Py_ssize_t ldc, const floating *b, Py_ssize_t m,
                     Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(m):
        for j in range(n):
            out[i * ldc + j] += b[i]


cdef void _bias_cols(floating *out, Py_ssize_t ldc, const floating *b, Py_ssize_t m,
                     Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(m):
        for j in range(n):
            out[i * ldc + j] += b[j]


cdef int _nchw(const floating *x, const floating *w, const floating *wpre, const floating *bias, floating *out,
               cc_conv_geom geom, Py_ssize_t N, Py_ssize_t G, Py_ssize_t O,
               bint shared, Py_ssize_t NC, Py_ssize_t nnb, Py_ssize_t MC, Py_ssize_t nmb,
               int MR, int NR, Py_ssize_t KC, int nthreads) except -1 nogil:
    # out[n, g] (Og x P) = W_g (Og x K) . cols (K x P)
    cdef Py_ssize_t Cg = geom.C, Og = O // G
    cdef Py_ssize_t K = Cg * geom.KD * geom.KH * geom.KW
    cdef Py_ssize_t P = geom.OD * geom.OH * geom.OW
    cdef Py_ssize_t DHW = geom.D * geom.H * geom.W
    cdef Py_ssize_t mp = (Og + MR - 1) // MR
    cdef Py_ssize_t ncp = (NC + NR - 1) // NR * NR
    cdef Py_ssize_t item, ng, n, g, jb, ib, i0, j0, mc, nc, k0, kc, t
    cdef floating *bbuf
    cdef floating *cols
    cdef const floating *xg
    cdef const floating *wg
    cdef floating *og
    cdef int failed = 0
    cdef int *failed_p = &failed
    cdef floating *wp = <floating *> wpre if wpre != NULL else _pack_weights_nchw(w, G, Og, K, MR, nthreads)
    if wp == NULL:
        with gil:
            raise MemoryError("conv (im2col): cannot allocate the packed weights")
    if not shared:
        with parallel(num_threads=nthreads):
            bbuf = <floating *> cc_scratch_acquire(0, KC * ncp * sizeof(floating))
            if bbuf == NULL:
                failed_p[0] = 1  # through a pointer: a plain assignment is thread-private
            for item in prange(N * G * nnb, schedule="static"):
                if bbuf == NULL:
                    continue
                n = item // (G * nnb)
                g = (item // nnb) % G
                j0 = (item % nnb) * NC
                nc = min(NC, P - j0)
                xg = x + (n * G + g) * Cg * DHW
                og = out + (n * O + g * Og) * P + j0
                wg = wp + g * mp * MR * K
                k0 = 0
                while k0 < K:
                    kc = min(KC, K - k0)
                    pack_cols_nchw(&geom, xg, k0, kc, j0, nc, NR, kc * NR, bbuf)
                    i0 = 0
                    while i0 < Og:
                        mc = min(MC, Og - i0)
                        gemm_macro(mc, nc, kc, wg + i0 * K + k0 * MR, MR * K, bbuf, kc * NR,
                                   og + i0 * P, P, k0 > 0)
                        i0 = i0 + mc
                    k0 = k0 + kc
                if bias != NULL:
                    _bias_rows(og, P, bias + g * Og, Og, nc)
            cc_scratch_release(0, bbuf)
    else:
        cols = <floating *> cc_scratch_alloc64(K * ((P + NR - 1) // NR) * NR * sizeof(floating) + 64)
        if cols == NULL:
            failed = 1
        for ng in range(N * G if cols != NULL else 0):
            n = ng // G
            g = ng % G
            xg = x + ng * Cg * DHW
            og = out + (n * O + g * Og) * P
            wg = wp + g * mp * MR * K
            for t in prange((K + KC - 1) // KC, schedule="static", num_threads=nthreads):
                pack_cols_nchw(&geom, xg, t * KC, min(KC, K - t * KC), 0, P, NR, K * NR,
                               cols + t * KC * NR)
            for ib in prange(nmb, schedule="static", num_threads=nthreads):
                i0 = ib * MC
                mc = min(MC, Og - i0)
                k0 = 0
                while k0 < K:
                    kc = min(KC, K - k0)
                    gemm_macro(mc, P, kc, wg + i0 * K + k0 * MR, MR * K, cols + k0 * NR, K * NR,
                               og + i0 * P, P, k0 > 0)
                    k0 = k0 + kc
                if bias != NULL:
                    _bias_rows(og + i0 * P, P, bias + g * Og + i0, mc, P)
        free(cols)
    if wpre == NULL:
        cc_scratch_release(1, wp)
    if failed:
        with gil:
            raise MemoryError("conv (im2col): cannot allocate a packing buffer")
    return 0


cdef inline Py_ssize_t _tile_rows(Py_ssize_t it, Py_ssize_t mc, Py_ssize_t MR,
                                   Py_ssize_t q0, Py_ssize_t row) noexcept nogil:
    # rows of the tile at it: MR, or (row > 0) up to the end of its output row (pixel
    # q0 + it; rows of `row` pixels from q0 - q0 % row), never past mc
    cdef Py_ssize_t m = min(MR, mc - it)
    if row > 0:
        m = min(m, row - (q0 + it) % row)
    return m


cdef inline bint _tile_reads_input(const cc_conv_geom *g, Py_ssize_t p0, Py_ssize_t m,
                                   Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    # whether some output pixel p0 .. p0 + m - 1 (of one image) reads a real input
    # position at some tap t0 .. t1 - 1
    cdef Py_ssize_t i, p, t, od, oh, ow, idd, ih, iw
    for i in range(m):
        p = p0 + i
        od = (p // (g.OH * g.OW)) * g.sd - g.pd
        oh = ((p // g.OW) % g.OH) * g.sh - g.ph
        ow = (p % g.OW) * g.sw - g.pw
        for t in range(t0, t1):
            idd = od + (t // (g.KH * g.KW)) * g.dd
            ih = oh + ((t // g.KW) % g.KH) * g.dh
            iw = ow + (t % g.KW) * g.dw
            if idd >= 0 and idd < g.D and ih >= 0 and ih < g.H and iw >= 0 and iw < g.W:
                return True
    return False


cdef int _nhwc_rows(const floating *x, const floating *w, const floating *wpre, const floating *bias, floating *out,
                    cc_conv_geom geom, Py_ssize_t N, Py_ssize_t G, Py_ssize_t O,
                    Py_ssize_t MC, Py_ssize_t nmb, Py_ssize_t NC, Py_ssize_t nnb,
                    int MR, int NR, Py_ssize_t KC, int nthreads,
                    int skip_pad=0) except -1 nogil:
    # Channels-last with few channels per tap: build MC x KC blocks of cols rows
    # (row-major, runs of input copied whole) and feed them to the indirect micro-kernel.
    # skip_pad (finite weights only, as _indirect_tiles): a tile skips the K blocks whose
    # taps read only padding for all its pixels (a block no tile needs is not packed),
    # starts from zero at its first block, and is zero-filled if it skipped them all;
    # skip_pad == 2: tiles also end where output rows do (_tile_rows).
    cdef Py_ssize_t Cg = geom.C, Og = O // G, C = geom.ctot
    cdef Py_ssize_t K = Cg * geom.KD * geom.KH * geom.KW
    cdef Py_ssize_t P = geom.OD * geom.OH * geom.OW
    cdef Py_ssize_t DHWC = geom.D * geom.H * geom.W * C
    cdef Py_ssize_t npn = (Og + NR - 1) // NR
    cdef Py_ssize_t ntm = (MC + MR - 1) // MR + (MC // geom.OW + 2 if skip_pad == 2 else 0)
    cdef Py_ssize_t row = geom.OW if skip_pad == 2 else 0
    cdef Py_ssize_t item, n, g, i0, j0, mc, nc, k0, kc, jp, it, i, j, nlive, tile, m, ti
    cdef floating *abuf
    cdef const floating **ap
    cdef unsigned char *live
    cdef unsigned char *done
    cdef const floating *xg
    cdef const floating *wg
    cdef floating *og
    cdef int failed = 0
    cdef int *failed_p = &failed
    cdef floating *wp = <floating *> wpre if wpre != NULL else _pack_weights_nhwc(w, G, Og, K, NR, nthreads)
    if wp == NULL:
        with gil:
            raise MemoryError("conv (im2col): cannot allocate the packed weights")
    with parallel(num_threads=nthreads):
        # MC x KC rows, then MR row pointers, then the tiles' live and done flags
        # (per thread)
        abuf = <floating *> cc_scratch_acquire(0, MC * KC * sizeof(floating)
                                               + (MR + 8) * sizeof(floating *)
                                               + ntm * (npn + 1) + 64)
        ap = <const floating **> (abuf + MC * KC)
        live = <unsigned char *> (ap + MR + 8)
        done = live + ntm
        if abuf == NULL:
            failed_p[0] = 1
        for item in prange(N * G * nmb * nnb, schedule="static"):
            if abuf == NULL:
                continue
            n = item // (G * nmb * nnb)
            g = (item // (nmb * nnb)) % G
            i0 = ((item // nnb) % nmb) * MC
            j0 = (item % nnb) * NC
            mc = min(MC, P - i0)
            nc = min(NC, Og - j0)
            xg = x + n * DHWC + g * Cg
            og = out + (n * P + i0) * O + g * Og + j0
            wg = wp + (g * npn + j0 // NR) * NR * K
            if skip_pad:
                for i in range(ntm * npn):
                    done[i] = 0
            k0 = 0
            while k0 < K:
                kc = min(KC, K - k0)
                if skip_pad:
                    nlive = 0
                    it = 0
                    ti = 0
                    while it < mc:
                        m = _tile_rows(it, mc, MR, i0, row)
                        live[ti] = _tile_reads_input(&geom, i0 + it, m, k0 // Cg,
                                                     (k0 + kc - 1) // Cg + 1)
                        nlive = nlive + live[ti]
                        it = it + m
                        ti = ti + 1
                    if nlive == 0:
                        k0 = k0 + kc
                        continue
                pack_rows_nhwc(&geom, xg, i0, mc, k0, kc, abuf, KC)
                jp = 0
                while jp * NR < nc:
                    it = 0
                    ti = 0
                    while it < mc:
                        m = _tile_rows(it, mc, MR, i0, row)
                        for i in range(MR):
                            ap[i] = abuf + (it + i) * KC if i < m else NULL
                        if not skip_pad:
                            igemm_tile(kc, ap, wg + jp * NR * K + k0 * NR,
                                       og + it * O + jp * NR, O, m,
                                       min(NR, nc - jp * NR), k0 > 0)
                        elif live[ti]:
                            tile = jp * ntm + ti
                            igemm_tile(kc, ap, wg + jp * NR * K + k0 * NR,
                                       og + it * O + jp * NR, O, m,
                                       min(NR, nc - jp * NR), done[tile])
                            done[tile] = 1
                        it = it + m
                        ti = ti + 1
                    jp = jp + 1
                k0 = k0 + kc
            if skip_pad:
                # tiles that read only padding: their sums are +0
                for jp in range((nc + NR - 1) // NR):
                    it = 0
                    ti = 0
                    while it < mc:
                        m = _tile_rows(it, mc, MR, i0, row)
                        if not done[jp * ntm + ti]:
                            for i in range(it, it + m):
                                for j in range(jp * NR, min(nc, jp * NR + NR)):
                                    og[i * O + j] = 0
                        it = it + m
                        ti = ti + 1
            if bias != NULL:
                _bias_cols(og, O, bias + g * Og + j0, mc, nc)
        cc_scratch_release(0, abuf)
    if wpre == NULL:
        cc_scratch_release(1, wp)
    if failed:
        with gil:
            raise MemoryError("conv (im2col): cannot allocate a packing buffer")
    return 0


cdef inline bint _tap_all_zero(const floating **rows, Py_ssize_t m,
                               const floating *zero) noexcept nogil:
    # every active row of this tap points at the zero row (the tile reads only padding)
    cdef Py_ssize_t i
    for i in range(m):
        if rows[i] != zero:
            return False
    return True


cdef inline void _indirect_tiles(const floating **table, Py_ssize_t mcp,
                                 const floating **ap, const floating *wg, floating *c,
                                 Py_ssize_t ldc, Py_ssize_t K, Py_ssize_t Cg, Py_ssize_t mc,
                                 Py_ssize_t nc, Py_ssize_t MR, Py_ssize_t NR,
                                 Py_ssize_t KC, const floating *zero,
                                 unsigned char *done, Py_ssize_t q0=0,
                                 Py_ssize_t row=0) noexcept nogil:
    """C[0:mc, 0:nc] (row stride ldc) = A . W: row p of A for tap t is Cg contiguous
    channels at table[t * mcp + p] (the table's rows mc .. mc + MR - 1, or up to a whole
    MR tile, are overwritten here); W (K = taps * Cg rows) in NR-column panels holding
    all of K (wg: the first panel); ap: MR row pointers of scratch. K in blocks of about
    KC (whole taps when Cg < KC), then B panels, then MR-pixel tiles: a kc x NR slice of
    B stays in L1 across the pixel tiles. With whole taps, one micro-kernel call runs all
    the block's taps (cconv_igemm_taps_ukernel: accumulators in registers from tap to
    tap); else one call per tap segment. The same bits either way.

    zero: NULL, or the zero row the table points padding taps at: then a tap whose rows
    in a tile are all that row is skipped for the tile (its products are w * 0, which
    leave a running sum from +0 bit for bit unchanged when w is finite: the caller
    passes it only for finite weights), a tile's first call starts from zero, and a tile
    every tap skipped is zero-filled. done: one flag per (panel, tile) of scratch.
    row > 0 (with zero only): tiles also end where an output row of `row` pixels ends
    (pixel q0 is row p of the table), so that more of them read only padding at a tap;
    the table then needs mcp >= mc + MR."""
    cdef Py_ssize_t k0 = 0, kc, jp, it, t, c0, seg_t, seg, i, nt, t1, m, n, tile, ntile
    cdef Py_ssize_t mcr = (mc + MR - 1) // MR * MR
    cdef int acc
    cdef const floating **tr
    if zero != NULL:
        ntile = 0
        it = 0
        while it < mc:
            it = it + _tile_rows(it, mc, MR, q0, row)
            ntile = ntile + 1
        for i in range(ntile * ((nc + NR - 1) // NR)):
            done[i] = 0
    if Cg < KC:
        # rows past mc in the last tile read row 0 of their tap (results discarded)
        for t in range(K // Cg):
            for i in range(mc, mc + MR if row > 0 else mcr):
                table[t * mcp + i] = table[t * mcp]
    while k0 < K:
        # whole taps per K block when a tap has fewer channels than KC
        kc = min(max(KC // Cg, 1) * Cg, K - k0) if Cg < KC else min(KC, K - k0)
        nt = kc // Cg
        jp = 0
        while jp * NR < nc:
            n = min(NR, nc - jp * NR)
            it = 0
            tile = jp * ntile if zero != NULL else 0
            while it < mc:
                m = _tile_rows(it, mc, MR, q0, row)
                if Cg < KC:
                    # runs of taps that read a real pixel somewhere in the tile (without
                    # zero: one run of all nt taps)
                    tr = table + (k0 // Cg) * mcp + it
                    t = 0
                    while t < nt:
                        if zero != NULL and _tap_all_zero(tr + t * mcp, m, zero):
                            t = t + 1
                            continue
                        t1 = t + 1
                        while t1 < nt and (zero == NULL
                                           or not _tap_all_zero(tr + t1 * mcp, m, zero)):
                            t1 = t1 + 1
                        acc = done[tile] if zero != NULL else k0 > 0
                        igemm_taps_tile(Cg, t1 - t, tr + t * mcp, mcp,
                                        wg + jp * NR * K + (k0 + t * Cg) * NR,
                                        c + it * ldc + jp * NR, ldc, m, n, acc)
                        if zero != NULL:
                            done[tile] = 1
                        t = t1
                else:
                    # one call per tap segment of the K block
                    t = k0 // Cg
                    c0 = k0 % Cg
                    seg_t = 0
                    while seg_t < kc:
                        seg = min(Cg - c0, kc - seg_t)
                        if zero == NULL or not _tap_all_zero(table + t * mcp + it, m, zero):
                            for i in range(MR):
                                ap[i] = table[t * mcp + it + i] + c0 if i < m else NULL
                            acc = done[tile] if zero != NULL else k0 + seg_t > 0
                            igemm_tile(seg, ap, wg + jp * NR * K + (k0 + seg_t) * NR,
                                       c + it * ldc + jp * NR, ldc, m, n, acc)
                            if zero != NULL:
                                done[tile] = 1
                        seg_t = seg_t + seg
                        t = t + 1
                        c0 = 0
                if zero != NULL:
                    tile = tile + 1
                it = it + m
            jp = jp + 1
        k0 = k0 + kc
    if zero != NULL:
        # tiles that read only padding: their sums are +0
        for jp in range((nc + NR - 1) // NR):
            n = min(NR, nc - jp * NR)
            it = 0
            tile = jp * ntile
            while it < mc:
                m = _tile_rows(it, mc, MR, q0, row)
                if not done[tile]:
                    for i in range(it, it + m):
                        for t in range(n):
                            c[i * ldc + jp * NR + t] = 0
                tile = tile + 1
                it = it + m


cdef int _nhwc_indirect(const floating *x, const floating *w, const floating *wpre, const floating *bias,
                        floating *out, cc_conv_geom geom, Py_ssize_t N, Py_ssize_t G,
                        Py_ssize_t O, Py_ssize_t MC, Py_ssize_t nmb, Py_ssize_t NC,
                        Py_ssize_t nnb, int MR, int NR, Py_ssize_t KC,
                        int nthreads, int skip_pad=0) except -1 nogil:
    # Channels-last without packing the input: for each tap, an MR-pixel tile's A rows
    # are runs of Cg contiguous input channels, read in place through row pointers (an
    # indirection table per pixel block; taps in the padding point at a zero row).
    # out[n] (P x Og) = sum over taps t, channels c of x[pixel(p, t), c] . W_g[t*Cg + c, :]
    # Pixel blocks run over the whole batch (pixel q = n * P + p: the output rows of
    # consecutive images are consecutive), so small images still fill the tiles.
    cdef Py_ssize_t Cg = geom.C, Og = O // G, C = geom.ctot
    cdef Py_ssize_t taps = geom.KD * geom.KH * geom.KW
    cdef Py_ssize_t K = Cg * taps
    cdef Py_ssize_t P = geom.OD * geom.OH * geom.OW
    cdef Py_ssize_t DHWC = geom.D * geom.H * geom.W * C
    cdef Py_ssize_t npn = (Og + NR - 1) // NR
    # skip_pad: 0, or skip padding taps per tile (_indirect_tiles), 2: with tiles that
    # end where output rows do (the table then has MR rows of slack per tap)
    cdef Py_ssize_t mcp = (MC + MR - 1) // MR * MR + (MR if skip_pad == 2 else 0)
    cdef Py_ssize_t ntile = (MC + MR - 1) // MR + (MC // geom.OW + 2 if skip_pad == 2 else 0)
    cdef Py_ssize_t item, n, g, i0, j0, mc, nc, t, p, q
    cdef Py_ssize_t od, oh, ow, idd, ih, iw, kd, kh, kw, tk0, tk1
    cdef const floating **table
    cdef const floating **ap
    cdef unsigned char *done
    cdef const floating *xg
    cdef const floating *wg
    cdef floating *og
    cdef int failed = 0
    cdef int *failed_p = &failed
    cdef floating *zero = <floating *> calloc(Cg + 16, sizeof(floating))
    cdef floating *wp = <floating *> wpre if wpre != NULL else _pack_weights_nhwc(w, G, Og, K, NR, nthreads)
    if wp == NULL or zero == NULL:
        if wpre == NULL:
            cc_scratch_release(1, wp)
        free(zero)
        with gil:
            raise MemoryError("conv (im2col): cannot allocate the packed weights")
    with parallel(num_threads=nthreads):
        # the table, then MR row pointers for the tile being computed, then the tiles'
        # done flags (_indirect_tiles, skip_pad) (per thread)
        table = <const floating **> malloc((taps * mcp + MR) * sizeof(floating *)
                                           + ntile * npn + 64)
        ap = table + taps * mcp
        done = <unsigned char *> (ap + MR)
        if table == NULL:
            failed_p[0] = 1
        for item in prange(G * nmb * nnb, schedule="static"):
            if table == NULL:
                continue
            g = item // (nmb * nnb)
            i0 = ((item // nnb) % nmb) * MC
            j0 = (item % nnb) * NC
            mc = min(MC, N * P - i0)
            nc = min(NC, Og - j0)
            og = out + i0 * O + g * Og + j0
            wg = wp + (g * npn + j0 // NR) * NR * K
            # indirection table: table[t * mcp + p] = row of pixel i0 + p for tap t
            # (the pixel's coordinates stepped and the taps nested: a division per pixel
            # and tap cost 3-15% of 3x3 / 7x7 layers with 32-128 channels)
            n = i0 // P
            q = i0 % P
            od = q // (geom.OH * geom.OW)
            oh = (q // geom.OW) % geom.OH
            ow = q % geom.OW
            for p in range(mc):
                xg = x + n * DHWC + g * Cg
                t = 0
                for kd in range(geom.KD):
                    idd = od * geom.sd + kd * geom.dd - geom.pd
                    for kh in range(geom.KH):
                        ih = oh * geom.sh + kh * geom.dh - geom.ph
                        for kw in range(geom.KW):
                            iw = ow * geom.sw + kw * geom.dw - geom.pw
                            if (idd >= 0 and idd < geom.D and ih >= 0 and ih < geom.H
                                    and iw >= 0 and iw < geom.W):
                                table[t * mcp + p] = xg + ((idd * geom.H + ih) * geom.W + iw) * C
                            else:
                                table[t * mcp + p] = zero
                            t = t + 1
                ow = ow + 1
                if ow == geom.OW:
                    ow = 0
                    oh = oh + 1
                    if oh == geom.OH:
                        oh = 0
                        od = od + 1
                        if od == geom.OD:
                            od = 0
                            n = n + 1
            _indirect_tiles(table, mcp, ap, wg, og, O, K, Cg, mc, nc, MR, NR, KC,
                            zero if skip_pad else NULL, done, i0,
                            geom.OW if skip_pad == 2 else 0)
            if bias != NULL:
                _bias_cols(og, O, bias + g * Og + j0, mc, nc)
        free(table)
    if wpre == NULL:
        cc_scratch_release(1, wp)
    free(zero)
    if failed:
        with gil:
            raise MemoryError("conv (im2col): cannot allocate an indirection table")
    return 0


# --------------------------------------------------------------------- stride phases

# Columns of the per-phase geometry table of subpixel_nhwc (int64, one row per phase).
cdef enum:
    SPX_LO = 0      # 3: first grad_out position the phase reads
    SPX_EXT = 3     # 3: grad_out positions in the phase's slice
    SPX_K = 6       # 3: the phase's kernel
    SPX_PAD = 9     # 3: zero padding before the slice
    SPX_CNT = 12    # 3: the phase's outputs
    SPX_X0 = 15     # 3: dx position of the phase's output 0 (stride apart)
    SPX_COLS = 18

# for backward.py: the table's width; the channel count from which channels-last
# problems read A rows in place
SUBPIXEL_COLS = SPX_COLS
INDIRECT_MIN_CH = INDIRECT_MIN_CHANNELS


def subpixel_nhwc(const floating[:, :, :, :, ::1] dy, list weights,
                  floating[:, :, :, :, ::1] dx, const int64_t[:, ::1] info, tuple stride,
                  Py_ssize_t G, int nthreads):
    """Every stride phase of a channels-last input gradient in one parallel region, each
    phase's output rows written straight into their strided places in dx.

    Phase ph is the stride-1 correlation of dy's slice (info[ph, SPX_LO..], extent
    SPX_EXT, zero padding SPX_PAD before it) with the phase kernel (SPX_K taps, weight
    weights[ph]: C-contiguous rows (tap, input channel of the group) x dx channels, the
    channels-last conv weight layout); output (n, o) lands at dx[n, SPX_X0 + stride*o].
    Items are (phase, group, pixel block, column block) over all phases at once (no
    per-phase call, copy or barrier); each computes its tile exactly as _nhwc_indirect
    does (indirect micro-kernel, A rows read in place, K in the same order and blocks)
    into a per-thread block, then copies the block's rows to dx: bitwise the result of
    one forward convolution per phase followed by the strided copies, for any thread
    count. dx elements outside every phase are not written."""
    cdef Py_ssize_t MR = cconv_mr_f32() if floating is float else cconv_mr_f64()
    cdef Py_ssize_t NR = cconv_nr_f32() if floating is float else cconv_nr_f64()
    cdef Py_ssize_t KC = CCONV_KC_F32 if floating is float else CCONV_KC_F64
    cdef Py_ssize_t nph = info.shape[0], N = dy.shape[0]
    cdef Py_ssize_t Ci = dy.shape[4], Co = dx.shape[4], Cgi = Ci // G, Ogo = Co // G
    cdef Py_ssize_t Hi = dy.shape[2], Wi = dy.shape[3], Ho = dx.shape[2], Wo = dx.shape[3]
    cdef Py_ssize_t DHWCi = dy.shape[1] * Hi * Wi * Ci, DHWCo = dx.shape[1] * Ho * Wo * Co
    cdef Py_ssize_t sd = stride[0], sh = stride[1], sw = stride[2]
    cdef Py_ssize_t npn = (Ogo + NR - 1) // NR
    if nph == 0 or N == 0 or Co == 0:
        return
    # blocks: one column-block split for all phases; pixel blocks per phase, halved
    # until the items (all phases together) give every thread several
    wb, nwb = _split(Ogo, NC_COLS, NR)
    cdef Py_ssize_t[::1] pb = np.empty(nph, np.intp), npb = np.empty(nph, np.intp)
    cdef Py_ssize_t[::1] item0 = np.empty(nph + 1, np.intp), wpoff = np.empty(nph, np.intp)
    cdef Py_ssize_t[::1] Kp = np.empty(nph, np.intp), Pp = np.empty(nph, np.intp)
    cdef Py_ssize_t ph, target = 240, total = 0, tapmax = 1, mcpmax = MR, wtot = 0
    for ph in range(nph):
        Kp[ph] = info[ph, SPX_K] * info[ph, SPX_K + 1] * info[ph, SPX_K + 2] * Cgi
        Pp[ph] = info[ph, SPX_CNT] * info[ph, SPX_CNT + 1] * info[ph, SPX_CNT + 2]
        tapmax = max(tapmax, Kp[ph] // max(Cgi, 1))
        wpoff[ph] = wtot
        wtot += G * npn * NR * Kp[ph]
    while True:
        total = 0
        for ph in range(nph):
            pb[ph], npb[ph] = _split(max(N * Pp[ph], 1), target, MR)
            item0[ph] = total
            total += G * npb[ph] * nwb
        if total >= 4 * nthreads or target <= MR:
            break
        target = target // 2
    item0[nph] = total
    for ph in range(nph):
        mcpmax = max(mcpmax, (pb[ph] + MR - 1) // MR * MR)
    cdef const floating *dyp = &dy[0, 0, 0, 0, 0]
    cdef const floating[::1] wv
    cdef const floating **wsrc = <const floating **> malloc(nph * sizeof(floating *))
    if wsrc == NULL:
        raise MemoryError("grad_input (stride phases): cannot allocate the weight table")
    for ph in range(nph):
        wv = weights[ph]
        if wv.shape[0] != Kp[ph] * Co:
            free(wsrc)
            raise ValueError(f"subpixel_nhwc: phase {ph} weight has {wv.shape[0]} elements, "
                             f"expected {Kp[ph] * Co}")
        wsrc[ph] = &wv[0]
    cdef floating *dxp = &dx[0, 0, 0, 0, 0]
    cdef const int64_t *inf = &info[0, 0]
    cdef Py_ssize_t *pbp = &pb[0]
    cdef Py_ssize_t *npbp = &npb[0]
    cdef Py_ssize_t *i0p = &item0[0]
    cdef Py_ssize_t *wpo = &wpoff[0]
    cdef Py_ssize_t *Kpp = &Kp[0]
    cdef Py_ssize_t *Ppp = &Pp[0]
    cdef Py_ssize_t NWB = nwb, WB = wb
    cdef Py_ssize_t item, r, g, i0, j0, mc, nc, t, pi, q
    cdef Py_ssize_t n, od, oh, ow, idd, ih, iw, kd, kh, kw, K, P, mcp
    cdef const int64_t *f
    cdef const floating **table
    cdef const floating **ap
    cdef floating **orow
    cdef floating *cb
    cdef const floating *wg
    cdef const floating *xb
    cdef int failed = 0
    cdef int *failed_p = &failed
    cdef floating *zero = <floating *> calloc(Cgi + 16, sizeof(floating))
    # packed weights: this thread's cached scratch (slot 1, as _pack_weights_nhwc), not
    # fresh pages each call (8 MB for DCGAN 512 -> 256 4x4: page faults cost 5-8%)
    cdef floating *wpk = <floating *> cc_scratch_acquire(1, max(wtot, 1) * sizeof(floating))
    if zero == NULL or wpk == NULL:
        free(zero)
        free(wsrc)
        cc_scratch_release(1, wpk)
        raise MemoryError("grad_input (stride phases): cannot allocate the packed weights")
    with nogil:
        for ph in range(nph):  # every phase's W_g (K x Ogo, row stride Co) in NR panels
            _pack_weights_nhwc_into(wsrc[ph], G, Ogo, Kpp[ph], NR, wpk + wpo[ph], nthreads)
        with parallel(num_threads=nthreads):
            # per thread: the indirection table, MR row pointers, the output row
            # pointers and the C block (64-byte aligned)
            table = <const floating **> malloc((tapmax * mcpmax + MR + mcpmax) * sizeof(floating *)
                                               + (mcpmax * WB + 16) * sizeof(floating) + 64)
            if table == NULL:
                failed_p[0] = 1
            else:
                ap = table + tapmax * mcpmax
                orow = <floating **> (ap + MR)
                cb = <floating *> ((<size_t> (orow + mcpmax) + 63) & ~(<size_t> 63))
            for item in prange(total, schedule="static", chunksize=1):
                if table == NULL:
                    continue
                ph = 0
                while item >= i0p[ph + 1]:
                    ph = ph + 1
                f = inf + ph * SPX_COLS
                K = Kpp[ph]
                P = Ppp[ph]
                r = item - i0p[ph]
                g = r // (npbp[ph] * NWB)
                i0 = ((r // NWB) % npbp[ph]) * pbp[ph]
                j0 = (r % NWB) * WB
                mc = min(pbp[ph], N * P - i0)
                nc = min(WB, Ogo - j0)
                mcp = (mc + MR - 1) // MR * MR
                wg = wpk + wpo[ph] + (g * npn + j0 // NR) * NR * K
                xb = dyp + ((f[SPX_LO] * Hi + f[SPX_LO + 1]) * Wi + f[SPX_LO + 2]) * Ci + g * Cgi
                n = i0 // P  # then stepped per pixel, as in _nhwc_indirect
                q = i0 % P
                od = q // (f[SPX_CNT + 1] * f[SPX_CNT + 2])
                oh = (q // f[SPX_CNT + 2]) % f[SPX_CNT + 1]
                ow = q % f[SPX_CNT + 2]
                for pi in range(mc):
                    orow[pi] = dxp + n * DHWCo + (((f[SPX_X0] + sd * od) * Ho + f[SPX_X0 + 1]
                                                   + sh * oh) * Wo + f[SPX_X0 + 2]
                                                  + sw * ow) * Co + g * Ogo + j0
                    t = 0
                    for kd in range(f[SPX_K]):
                        idd = od + kd - f[SPX_PAD]
                        for kh in range(f[SPX_K + 1]):
                            ih = oh + kh - f[SPX_PAD + 1]
                            for kw in range(f[SPX_K + 2]):
                                iw = ow + kw - f[SPX_PAD + 2]
                                if (idd >= 0 and idd < f[SPX_EXT] and ih >= 0
                                        and ih < f[SPX_EXT + 1] and iw >= 0
                                        and iw < f[SPX_EXT + 2]):
                                    table[t * mcp + pi] = (xb + n * DHWCi
                                                           + ((idd * Hi + ih) * Wi + iw) * Ci)
                                else:
                                    table[t * mcp + pi] = zero
                                t = t + 1
                    ow = ow + 1
                    if ow == f[SPX_CNT + 2]:
                        ow = 0
                        oh = oh + 1
                        if oh == f[SPX_CNT + 1]:
                            oh = 0
                            od = od + 1
                            if od == f[SPX_CNT]:
                                od = 0
                                n = n + 1
                # _nhwc_indirect's tiles, into the C block (row stride WB)
                _indirect_tiles(table, mcp, ap, wg, cb, WB, K, Cgi, mc, nc, MR, NR, KC, NULL, NULL)
                for pi in range(mc):
                    memcpy(orow[pi], cb + pi * WB, nc * sizeof(floating))
            free(table)
    cc_scratch_release(1, wpk)
    free(wsrc)
    free(zero)
    if failed:
        raise MemoryError("grad_input (stride phases): cannot allocate an indirection table")


cdef void _virtual_item(const floating *base, const floating *wg, const floating *bias,
                        floating *og, const cc_idx *offs, Py_ssize_t K, Py_ssize_t KC,
                        Py_ssize_t j0, Py_ssize_t nc, Py_ssize_t mc, Py_ssize_t NC, int MR,
                        int NR, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Hp, Py_ssize_t Wp,
                        Py_ssize_t P, floating *bbuf, floating *ctile) noexcept nogil:
    """Rows 0..mc-1 (of og and wg) x virtual pixels j0..j0+nc-1 of one image and group."""
    cdef Py_ssize_t k0 = 0, kc, v, vend, od, r, oh, ow, cnt, i, q, HWp = Hp * Wp
    cdef const floating *src
    cdef floating *dst
    cdef floating bv
    while k0 < K:
        kc = min(KC, K - k0)
        pack_rows(base, offs + k0, kc, j0, nc, NR, kc * NR, bbuf)
        gemm_macro(mc, nc, kc, wg + k0 * MR, MR * K, bbuf, kc * NR, ctile, NC, k0 > 0)
        k0 = k0 + kc
    # keep the real pixels: runs of one output row at a time
    v = j0
    while v < j0 + nc:
        od = v // HWp
        r = v % HWp
        oh = r // Wp
        ow = r % Wp
        vend = min(j0 + nc, v + (Wp - ow))
        if oh < OH and ow < OW:
            cnt = min(OW, ow + (vend - v)) - ow
            for i in range(mc):
                src = ctile + i * NC + (v - j0)
                dst = og + i * P + (od * OH + oh) * OW + ow
                bv = bias[i] if bias != NULL else 0
                for q in range(cnt):
                    dst[q] = src[q] + bv
        v = vend


cdef void _pixrow_item(const floating *base, const floating *wq, const floating *bias,
                       floating *og, const cc_idx *offs, Py_ssize_t K, Py_ssize_t KC,
                       Py_ssize_t r0, Py_ssize_t nrows, Py_ssize_t no, int NR, int MRX,
                       Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Hp, Py_ssize_t Wp,
                       Py_ssize_t P, floating *ctile, const floating *wrows,
                       floating *bbuf, bint cl, Py_ssize_t O) noexcept nogil:
    """Output rows r0..r0+nrows-1 (r = od*OH + oh) x channels 0..no-1 of og (one image
    and group, from B panels wq): each row in tiles of at most MRX pixels, every tile
    one pixel-row micro-kernel call per B panel and KC block.
    The tiles land in ctile (panel q, pixel p of the block at (q * nrows * OW + p) * NR),
    then go to og with the bias: transposed channels-first (og: channel 0 of the item, P
    pixels per channel), row by row channels-last (cl; og: channel 0 of pixel 0, O
    channels per pixel; rows 2 KB apart as C tiles conflicted in L1).
    With wrows (channel 0's weights: row stride K channels-first, the (tap, channel)
    rows of stride O channels-last) instead of wq, the panels are packed into bbuf just
    before use, when no other item reads them (the weights read once, never written
    back): channels-first one KC x NR panel block at a time, channels-last all panels
    of a KC block at once (panel by panel, the 2 KB row strides ran slower than the
    product)."""
    cdef Py_ssize_t pb = nrows * OW, nq = (no + NR - 1) // NR
    cdef Py_ssize_t ntile = (OW + MRX - 1) // MRX
    cdef Py_ssize_t tw = (OW + ntile - 1) // ntile
    cdef Py_ssize_t k0 = 0, kc, q, r, vrow, ow0, m, j, p, nqc
    cdef const floating *bq
    cdef floating *ct
    cdef floating *dst
    # Packed on the fly, each KC block's panels (channels-last: all panels of the block at
    # once; channels-first: one panel) are packed right before the products that read
    # them, while the weight rows of the next pack are prefetched, spread over the
    # kernel calls in between (without, the packs waited on memory: a quarter of f64
    # 512@7; whole K x NR channels-first panels instead filled L2).
    cdef Py_ssize_t nk = (K + KC - 1) // KC, step, kn, qn
    cdef Py_ssize_t calls = _cdiv(nrows, 2) if 2 * OW <= MRX else nrows * ntile
    cdef const floating *pfb = NULL
    cdef Py_ssize_t pf0 = 0, pf1 = 0, pfr = 0, pfs = 0, pfn = 0
    for step in range(nq * nk):
        if cl:
            k0 = (step // nq) * KC
            q = step % nq
        else:
            q = step // nk
            k0 = (step % nk) * KC
        kc = min(KC, K - k0)
        nqc = min(NR, no - q * NR)
        if wrows != NULL and cl:
            if q == 0:
                # panels kc + 1 rows apart: kc*NR-element strides (32 KB) put the 16
                # stores of a row into one L1 set (f64 512@7 0.94x with the pad)
                pack_b_rows_to_panels(0, kc, no, wrows + k0 * O, O, bbuf, kc + 1)
            # the next block's rows, a 1/nq share per panel
            pfb, pfs, pfn = wrows, O, no * sizeof(floating)
            pf0 = k0 + KC + q * _cdiv(KC, nq)
            pf1 = min(K, pf0 + _cdiv(KC, nq))
            pfr = _cdiv(_cdiv(KC, nq), calls)
            bq = bbuf + q * NR * (kc + 1)
        elif wrows != NULL:
            pack_rows_to_panels(NR, nqc, kc, wrows + q * NR * K + k0, K, bbuf)
            bq = bbuf
            # the next step's panel block: the same panel's next KC block, or the next panel
            kn = k0 + KC if k0 + KC < K else 0
            qn = q if kn > 0 else q + 1
            if qn < nq:
                pfb, pfs, pfn = wrows + qn * NR * K + kn, K, min(KC, K - kn) * sizeof(floating)
                pf0, pf1 = 0, min(NR, no - qn * NR)
                pfr = _cdiv(pf1, calls)
            else:
                pf1 = 0
        else:
            bq = wq + q * NR * K + k0 * NR
        ct = ctile + q * pb * NR
        r = r0
        while r < r0 + nrows:
            if pf1 > pf0:
                cc_prefetch_rows(pfb + pf0 * pfs, min(pfr, pf1 - pf0), pfs * sizeof(floating),
                                 pfn)
                pf0 = pf0 + pfr
            vrow = ((r // OH) * Hp + r % OH) * Wp
            if 2 * OW <= MRX and r + 1 < r0 + nrows:
                # two whole rows per tile (their offsets differ across a depth step)
                pixrow2(OW, nqc, kc, base + vrow, ((r + 1) // OH * Hp + (r + 1) % OH) * Wp - vrow,
                        offs + k0, bq, ct + (r - r0) * OW * NR, NR, k0 > 0)
                r = r + 2
                continue
            ow0 = 0
            while ow0 < OW:
                m = min(tw, OW - ow0)
                pixrow(m, nqc, kc, base + vrow + ow0, offs + k0, bq,
                       ct + ((r - r0) * OW + ow0) * NR, NR, k0 > 0)
                ow0 = ow0 + m
            r = r + 1
    for q in range(nq):
        nqc = min(NR, no - q * NR)
        ct = ctile + q * pb * NR
        if cl:
            dst = og + r0 * OW * O + q * NR
            for p in range(pb):
                for j in range(nqc):
                    dst[p * O + j] = ct[p * NR + j] + (bias[q * NR + j] if bias != NULL else 0)
            continue
        # register transposes of pixel x channel blocks (unpack.h)
        dst = og + q * NR * P + r0 * OW
        if floating is float:
            cconv_unpack_tile_nchw_f32(ct, NR, pb, nqc, bias + q * NR if bias != NULL else NULL,
                                       dst, P)
        else:
            cconv_unpack_tile_nchw_f64(ct, NR, pb, nqc, bias + q * NR if bias != NULL else NULL,
                                       dst, P)


cdef struct _vplan:
    # what every item of one _nchw_virtual call shares
    Py_ssize_t Cg, Og, O, K, KC, P, CP, NC, MC, nnb, nmb, rows, VP, OH, OW, Hp, Wp, ncp, mp, npn
    int MR, NR, MRX
    bint cl


cdef void _image_item(const _vplan *v, const floating *src, const floating *wfly,
                      const floating *wp, const floating *bias, floating *out,
                      const cc_idx *offs, Py_ssize_t n, Py_ssize_t it,
                      floating *buf) noexcept nogil:
    """Item it (group, pixel block, weight block) of image n of _nchw_virtual, on its
    padded copy src; wfly: the raw weights when the pixel rows pack them on the fly."""
    cdef Py_ssize_t g = it // (v.nnb * v.nmb)
    cdef Py_ssize_t j0 = ((it // v.nmb) % v.nnb) * v.NC
    cdef Py_ssize_t i0 = (it % v.nmb) * v.MC
    cdef const floating *bg = bias + g * v.Og + i0 if bias != NULL else NULL
    if v.MRX > 0:
        _pixrow_item(src + g * v.Cg * v.CP, wp + (g * v.npn + i0 // v.NR) * v.NR * v.K, bg,
                     out + (n * v.P * v.O + g * v.Og + i0 if v.cl
                            else (n * v.O + g * v.Og + i0) * v.P),
                     offs, v.K, v.KC, j0, min(v.NC, v.rows - j0), min(v.MC, v.Og - i0), v.NR,
                     v.MRX, v.OH, v.OW, v.Hp, v.Wp, v.P, buf,
                     NULL if wfly == NULL else (wfly + g * v.Og + i0 if v.cl
                                                else wfly + (g * v.Og + i0) * v.K),
                     buf + v.MC * v.NC * v.OW, v.cl, v.O)
    else:
        _virtual_item(src + g * v.Cg * v.CP, wp + g * v.mp * v.MR * v.K + i0 * v.K, bg,
                      out + (n * v.O + g * v.Og + i0) * v.P, offs, v.K, v.KC, j0,
                      min(v.NC, v.VP - j0), min(v.MC, v.Og - i0), v.NC, v.MR, v.NR, v.OH,
                      v.OW, v.Hp, v.Wp, v.P, buf, buf + v.KC * v.ncp)


cdef int _nchw_virtual(const floating *x, const floating *w, const floating *wpre, const floating *bias,
                       floating *out, cc_conv_geom geom, Py_ssize_t Dp, Py_ssize_t Hp,
                       Py_ssize_t Wp, Py_ssize_t N, Py_ssize_t G, Py_ssize_t O,
                       Py_ssize_t NC, Py_ssize_t nnb, Py_ssize_t MC, Py_ssize_t nmb,
                       int MR, int NR, Py_ssize_t KC, int MRX, bint cl,
                       int nthreads) except -1 nogil:
    # NCHW on a zero-padded copy of each image split into stride phases (C, phases, Dp,
    # Hp, Wp; one phase for stride 1): the output is computed on the phase grid
    # (virtual pixel v = (od*Hp + oh)*Wp + ow), where every
    # row of cols is a contiguous run of the copy (pack.h, cconv_pack_b_rows). Columns
    # with ow >= OW or oh >= OH are computed into a per-thread tile and dropped.
    # Workspace: one padded image per thread (whole images per thread when the batch
    # splits evenly) or one shared padded image (small batches), never the batch.
    # MRX > 0 ("pixel rows"): the same padded copy, but output pixels are the M
    # dimension: rows of at most MRX pixels against NR-channel B panels of the weights
    # (_pixrow_item); then NC counts output rows, MC output channels (a multiple of NR).
    # cl (pixel rows only): x is a channels-first copy of a channels-last input; w, wpre
    # and out are the channels-last ones (K in (tap, channel) order, as _nhwc_indirect).
    cdef Py_ssize_t Cg = geom.C, Og = O // G, C = Cg * G
    cdef Py_ssize_t taps = geom.KD * geom.KH * geom.KW
    cdef Py_ssize_t K = Cg * taps
    cdef Py_ssize_t OD = geom.OD, OH = geom.OH, OW = geom.OW
    cdef Py_ssize_t P = OD * OH * OW
    cdef Py_ssize_t HWp = Hp * Wp, DHWp = Dp * HWp, DHW = geom.D * geom.H * geom.W
    # each channel's copy holds sd*sh*sw stride phases of (Dp, Hp, Wp)
    cdef Py_ssize_t CP = geom.sd * geom.sh * geom.sw * DHWp
    cdef Py_ssize_t VP = ((OD - 1) * Hp + OH - 1) * Wp + OW
    cdef Py_ssize_t td, th, tw
    cdef Py_ssize_t mp = (Og + MR - 1) // MR
    cdef Py_ssize_t npn = (Og + NR - 1) // NR
    cdef Py_ssize_t ncp = (NC + NR - 1) // NR * NR
    cdef Py_ssize_t scratch = (MC * NC * OW + (KC + 1) * (MC if cl else NR) if MRX > 0
                               else KC * ncp + MC * NC)
    cdef Py_ssize_t rows = OD * OH
    cdef Py_ssize_t per_image = G * nnb * nmb
    cdef Py_ssize_t n, k, c, t, it
    cdef bint whole_images = N % nthreads == 0 or N >= 4 * nthreads
    # the padded grid is the input itself (no padding, nothing cropped): no copy
    cdef bint same_grid = (Dp == geom.D and Hp == geom.H and Wp == geom.W and CP == DHWp
                           and geom.pd == 0 and geom.ph == 0 and geom.pw == 0)
    cdef const floating *src
    cdef floating *buf
    cdef floating *img = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    cdef cc_idx *offs = <cc_idx *> malloc(K * sizeof(cc_idx) + 8)
    cdef floating *wp
    # pixel rows: B panels of the weights, given (wpre), packed ahead, or packed just
    # before use when each is read by one item only
    # (wpre, with MRX > 0: the pixel-row panels of pack_weights(pixrow=True))
    cdef bint fly = MRX > 0 and wpre == NULL and N * nnb == 1
    if fly:
        wpre = w
        wp = <floating *> w
    elif MRX > 0 and wpre == NULL:
        wp = (_pack_weights_nhwc(w, G, Og, K, NR, nthreads) if cl
              else _pack_weights_nchw(w, G, Og, K, NR, nthreads))
    elif MRX > 0:
        wp = <floating *> wpre
    else:
        wp = <floating *> wpre if wpre != NULL else _pack_weights_nchw(w, G, Og, K, MR, nthreads)
    if wp == NULL or offs == NULL:
        if wpre == NULL:
            cc_scratch_release(1, wp)
        free(offs)
        with gil:
            raise MemoryError("conv (im2col): cannot allocate the packed weights")
    for k in range(K):
        c = k % Cg if cl else k // taps
        t = k // Cg if cl else k % taps
        td = (t // (geom.KH * geom.KW)) * geom.dd
        th = ((t // geom.KW) % geom.KH) * geom.dh
        tw = (t % geom.KW) * geom.dw
        offs[k] = (c * CP + (((td % geom.sd) * geom.sh + th % geom.sh) * geom.sw + tw % geom.sw) * DHWp
                   + (td // geom.sd) * HWp + (th // geom.sh) * Wp + tw // geom.sw)
    cdef _vplan v
    v.Cg, v.Og, v.O, v.K, v.KC, v.P, v.CP = Cg, Og, O, K, KC, P, CP
    v.NC, v.MC, v.nnb, v.nmb, v.rows, v.VP = NC, MC, nnb, nmb, rows, VP
    v.OH, v.OW, v.Hp, v.Wp, v.ncp, v.mp, v.npn = OH, OW, Hp, Wp, ncp, mp, npn
    v.MR, v.NR, v.MRX, v.cl = MR, NR, MRX, cl
    if whole_images:
        with parallel(num_threads=nthreads):
            buf = <floating *> cc_scratch_acquire(0, (scratch + C * CP) * sizeof(floating))
            if buf == NULL:
                failed_p[0] = 1
            for n in prange(N, schedule="static"):
                if buf == NULL:
                    continue
                if same_grid:  # no padding, nothing cropped: read the image in place
                    src = x + n * C * DHW
                else:
                    for c in range(C):
                        pad_channel(x + (n * C + c) * DHW, &geom, buf + scratch + c * CP,
                                    Dp, Hp, Wp)
                    src = buf + scratch
                for it in range(per_image):
                    _image_item(&v, src, w if fly else NULL, wp, bias, out, offs, n, it, buf)
            cc_scratch_release(0, buf)
    else:
        img = <floating *> cc_scratch_alloc64((0 if same_grid else C * CP) * sizeof(floating) + 64)
        if img == NULL:
            failed = 1
        for n in range(N if img != NULL else 0):
            if same_grid:
                src = x + n * C * DHW
            else:
                for c in prange(C, schedule="static", num_threads=nthreads):
                    pad_channel(x + (n * C + c) * DHW, &geom, img + c * CP, Dp, Hp, Wp)
                src = img
            with parallel(num_threads=nthreads):
                buf = <floating *> cc_scratch_acquire(0, scratch * sizeof(floating))
                if buf == NULL:
                    failed_p[0] = 1
                for it in prange(per_image, schedule="static"):
                    if buf == NULL:
                        continue
                    _image_item(&v, src, w if fly else NULL, wp, bias, out, offs, n, it, buf)
                cc_scratch_release(0, buf)
        free(img)
    if wpre == NULL:
        cc_scratch_release(1, wp)
    free(offs)
    if failed:
        with gil:
            raise MemoryError("conv (im2col): cannot allocate a packing buffer")
    return 0


cdef cc_conv_geom _geom(tuple xsp, tuple ksp, tuple osp, Py_ssize_t Cg, Py_ssize_t ctot,
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


cdef inline bint _pointwise_grid(const cc_conv_geom *g) noexcept nogil:
    """Stride 1, no padding, output the input's size: a 1x1 layer reads x in place."""
    return (g.sd == 1 and g.sh == 1 and g.sw == 1 and g.pd == 0 and g.ph == 0 and g.pw == 0
            and g.OD == g.D and g.OH == g.H and g.OW == g.W)


cdef double _virtual_waste(cc_conv_geom g):
    """Computed / kept output pixels of the padded-grid (virtual pixel) scheme."""
    cdef Py_ssize_t Hp = g.OH + (g.KH - 1) * g.dh // g.sh, Wp = g.OW + (g.KW - 1) * g.dw // g.sw
    cdef Py_ssize_t VP = ((g.OD - 1) * Hp + g.OH - 1) * Wp + g.OW
    return VP / <double> (g.OD * g.OH * g.OW)


cdef _run_nchw_virtual(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
                       const floating *wpre, const floating *wpix,
                       floating[:, :, :, :, ::1] out, const floating *bp,
                       cc_conv_geom geom, Py_ssize_t N, Py_ssize_t G, Py_ssize_t O, int MR,
                       int NR, Py_ssize_t KC, int nthreads, bint pixrow, bint cl=False):
    # (per stride phase) grid covering every tap of every output pixel
    # cl: x is a channels-first copy of a channels-last input, run on the pixel rows
    # (_use_pixrow_nhwc said so); wpre: its channels-last panels
    cdef Py_ssize_t Dp = geom.OD + (geom.KD - 1) * geom.dd // geom.sd
    cdef Py_ssize_t Hp = geom.OH + (geom.KH - 1) * geom.dh // geom.sh
    cdef Py_ssize_t Wp = geom.OW + (geom.KW - 1) * geom.dw // geom.sw
    cdef Py_ssize_t Og = O // G
    cdef Py_ssize_t VP = ((geom.OD - 1) * Hp + geom.OH - 1) * Wp + geom.OW
    cdef Py_ssize_t mb, nmb, nb, nnb, nct
    cdef int MRX = cconv_pixrow_max_f32() if floating is float else cconv_pixrow_max_f64()
    # whole images per thread need no split inside an image
    imgs = N % nthreads == 0 or N >= 4 * nthreads
    if cl or pixrow:
        # channel blocks of up to 256 (their B panels of one KC block stay in L2), row
        # blocks whose output tile stays under 64K elements
        mb, nmb = _split(Og, 256, NR)
        nct = max(1, 65536 // (mb * geom.OW))
        mb, nmb, nb, nnb = _blocking(1 if imgs else G, Og, geom.OD * geom.OH, NR, 1, 256, nct,
                                     1 if imgs else nthreads)
    else:
        MRX = 0
        mb, nmb = _split(Og, MC_ROWS, MR)
        nct = max(NR, min(384, (65536 // mb) // NR * NR))
        mb, nmb, nb, nnb = _blocking(1 if imgs else G, Og, VP, MR, NR, MC_ROWS, nct,
                                     1 if imgs else nthreads)
    _nchw_virtual[floating](&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0],
                            wpix if MRX > 0 and not cl else wpre, bp, &out[0, 0, 0, 0, 0],
                            geom, Dp, Hp, Wp, N, G, O, nb, nnb, mb, nmb, MR, NR, KC, MRX, cl,
                            nthreads)


cdef enum:
    # pixel rows need a reduction this long: each tile call loads and stores its C tile
    # (CIFAR 3x3 3->32, K = 27: 0.37 ms against 0.34 on the panels)
    PIXROW_MIN_K = 64
    # the panels' cost factor where they gather (no padded grid): see _use_pixrow
    PIXROW_GATHER_PENALTY = 4


# None: the pixel-row kernels where the model below picks them; False / True: never /
# wherever they can run (tests and A/B timings compare the two paths).
PIXROW = None


cdef inline Py_ssize_t _panel_cols(Py_ssize_t n, int NR) noexcept nogil:
    # columns computed for n output channels in NR-column panels: a last panel of at
    # most NR/2 runs the AVX-512 half-width kernels (gemm.c, pixrow_impl.h)
    cdef Py_ssize_t full = n // NR * NR
    if n == full:
        return n
    if n - full <= NR // 2 and cconv_isa_active() == 2:  # CCONV_ISA_AVX512
        return full + NR // 2
    return full + NR


def panel_cols(Py_ssize_t n, dtype):
    """Columns the panel kernels of the active ISA path compute for n output channels
    (n rounded up to NR, or to NR/2 for a last panel the half-width kernels take)."""
    return _panel_cols(n, cconv_nr_f32() if np.dtype(dtype) == np.float32 else cconv_nr_f64())


cdef bint _use_pixrow(cc_conv_geom g, Py_ssize_t Og, int MR, int NR, int MRX):
    """Pixel rows instead of the panels: when they compute fewer padded products (rows
    tile exactly; the panels round the pixels up to NR, on the padded grid when its
    waste is at most 1.5 (_virtual_waste), and Og up to MR). The padded copy they read
    is the same as the padded grid's.
    Measured, 2 threads, float32, ms (panels / pixel rows): 3x3 512@7 2.49 / 1.80,
    256@14 1.62 / 1.39, 128@28 1.48 / 1.25, 64@56 1.60 / 1.20, 3x3 s2 128@56 1.53 / 1.35,
    CIFAR 32->64 16x16 batch 16 1.16 / 0.89. Float64 pointwise problems lost while the
    channels-first tiles went out element by element (1x1 256->64 at 56x56 1.52 / 2.88);
    with unpack.h's register transposes (7 rotated rounds, pixel rows / panels, 2
    threads): 1x1 256->64 at 56x56 batch 8 0.69, batch 1 0.76, at 28x28 0.69, 1024->512
    at 14x14 0.63, 2048->512 at 7x7 0.53; 1024->256 at 14x14 batch 1 0.93 in some
    processes, 1.3 in others, as in float32 there (0.88 / 1.20): its weights, packed on
    the fly, come from memory whenever the host's shared cache has lost them (float32,
    fresh processes: 0.55 or 0.76 ms; with cconv.pack_weights 0.55 either way)."""
    if PIXROW is False or MRX <= 0 or g.C * g.KD * g.KH * g.KW < PIXROW_MIN_K:
        return False
    if PIXROW is True:
        return True
    cdef Py_ssize_t P = g.OD * g.OH * g.OW
    cdef Py_ssize_t Hp = g.OH + (g.KH - 1) * g.dh // g.sh, Wp = g.OW + (g.KW - 1) * g.dw // g.sw
    cdef Py_ssize_t VP = ((g.OD - 1) * Hp + g.OH - 1) * Wp + g.OW
    cdef bint grid = _virtual_waste(g) <= 1.5
    cdef double virt = <double> _cdiv(VP if grid else P, NR) * NR * (_cdiv(Og, MR) * MR)
    cdef double pix = <double> P * _panel_cols(Og, NR)
    if not grid:
        # the panels then gather every column (cconv_pack_b_im2col_nchw, ~2 ns an
        # element), used by only Og rows: measured 2 threads, float32, batch 8, 48-128
        # channels, pixel rows / panels 0.19 (7x7 images, 7x7 kernel, Og 8-24), 0.62-0.75
        # (5x5 kernel, 3x3 on 5x5 images), 1.07 at worst (7x7 on 14x14, Og 8)
        virt *= PIXROW_GATHER_PENALTY
    return pix < 0.93 * virt


cdef bint _use_pixrow_nhwc(cc_conv_geom g, Py_ssize_t N, Py_ssize_t Og, int MR, int NR,
                           int MRX):
    """Channels-last on the pixel rows, over a channels-first copy of the input: where
    the indirect kernel's MR-pixel tiles waste much (small images: 49 pixels in 60 rows).
    3x3 512@7, float32: 2.07 -> 1.44 ms at 2 threads, 3.60 -> 2.71 at 1 thread. Not where
    the indirect kernel's skipped padding taps (_skip_exec) save more than the tiles
    waste: 7x7 dilation 2 on 7x7 images leaves 0.57 of its tile work."""
    if PIXROW is False or MRX <= 0 or g.C * g.KD * g.KH * g.KW < PIXROW_MIN_K:
        return False
    if g.C < INDIRECT_MIN_CHANNELS:
        return False
    if PIXROW is True:
        return True
    cdef Py_ssize_t rows = N * g.OD * g.OH * g.OW
    return rows < 0.93 * (_cdiv(rows, MR) * MR) * _skip_exec(&g, N, MR)


def pixrow_path(tuple osp, tuple ksp, tuple stride, tuple dil, Py_ssize_t Cg, Py_ssize_t Og,
                dtype):
    """Whether a channels-first im2col problem (3-D sizes) runs the pixel-row kernels."""
    cdef cc_conv_geom g = _geom((1, 1, 1), ksp, osp, Cg, Cg, stride, (0, 0, 0), dil)
    cdef int MR, NR, MRX
    if np.dtype(dtype) == np.float32:
        MR, NR, MRX = cconv_mr_f32(), cconv_nr_f32(), cconv_pixrow_max_f32()
    else:
        MR, NR, MRX = cconv_mr_f64(), cconv_nr_f64(), cconv_pixrow_max_f64()
    return _use_pixrow(g, Og, MR, NR, MRX)


cdef bint PW_GROUPS_ON = True


def _set_pointwise_groups(bint on):
    """A-B / test switch for _pointwise_groups."""
    global PW_GROUPS_ON
    PW_GROUPS_ON = on


cdef inline bint _pw_groups_channels(Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t Og) noexcept nogil:
    # the channel counts _pointwise_groups takes: under PW_GROUPS_MAX_CG per group, or
    # exactly that many with at least twice as many outputs per group
    return PW_GROUPS_ON and G > 1 and (Cg < PW_GROUPS_MAX_CG
                                       or (Cg == PW_GROUPS_MAX_CG and Og >= 2 * Cg))


def pointwise_groups_channels(Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t Og):
    """Whether a channels-last grouped 1x1 problem's channel counts run the GEMMs per
    group (_pointwise_groups; the caller checks stride 1 and no padding)."""
    return _pw_groups_channels(G, Cg, Og)


def _run(const floating[:, :, :, :, ::1] x, const floating[:, :, :, :, ::1] w,
         floating[:, :, :, :, ::1] out, object bias, tuple stride, tuple pad, tuple dil,
         Py_ssize_t G, bint channels_last, int nthreads, object packed,
         object pixrow_packed=None):
    cdef const floating[::1] b
    cdef const floating[::1] pk
    cdef const floating[::1] ppk
    cdef const floating *bp = NULL
    cdef const floating *wpre = NULL
    cdef const floating *wpix = NULL
    cdef cc_conv_geom geom
    cdef Py_ssize_t N = x.shape[0], O, Cg, P, pb, npb, wb, nwb, KC, punit, ptarget, wunit
    cdef Py_ssize_t K, Og, itemsize = sizeof(floating)
    cdef int MR, NR, MRX
    cdef bint shared, skip
    cdef int rowed = 0, skip_mode
    if bias is not None:
        b = bias
        bp = &b[0]
    if packed is not None:
        pk = packed
        wpre = &pk[0]
    if pixrow_packed is not None:
        ppk = pixrow_packed
        wpix = &ppk[0]
    if floating is float:
        MR, NR, KC, MRX = cconv_mr_f32(), cconv_nr_f32(), CCONV_KC_F32, cconv_pixrow_max_f32()
    else:
        MR, NR, KC, MRX = cconv_mr_f64(), cconv_nr_f64(), CCONV_KC_F64, cconv_pixrow_max_f64()
    if channels_last:
        O = w.shape[4]
        Cg = w.shape[3]
        geom = _geom((x.shape[1], x.shape[2], x.shape[3]), (w.shape[0], w.shape[1], w.shape[2]),
                     (out.shape[1], out.shape[2], out.shape[3]), Cg, x.shape[4], stride, pad, dil)
    else:
        O = w.shape[0]
        Cg = w.shape[1]
        geom = _geom((x.shape[2], x.shape[3], x.shape[4]), (w.shape[2], w.shape[3], w.shape[4]),
                     (out.shape[2], out.shape[3], out.shape[4]), Cg, x.shape[1], stride, pad, dil)
    P = geom.OD * geom.OH * geom.OW
    K = Cg * geom.KD * geom.KH * geom.KW
    Og = O // G
    if (channels_last and K == Cg and _pw_groups_channels(G, Cg, Og)
            and _pointwise_grid(&geom)):
        # grouped 1x1, stride 1, no padding, few channels per group: per group,
        # out[:, group's columns] (N*P x Og, row stride O) = x[:, group's channels] (N*P
        # x Cg, row stride C) . W_g (Cg x Og, row stride O), read and written in place
        # (the dense branch below, one group at a time; the same bits as every other
        # kernel: one running FMA sum over the group's channels from +0), then the bias.
        # Against the tile kernels below (2 threads, float32, 11 rounds): Cg 8 0.54-0.79,
        # Cg 16 with Og 64 0.73-0.88; but Cg 16 with Og 16 1.38, Cg 64-128 1.03-1.80
        _pointwise_groups(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], bp, &out[0, 0, 0, 0, 0],
                          N * P, G, Cg, Og, nthreads)
        return
    if channels_last and _use_pixrow_nhwc(geom, N, Og, MR, NR, MRX):
        xc = np.empty((N, x.shape[4], x.shape[1], x.shape[2], x.shape[3]),
                      np.float32 if floating is float else np.float64)
        _core.to_channels_first_into(x, xc, nthreads)
        _run_nchw_virtual[floating](xc, w, wpre, NULL, out, bp, geom, N, G, O, MR, NR, KC,
                                    nthreads, True, True)
        return
    cdef Py_ssize_t r, j, M
    cdef int rc
    cdef floating *op
    cdef const floating *xp
    cdef Py_ssize_t nblk, blk, b0
    if (channels_last and G == 1 and K == Cg and geom.ctot == Cg
            and O <= (PWFEW_MAX_O_F32 if sizeof(floating) == 4 else PWFEW_MAX_O_F64)
            and PWFEW and cconv_isa_active() != 0
            and _pointwise_grid(&geom)):
        # 1x1, one group, at most PWFEW_MAX_O outputs: x read once against O
        # accumulators (pwfew.h: the GEMM's order and bits), blocks of pixels per thread,
        # then the bias
        M = N * P
        op = &out[0, 0, 0, 0, 0]
        xp = &x[0, 0, 0, 0, 0]
        nblk = (M + PWFEW_ROWS - 1) // PWFEW_ROWS
        with nogil:
            for blk in prange(nblk, schedule="static", num_threads=nthreads):
                b0 = blk * PWFEW_ROWS
                if floating is float:
                    cconv_pwfew_f32(xp + b0 * K, min(PWFEW_ROWS, M - b0), K,
                                    &w[0, 0, 0, 0, 0], O, op + b0 * O, O)
                else:
                    cconv_pwfew_f64(xp + b0 * K, min(PWFEW_ROWS, M - b0), K,
                                    &w[0, 0, 0, 0, 0], O, op + b0 * O, O)
                if bp != NULL:
                    for r in range(b0, min(M, b0 + PWFEW_ROWS)):
                        for j in range(O):
                            op[r * O + j] = op[r * O + j] + bp[j]
        return
    if (channels_last and G == 1 and K == Cg and geom.ctot == Cg and K <= PW_GEMM_MAX_K
            and _pointwise_grid(&geom)):
        # 1x1, stride 1, no padding, one group, few input channels: out (N*P x O) =
        # x (N*P x C) . W (C x O) on the GEMM core's own driver (each element one running
        # FMA sum over k in increasing order from +0, as the indirect kernel sums it: the
        # same bits), then the bias. Against the kernels below (2 threads, float32,
        # 15 interleaved rounds, GEMM / them): C = 32-128 0.70-0.90 (64 -> 256 at 28x28
        # batch 8 0.82, also float64 0.84); C = 256 0.99-1.05, 512 1.01, 1024 1.25
        M = N * P
        op = &out[0, 0, 0, 0, 0]
        with nogil:
            if floating is float:
                rc = cconv_gemm_f32(M, O, K, &x[0, 0, 0, 0, 0], K, 1, &w[0, 0, 0, 0, 0], O, 1,
                                    op, O, nthreads)
            else:
                rc = cconv_gemm_f64(M, O, K, &x[0, 0, 0, 0, 0], K, 1, &w[0, 0, 0, 0, 0], O, 1,
                                    op, O, nthreads)
            if rc == 0 and bp != NULL:
                for r in prange(M, schedule="static", num_threads=nthreads):
                    for j in range(O):
                        op[r * O + j] = op[r * O + j] + bp[j]
        if rc != 0:
            raise MemoryError("conv (im2col): the GEMM could not allocate its packing buffers")
        return
    if channels_last:
        # pixel blocks first, output-channel blocks when the pixels run out
        skip = (_skip_exec(&geom, N, MR, &rowed) <= SKIP_PAD_MAX_EXEC
                and (SKIP_PAD_ASSUME_FINITE or _all_finite(&w[0, 0, 0, 0, 0], O * K, nthreads)))
        if SKIP_PAD_ROW_TILES is not None:
            rowed = SKIP_PAD_ROW_TILES
        skip_mode = (2 if rowed else 1) if skip else 0
        if Cg >= INDIRECT_MIN_CHANNELS and (geom.ctot * itemsize) % 4096 != 0:
            # A rows read in place: no cols at all (but not rows 4 KB apart: an MR-row
            # tile's rows then share one L1 set; 1024->256 1x1 at 14x14 ran 1.3x slower)
            wb, nwb, pb, npb = _blocking(G, Og, N * P, NR, MR, NC_COLS, 240, nthreads)
            _nhwc_indirect(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], wpre, bp, &out[0, 0, 0, 0, 0],
                           geom, N, G, O, pb, npb, wb, nwb, MR, NR, KC, nthreads, skip_mode)
        else:
            wb, nwb, pb, npb = _blocking(N * G, Og, P, NR, MR, NC_COLS, 240, nthreads)
            _nhwc_rows(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], wpre, bp, &out[0, 0, 0, 0, 0],
                       geom, N, G, O, pb, npb, wb, nwb, MR, NR, KC, nthreads, skip_mode)
        return
    if _use_pixrow(geom, Og, MR, NR, MRX):
        _run_nchw_virtual(x, w, wpre, wpix, out, bp, geom, N, G, O, MR, NR, KC, nthreads, True)
        return
    if _virtual_waste(geom) <= 1.5:
        _run_nchw_virtual(x, w, wpre, wpix, out, bp, geom, N, G, O, MR, NR, KC, nthreads,
                          False)
        return
    pb, npb = _split(P, 384, NR)
    shared = (nthreads > 1 and N * G * npb < 2 * nthreads
              and K * (P + NR) * itemsize <= SHARED_MAX_BYTES)
    if shared:
        # split the weight rows evenly over the threads
        wb, nwb = _split(Og, _cdiv(Og, nthreads), MR)
    else:
        wb, nwb = _split(Og, MC_ROWS, MR)
        if nthreads > 1:
            _, _, pb, npb = _blocking(N * G, 1, P, 1, NR, 1, 384, nthreads)
    _nchw(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], wpre, bp, &out[0, 0, 0, 0, 0], geom,
          N, G, O, shared, pb, npb, wb, nwb, MR, NR, KC, nthreads)


cdef int _pointwise_groups(const floating *x, const floating *w, const floating *bp,
                           floating *out, Py_ssize_t M, Py_ssize_t G, Py_ssize_t Cg,
                           Py_ssize_t Og, int nthreads) except -1:
    """Channels-last grouped 1x1 (stride 1, no padding): blocks of PW_GROUP_ROWS pixels
    over the threads, each running every group's GEMM on the GEMM core's driver (one
    thread; A, B and C read and written in place) and then the bias, so a block's
    output rows are written whole while in cache (a GEMM per group over all pixels, each
    writing its slice of every row, took 2.5x the time of a dense layer as wide)."""
    cdef Py_ssize_t C = G * Cg, O = G * Og, gi, r, j, blk, m0, mc
    cdef Py_ssize_t nblk = (M + PW_GROUP_ROWS - 1) // PW_GROUP_ROWS
    cdef int failed = 0
    cdef int *failed_p = &failed
    cdef int rc
    for blk in prange(nblk, nogil=True, schedule="static", num_threads=nthreads):
        m0 = blk * PW_GROUP_ROWS
        mc = M - m0
        if mc > PW_GROUP_ROWS:
            mc = PW_GROUP_ROWS
        for gi in range(G):
            if floating is float:
                rc = cconv_gemm_f32(mc, Og, Cg, x + m0 * C + gi * Cg, C, 1, w + gi * Og, O, 1,
                                    out + m0 * O + gi * Og, O, 1)
            else:
                rc = cconv_gemm_f64(mc, Og, Cg, x + m0 * C + gi * Cg, C, 1, w + gi * Og, O, 1,
                                    out + m0 * O + gi * Og, O, 1)
            if rc != 0:
                failed_p[0] = 1  # through a pointer: a plain assignment is thread-private
        if bp != NULL:
            for r in range(m0, m0 + mc):
                for j in range(O):
                    out[r * O + j] = out[r * O + j] + bp[j]
    if failed:
        raise MemoryError("conv (im2col): the GEMM could not allocate its packing buffers")
    return 0


def _pack_into(const floating[:, :, :, :, ::1] w, floating[::1] dst, Py_ssize_t G,
               bint channels_last, int nthreads, bint pixrow=False):
    # straight into dst, in parallel (through the scratch, the serial copy out took a
    # fifth of pack_weights for 512 x 512 x 3 x 3)
    cdef Py_ssize_t O, Cg, K
    cdef int MR, NR
    if floating is float:
        MR, NR = cconv_mr_f32(), cconv_nr_f32()
    else:
        MR, NR = cconv_mr_f64(), cconv_nr_f64()
    if channels_last:
        O, Cg = w.shape[4], w.shape[3]
        K = Cg * w.shape[0] * w.shape[1] * w.shape[2]
        with nogil:
            _pack_weights_nhwc_into(&w[0, 0, 0, 0, 0], G, O // G, K, NR, &dst[0], nthreads)
    else:
        O, Cg = w.shape[0], w.shape[1]
        K = Cg * w.shape[2] * w.shape[3] * w.shape[4]
        with nogil:
            _pack_weights_nchw_into(&w[0, 0, 0, 0, 0], G, O // G, K, NR if pixrow else MR,
                                    &dst[0], nthreads)


def packed_size(w_shape, groups, channels_last, dtype, pixrow=False):
    """Elements of the packed weight buffer for the active ISA tile (pixrow: the NR-column
    panels of the channels-first pixel-row kernels)."""
    MR, NR, _ = tile_shape(dtype)
    if pixrow:
        O, Cg = w_shape[0], w_shape[1]
        return groups * -(-(O // groups) // NR) * NR * Cg * w_shape[2] * w_shape[3] * w_shape[4]
    if channels_last:
        O, Cg = w_shape[4], w_shape[3]
        K = Cg * w_shape[0] * w_shape[1] * w_shape[2]
        return groups * -(-(O // groups) // NR) * NR * K
    O, Cg = w_shape[0], w_shape[1]
    K = Cg * w_shape[2] * w_shape[3] * w_shape[4]
    return groups * -(-(O // groups) // MR) * MR * K


def pack_weights(w5, groups, channels_last, nthreads, pixrow=False):
    """Weights (5-D, cconv's layout) packed into the GEMM panels the im2col drivers use
    (MR-row panels for channels-first, NR-column panels for channels-last; with pixrow,
    channels-first weights into the NR-column panels of the pixel-row kernels)."""
    dst = np.empty(packed_size(w5.shape, groups, channels_last, w5.dtype, pixrow),
                   dtype=w5.dtype)
    _pack_into(w5, dst, groups, channels_last, nthreads, pixrow)
    return dst


def conv_forward(x5, w5, bias, out5, stride, pad, dil, groups, channels_last, nthreads,
                 packed=None, pixrow_packed=None):
    """Implicit-GEMM forward convolution into out5 (see functional._forward).
    `packed`: the output of pack_weights for w5 under the active ISA, or None;
    `pixrow_packed`: pack_weights(..., pixrow=True), used when the pixel-row kernels run."""
    _run(x5, w5, out5, bias, stride, pad, dil, groups, channels_last, nthreads, packed,
         pixrow_packed)


# Channels-last dense 1x1 layers with at most PWFEW_MAX_O[itemsize] outputs run the
# pwfew.h kernel on the SIMD paths (_plan.pointwise_few_outputs); PWFEW = False sends
# them to the GEMM again (same bits), for tests and A/B runs.
PWFEW_MAX_O = {4: PWFEW_MAX_O_F32, 8: PWFEW_MAX_O_F64}
PWFEW = True
