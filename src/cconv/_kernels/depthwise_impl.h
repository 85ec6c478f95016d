/* Depthwise kernels, written once and instantiated per (ISA path, dtype) by
 * depthwise.c, which defines before each inclusion:
 *   T            scalar type              VEC   vector type       VL  lanes
 *   SFX          name suffix              DW_TARGET  function attributes
 *   V_LOAD(p) V_LOADM(p, n) V_STORE(p, v) V_STOREM(p, v, n) V_SET1(s) V_ZERO()
 *   V_FMA(a, b, c) = a * b + c with one rounding.
 *   V_EVEN2(a, b) the even lanes of a then of b (lanes 0, 2, .. of the 2*VL values a:b).
 *   V_KEEP(v)     v stays in a register here (an empty asm; nothing on the portable path).
 * (n: number of valid leading lanes, 1..VL; masked loads read nothing past them.)
 * See depthwise.h for the arithmetic contract; every path below follows it.
 */

#define DW_CAT2(a, b) a##_##b
#define DW_CAT(a, b) DW_CAT2(a, b)
#define FN(name) DW_CAT(name, SFX)
/* NCHW register tile: 4 output rows x DW_NCHW_V vectors (set per path by depthwise.c,
 * at most DW_MAX_COLS / 16). */
#define DW_INLINE static inline __attribute__((always_inline)) DW_TARGET

/* The first n lanes (1..VL) at p: a masked access when n < VL, reading or writing
 * nothing past them. */
DW_INLINE VEC FN(load_n)(const T *p, int n)
{
    return n < VL ? V_LOADM(p, n) : V_LOAD(p);
}

/* Streaming stores of whole vectors at out + (multiples of VL) can be used: out aligned
 * to a vector, C a multiple of VL, more than one lane. */
static inline int FN(dw_stream_ok)(const T *out, cc_idx C)
{
    return VL > 1 && (uintptr_t)out % (VL * sizeof(T)) == 0 && C % VL == 0;
}

DW_INLINE void FN(store_n)(T *p, VEC v, int n)
{
    if (n < VL)
        V_STOREM(p, v, n);
    else
        V_STORE(p, v);
}

/* ----------------------------------------------------------------------------------
 * NCHW: the input rows an item needs are copied into a zero-padded scratch, split into
 * sw phases (phase q holds padded columns q, q+sw, q+2sw, ...), so that for every
 * stride the taps of a run of consecutive outputs read consecutive scratch elements:
 * padded column ow*sw + kw*dw is phase (kw*dw) % sw, element ow + (kw*dw) / sw.
 * The kernel then never checks padding and its inner loop is one unaligned vector load
 * and one FMA per (output vector, tap), register-tiled over R rows x V vectors.
 * -------------------------------------------------------------------------------- */

/* R output rows x V vectors of one output plane; outputs ow0 .. ow0 + V*VL - 1 of each
 * row, the last vector holding nlast valid lanes. */
DW_INLINE void FN(nchw_tile)(const T *restrict s, cc_idx rstride, cc_idx khstride,
                             cc_idx kdstride, const cc_idx *restrict kwoff,
                             const T *restrict wt, cc_idx KD, cc_idx KH, cc_idx KW, T b,
                             T *restrict o, cc_idx ldo, int nlast, const int R, const int V)
{
    VEC acc[4][DW_NCHW_V];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            acc[r][v] = V_SET1(b);
    for (cc_idx kd = 0; kd < KD; kd++) {
        for (cc_idx kh = 0; kh < KH; kh++) {
            /* one base pointer per row; each tap adds the same column offset, so every
             * load below is [row pointer + offset*size + constant] */
            const T *rp[4];
            for (int r = 0; r < R; r++)
                rp[r] = s + kd * kdstride + kh * khstride + r * rstride;
            for (cc_idx kw = 0; kw < KW; kw++) {
                const VEC wv = V_SET1(wt[kw]);
                const cc_idx off = kwoff[kw];
                for (int r = 0; r < R; r++)
                    for (int v = 0; v < V; v++)
                        acc[r][v] = V_FMA(V_LOAD(rp[r] + off + v * VL), wv, acc[r][v]);
            }
            wt += KW;
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            FN(store_n)(o + r * ldo + v * VL, acc[r][v], v == V - 1 ? nlast : VL);
}

/* The same tile for row stride 1 and row dilation 1 (output row r, tap kh reads scratch
 * row r + kh): walks the R + KH - 1 input rows once, each input vector loaded once for
 * every output row that reads it (half the loads of nchw_tile for 3x3 at R = 4, where
 * the loads, not the FMAs, bound it). Each output still sums its taps in (kd, kh, kw)
 * order from the bias: the same bits as nchw_tile. */
DW_INLINE void FN(nchw_tile_s1)(const T *restrict s, cc_idx rowlen, cc_idx kdstride,
                                const cc_idx *restrict kwoff, const T *restrict wt,
                                cc_idx KD, cc_idx KH, cc_idx KW, T b, T *restrict o,
                                cc_idx ldo, int nlast, const int R, const int V)
{
    VEC acc[4][DW_NCHW_V];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int v = 0; v < V; v++)
            acc[r][v] = V_SET1(b);
    if (KD == 1 && KH == 3 && KW == 3) {
        /* 3x3 (the caller passes the sizes as constants): the 9 weights stay in
         * registers (16 accumulators + 4 inputs + 9 weights of the 32 zmm) and the row
         * loop unrolls, so no tap-range branches and no weight reloads remain */
        VEC wr[9];
        _Pragma("GCC unroll 9")
        for (int t = 0; t < 9; t++)
            wr[t] = V_SET1(wt[t]);
        _Pragma("GCC unroll 6")
        for (int i = 0; i < R + 2; i++) {
            const T *ip = s + i * rowlen;
            _Pragma("GCC unroll 3")
            for (int kw = 0; kw < 3; kw++) {
                VEC xv[DW_NCHW_V];
                _Pragma("GCC unroll 4")
                for (int v = 0; v < V; v++)
                    xv[v] = V_LOAD(ip + kwoff[kw] + v * VL);
                _Pragma("GCC unroll 4")
                for (int r = 0; r < R; r++) {
                    const int kh = i - r;
                    if (kh < 0 || kh >= 3)
                        continue;
                    _Pragma("GCC unroll 4")
                    for (int v = 0; v < V; v++)
                        acc[r][v] = V_FMA(xv[v], wr[kh * 3 + kw], acc[r][v]);
                }
            }
        }
    } else {
        for (cc_idx kd = 0; kd < KD; kd++) {
            const T *wd = wt + kd * KH * KW;
            for (cc_idx i = 0; i < R + KH - 1; i++) {
                const T *ip = s + kd * kdstride + i * rowlen;
                for (cc_idx kw = 0; kw < KW; kw++) {
                    VEC xv[DW_NCHW_V];
                    _Pragma("GCC unroll 4")
                    for (int v = 0; v < V; v++)
                        xv[v] = V_LOAD(ip + kwoff[kw] + v * VL);
                    _Pragma("GCC unroll 4")
                    for (int r = 0; r < R; r++) {
                        const cc_idx kh = i - r;
                        if (kh < 0 || kh >= KH)
                            continue;
                        const VEC wv = V_SET1(wd[kh * KW + kw]);
                        _Pragma("GCC unroll 4")
                        for (int v = 0; v < V; v++)
                            acc[r][v] = V_FMA(xv[v], wv, acc[r][v]);
                    }
                }
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int v = 0; v < V; v++)
            FN(store_n)(o + r * ldo + v * VL, acc[r][v], v == V - 1 ? nlast : VL);
}

/* dst[0:n] = src[0:n] / = +0, vector by vector (a masked last one): a scratch row
 * holds only a few vectors, where calls to memcpy / memset cost more than the copy.
 * V_KEEP hides the copy from GCC, which otherwise turns these loops back into memmove /
 * memset calls (perf, NCHW 3x3 144@56: memmove 13% of the samples). */
DW_INLINE void FN(row_copy)(T *restrict dst, const T *restrict src, cc_idx n)
{
    cc_idx t = 0;
    for (; t + VL <= n; t += VL) {
        VEC v = V_LOAD(src + t);
        V_KEEP(v);
        V_STORE(dst + t, v);
    }
    if (t < n)
        V_STOREM(dst + t, V_LOADM(src + t, (int)(n - t)), (int)(n - t));
}

DW_INLINE void FN(row_zero)(T *restrict dst, cc_idx n)
{
    cc_idx t = 0;
    VEC z = V_ZERO();
    V_KEEP(z);
    for (; t + VL <= n; t += VL)
        V_STORE(dst + t, z);
    if (t < n)
        V_STOREM(dst + t, V_ZERO(), (int)(n - t));
}

/* Copy input rows of nc channels (x: the first one, xvol elements apart) into the
 * phase-split zero-padded scratch (layout above; one slab of KD * nrows rows per
 * channel, cstride elements apart). Phase by phase, so that each phase's bounds are
 * worked out once (two divisions had cost as much as the copy): a row of a channel is
 * then three inline vector runs, stride 2 deinterleaving with V_EVEN2. */
DW_INLINE void FN(nchw_fill)(const cc_dw_geom *g, const T *x, cc_idx xvol, cc_idx nc,
                             cc_idx od, cc_idx oh0, cc_idx nrows, cc_idx PL, T *scratch,
                             cc_idx cstride)
{
    const cc_idx sw = g->sw, W = g->W, pw = g->pw, rowlen = sw * PL;
    for (cc_idx q = 0; q < sw; q++) {
        cc_idx lo, hi;
        cc_dw_phase_cols(g, q, PL, &lo, &hi);
        for (cc_idx kd = 0; kd < g->KD; kd++) {
            const cc_idx id = od * g->sd + kd * g->dd - g->pd;
            for (cc_idx ri = 0; ri < nrows; ri++) {
                const cc_idx ih = oh0 * g->sh - g->ph + ri;
                T *row = scratch + (kd * nrows + ri) * rowlen + q * PL;
                if (id < 0 || id >= g->D || ih < 0 || ih >= g->H) {
                    for (cc_idx c = 0; c < nc; c++)
                        FN(row_zero)(row + c * cstride, PL);
                    continue;
                }
                const T *src = x + (id * g->H + ih) * W + q - pw;
                for (cc_idx c = 0; c < nc; c++) {
                    T *restrict dst = row + c * cstride;
                    const T *restrict sp = src + c * xvol; /* sp[sw * t] -> dst[t] */
                    FN(row_zero)(dst, lo);
                    if (sw == 1) {
                        FN(row_copy)(dst + lo, sp + lo, hi - lo);
                    } else if (sw == 2) {
                        cc_idx t = lo;
                        /* whole vectors while both loads stay below sp[2 * hi - 2] */
                        for (; t + VL < hi; t += VL)
                            V_STORE(dst + t, V_EVEN2(V_LOAD(sp + 2 * t), V_LOAD(sp + 2 * t + VL)));
                        if (t < hi) {
                            const int n = (int)(hi - t), m = 2 * n - 1; /* sp[2t .. 2t+m) */
                            const VEC a = m >= VL ? V_LOAD(sp + 2 * t) : V_LOADM(sp + 2 * t, m);
                            const VEC b = m > VL ? V_LOADM(sp + 2 * t + VL, m - VL) : V_ZERO();
                            V_STOREM(dst + t, V_EVEN2(a, b), n);
                        }
                    } else {
                        for (cc_idx t = lo; t < hi; t++)
                            dst[t] = sp[sw * t];
                    }
                    FN(row_zero)(dst + hi, PL - hi);
                }
            }
        }
    }
}

#ifdef V_LOADZ
/* ----------------------------------------------------------------------------------
 * NCHW direct, AVX-512 only (V_LOADZ: zero-masked loads): 2-D, stride 1, dilation 1,
 * square KS x KS kernels (3, 5, 7). Reads x in place, no scratch copy: lanes whose
 * input column lies outside [0, W) are loaded as +0 by a lane mask, and input rows
 * outside [0, H) read a zeroed row (zrow). Every output still starts from the bias and
 * adds fma(x, w) over (kh, kw) in increasing order, padding taps reading +0: the same
 * bits as the scratch-based tiles above (and every other path). The copy into the
 * padded scratch had cost 40% of a 3x3 56x56 plane with the data in L1.
 * -------------------------------------------------------------------------------- */

/* The FMAs of input row i (of the tile's SV*(R-1)+KS), tap column kw: for each of the
 * tile's R output rows r that reads it (kh = i - SV*r in [0, KS)), vectors v0 .. v0+NV-1
 * of row r add xv[0 .. NV-1] times w[kh, kw] (wr: the 3x3 weights broadcast, wt: the
 * weights). */
DW_INLINE void FN(direct_row_fmas)(VEC acc[4][DW_NCHW_V], const VEC *xv, const int v0,
                                   const int NV, int i, int kw, const VEC *wr,
                                   const T *restrict wt, const int KS, const int SV,
                                   const int R)
{
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++) {
        const int kh = i - SV * r;
        if (kh < 0 || kh >= KS)
            continue;
        const VEC wv = KS == 3 ? wr[kh * 3 + kw] : V_SET1(wt[kh * KS + kw]);
        _Pragma("GCC unroll 4")
        for (int v = 0; v < NV; v++)
            acc[r][v0 + v] = V_FMA(xv[v], wv, acc[r][v0 + v]);
    }
}

/* R output rows x V vectors: outputs ow0 .. ow0 + V*VL - 1 of rows oh0 .. oh0+R-1 (last
 * vector nlast valid lanes), stride SV (1 or 2) in both directions: output row r reads
 * input rows ih0 + SV*r + kh, output column ow0 + v*VL + l reads input column
 * iw0 + SV*(v*VL + l) + kw. xc: the channel's plane; ih0 = SV*oh0 - ph, iw0 = SV*ow0 - pw.
 * Stride 1: one load per vector, masked at the tile's end vectors (the driver splits a
 * tile whose middle vectors would reach the padding). Stride 2: per input row, two
 * masked loads per vector pair, split into even and odd columns (V_EVEN2, V_ODD2) and
 * shifted per tap (V_ALIGN). */
DW_INLINE void FN(nchw_direct_tile)(const T *restrict xc, const T *restrict zrow, cc_idx H,
                                    cc_idx W, cc_idx ih0, cc_idx iw0, const T *restrict wt,
                                    T b, T *restrict o, cc_idx ldo, int nlast, const int KS,
                                    const int SV, const int R, const int V)
{
    VEC acc[4][DW_NCHW_V];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int v = 0; v < V; v++)
            acc[r][v] = V_SET1(b);
    V_MASKT mf[7], ml[7]; /* stride 1: the end vectors' lane masks per kw */
    if (SV == 1) {
        _Pragma("GCC unroll 7")
        for (int kw = 0; kw < KS; kw++) {
            mf[kw] = V_LANES(iw0 + kw, W);
            ml[kw] = V_LANES(iw0 + (V - 1) * VL + kw, W);
        }
    }
    VEC wr[9];
    if (KS == 3) {
        _Pragma("GCC unroll 9")
        for (int t = 0; t < 9; t++)
            wr[t] = V_SET1(wt[t]);
    }
    _Pragma("GCC unroll 19")
    for (int i = 0; i < SV * (R - 1) + KS; i++) {
        const cc_idx ih = ih0 + i;
        const T *row = ih >= 0 && ih < H ? xc + ih * W : zrow;
        if (SV == 2) {
            /* each pair of input vectors split once into even and odd columns; tap kw
             * reads the even (kw even) or odd ones shifted by kw / 2 lanes, the next
             * pair's filling in: 2 loads and 2-3 shuffles per vector instead of 2 loads
             * and a shuffle per vector and tap */
            VEC e0, o0;
            {
                const cc_idx c0 = iw0;
                const VEC lo = V_LOADZ(V_LANES(c0, W), row + c0);
                const VEC hi = V_LOADZ(V_LANES(c0 + VL, W), row + c0 + VL);
                e0 = V_EVEN2(lo, hi);
                o0 = V_ODD2(lo, hi);
            }
            _Pragma("GCC unroll 4")
            for (int v = 0; v < V; v++) {
                const cc_idx c1 = iw0 + 2 * (v + 1) * VL;
                const VEC lo = V_LOADZ(V_LANES(c1, W), row + c1);
                const VEC hi = V_LOADZ(V_LANES(c1 + VL, W), row + c1 + VL);
                const VEC e1 = V_EVEN2(lo, hi), o1 = V_ODD2(lo, hi);
                _Pragma("GCC unroll 7")
                for (int kw = 0; kw < KS; kw++) {
                    const VEC xv = kw == 0   ? e0
                                   : kw == 1 ? o0
                                   : kw == 2 ? V_ALIGN(e1, e0, 1)
                                   : kw == 3 ? V_ALIGN(o1, o0, 1)
                                             : V_ALIGN(e1, e0, 2);
                    FN(direct_row_fmas)(acc, &xv, v, 1, i, kw, wr, wt, KS, SV, R);
                }
                e0 = e1;
                o0 = o1;
            }
            continue;
        }
        _Pragma("GCC unroll 7")
        for (int kw = 0; kw < KS; kw++) {
            VEC xv[DW_NCHW_V];
            _Pragma("GCC unroll 4")
            for (int v = 0; v < V; v++) {
                const cc_idx c0 = iw0 + SV * v * VL + kw;
                if (v == 0) {
                    xv[v] = V_LOADZ(V == 1 ? (V_MASKT)(mf[kw] & ml[kw]) : mf[kw], row + c0);
                } else if (v == V - 1) {
                    xv[v] = V_LOADZ(ml[kw], row + c0);
                } else {
                    xv[v] = V_LOAD(row + c0);
                }
                V_KEEP(xv[v]); /* GCC otherwise folds the load into each row's FMA */
            }
            FN(direct_row_fmas)(acc, xv, 0, V, i, kw, wr, wt, KS, SV, R);
        }
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int v = 0; v < V; v++)
            FN(store_n)(o + r * ldo + v * VL, acc[r][v], v == V - 1 ? nlast : VL);
}

/* One out-of-line function per kernel size (each gets its own register allocation). */
#define DW_DIRECT_FN(KSV, SV)                                                              \
    __attribute__((noinline)) DW_TARGET static void FN(nchw_direct_k##KSV##_s##SV)(        \
        const cc_dw_geom *g, const T *x, const T *w, const T *bias, T *out, cc_idx oh0,    \
        cc_idx oh1, const T *zrow)                                                         \
    {                                                                                      \
        const cc_idx OW = g->OW, plane = g->OH * OW, KT = KSV * KSV;                       \
        for (cc_idx m = 0; m < g->M; m++) {                                                \
            const T *wm = w + m * KT;                                                      \
            const T bm = bias ? bias[m] : (T)0;                                            \
            T *om = out + m * plane;                                                       \
            for (cc_idx r0 = oh0; r0 < oh1;) {                                             \
                const int R = oh1 - r0 >= 4 ? 4 : 1;                                       \
                for (cc_idx ow0 = 0; ow0 < OW; ow0 += DW_NCHW_V * VL) {                    \
                    const cc_idx left = OW - ow0;                                          \
                    const int nv = left >= DW_NCHW_V * VL ? DW_NCHW_V                      \
                                                          : (int)((left + VL - 1) / VL);   \
                    const int nlast = (int)(left - (cc_idx)(nv - 1) * VL < VL              \
                                            ? left - (cc_idx)(nv - 1) * VL : VL);          \
                    T *o = om + r0 * OW + ow0;                                             \
                    const cc_idx ih0 = r0 * SV - g->ph, iw0 = ow0 * SV - g->pw;                      \
                    /* the stride-1 tile loads its middle vectors unmasked: when one of   \
                     * them would reach into the padding (a padding wider than a vector,  \
                     * or a right padding past the last vector), two-vector tiles */      \
                    if (SV == 1 && nv > 2 &&                                               \
                        (iw0 + VL < 0 || iw0 + (nv - 1) * VL + KSV - 1 > g->W)) {          \
                        for (int v0 = 0; v0 < nv; v0 += 2) {                               \
                            const int n2 = nv - v0 >= 2 ? 2 : 1;                           \
                            const int nl2 = v0 + n2 == nv ? nlast : VL;                    \
                            const cc_idx c = (cc_idx)v0 * VL;                              \
                            if (R == 4 && n2 == 2)                                         \
                                FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0 + c, wm, bm, o + c, OW, nl2, KSV, SV, 4, 2); \
                            else if (R == 4)                                               \
                                FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0 + c, wm, bm, o + c, OW, nl2, KSV, SV, 4, 1); \
                            else if (n2 == 2)                                              \
                                FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0 + c, wm, bm, o + c, OW, nl2, KSV, SV, 1, 2); \
                            else                                                           \
                                FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0 + c, wm, bm, o + c, OW, nl2, KSV, SV, 1, 1); \
                        }                                                                  \
                        continue;                                                          \
                    }                                                                      \
                    if (R == 4) {                                                          \
                        switch (nv) {                                                      \
                        case 1: FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0, wm, bm, o, OW, nlast, KSV, SV, 4, 1); break; \
                        case 2: FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0, wm, bm, o, OW, nlast, KSV, SV, 4, 2); break; \
                        case 3: FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0, wm, bm, o, OW, nlast, KSV, SV, 4, 3); break; \
                        default: FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0, wm, bm, o, OW, nlast, KSV, SV, 4, 4); break; \
                        }                                                                  \
                    } else {                                                               \
                        switch (nv) {                                                      \
                        case 1: FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0, wm, bm, o, OW, nlast, KSV, SV, 1, 1); break; \
                        case 2: FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0, wm, bm, o, OW, nlast, KSV, SV, 1, 2); break; \
                        case 3: FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0, wm, bm, o, OW, nlast, KSV, SV, 1, 3); break; \
                        default: FN(nchw_direct_tile)(x, zrow, g->H, g->W, ih0, iw0, wm, bm, o, OW, nlast, KSV, SV, 1, 4); break; \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
                r0 += R;                                                                   \
            }                                                                              \
        }                                                                                  \
    }
DW_DIRECT_FN(3, 1)
DW_DIRECT_FN(5, 1)
DW_DIRECT_FN(7, 1)
DW_DIRECT_FN(3, 2)
DW_DIRECT_FN(5, 2)
#undef DW_DIRECT_FN

/* The problems the direct tiles take (DW_NCHW_V must be 4: the tile's switch). */
static inline int FN(nchw_direct_ok)(const cc_dw_geom *g)
{
    const int s1 = g->sh == 1 && g->sw == 1, s2 = g->sh == 2 && g->sw == 2;
    return DW_NCHW_V == 4 && g->KD == 1 && g->D == 1 && g->OD == 1 && g->KH == g->KW &&
           g->dh == 1 && g->dw == 1 &&
           ((s1 && (g->KH == 3 || g->KH == 5 || g->KH == 7)) ||
            (s2 && (g->KH == 3 || g->KH == 5)));
}
#endif

DW_TARGET static void FN(dw_nchw)(const cc_dw_geom *g, const T *x, const T *w, const T *bias,
                                  T *out, cc_idx od, cc_idx oh0, cc_idx oh1, T *scratch)
{
#ifdef V_LOADZ
    if (FN(nchw_direct_ok)(g)) {
        /* the scratch as the zero row: it holds at least W elements (sw * PL > W) */
        FN(row_zero)(scratch, g->W);
        const T *xd = x; /* 2-D only: od == 0 */
        if (g->sh == 2 && g->KH == 3)
            FN(nchw_direct_k3_s2)(g, xd, w, bias, out, oh0, oh1, scratch);
        else if (g->sh == 2)
            FN(nchw_direct_k5_s2)(g, xd, w, bias, out, oh0, oh1, scratch);
        else if (g->KH == 3)
            FN(nchw_direct_k3_s1)(g, xd, w, bias, out, oh0, oh1, scratch);
        else if (g->KH == 5)
            FN(nchw_direct_k5_s1)(g, xd, w, bias, out, oh0, oh1, scratch);
        else
            FN(nchw_direct_k7_s1)(g, xd, w, bias, out, oh0, oh1, scratch);
        return;
    }
#endif
    const cc_idx rb = oh1 - oh0, sw = g->sw, OW = g->OW;
    const cc_idx nrows = (rb - 1) * g->sh + (g->KH - 1) * g->dh + 1;
    const cc_idx PL = dw_phase_len(g), rowlen = sw * PL;
    const cc_idx KT = g->KD * g->KH * g->KW, plane = g->OD * g->OH * OW;
    const cc_idx rstride = g->sh * rowlen, khstride = g->dh * rowlen, kdstride = nrows * rowlen;
    cc_idx kwoff[g->KW];
    for (cc_idx kw = 0; kw < g->KW; kw++)
        kwoff[kw] = ((kw * g->dw) % sw) * PL + (kw * g->dw) / sw;

    FN(nchw_fill)(g, x, 0, 1, od, oh0, nrows, PL, scratch, 0);
    const int s1 = g->sh == 1 && g->dh == 1; /* the row-reusing tile */
    /* 2-D 3x3 and 5x5 kernels get their own copies of that tile with the loop bounds
     * known (fully unrolled: no tap-range branches, taps and accumulators in registers;
     * 1 thread, 3x3 144@56 290 -> 215 us, 5x5 240@28 239 -> 183 us) */
    const int sq = g->KD == 1 && g->KH == g->KW && (g->KH == 3 || g->KH == 5) ? (int)g->KH : 0;

    for (cc_idx m = 0; m < g->M; m++) {
        const T *wm = w + m * KT;
        const T bm = bias ? bias[m] : (T)0;
        T *om = out + m * plane + (od * g->OH + oh0) * OW;
        for (cc_idx r0 = 0; r0 < rb;) {
            const int R = rb - r0 >= 4 ? 4 : 1;
            const T *s = scratch + r0 * rstride;
            T *o = om + r0 * OW;
            for (cc_idx ow0 = 0; ow0 < OW; ow0 += DW_NCHW_V * VL) {
                const cc_idx left = OW - ow0;
                const int nv = left >= DW_NCHW_V * VL ? DW_NCHW_V : (int)((left + VL - 1) / VL);
                const int nlast = (int)(left - (cc_idx)(nv - 1) * VL < VL
                                        ? left - (cc_idx)(nv - 1) * VL : VL);
#define DW_T(RR, VV)                                                                       \
    if (s1 && sq == 3)                                                                     \
        FN(nchw_tile_s1)(s + ow0, rowlen, kdstride, kwoff, wm, 1, 3, 3, bm, o + ow0, OW,   \
                         nlast, RR, VV);                                                   \
    else if (s1 && sq == 5)                                                                \
        FN(nchw_tile_s1)(s + ow0, rowlen, kdstride, kwoff, wm, 1, 5, 5, bm, o + ow0, OW,   \
                         nlast, RR, VV);                                                   \
    else if (s1)                                                                           \
        FN(nchw_tile_s1)(s + ow0, rowlen, kdstride, kwoff, wm, g->KD, g->KH, g->KW, bm,    \
                         o + ow0, OW, nlast, RR, VV);                                      \
    else                                                                                   \
        FN(nchw_tile)(s + ow0, rstride, khstride, kdstride, kwoff, wm, g->KD, g->KH,       \
                      g->KW, bm, o + ow0, OW, nlast, RR, VV)
                if (R == 4) {
                    switch (nv) {
                    case 1: DW_T(4, 1); break;
                    case 2: DW_T(4, 2); break;
#if DW_NCHW_V >= 3
                    case 3: DW_T(4, 3); break;
#endif
#if DW_NCHW_V >= 4
                    case 4: DW_T(4, 4); break;
#endif
                    }
                } else {
                    switch (nv) {
                    case 1: DW_T(1, 1); break;
                    case 2: DW_T(1, 2); break;
#if DW_NCHW_V >= 3
                    case 3: DW_T(1, 3); break;
#endif
#if DW_NCHW_V >= 4
                    case 4: DW_T(1, 4); break;
#endif
                    }
                }
#undef DW_T
            }
            r0 += R;
        }
    }
}

/* ----------------------------------------------------------------------------------
 * NHWC (M == 1): vectorised along C. Interior pixels (every tap inside the input) run
 * a register tile of P pixels x V channel vectors, each weight vector loaded once per
 * tap for the P pixels; border pixels go one at a time and read a zero vector for
 * taps in the padding (same arithmetic as a zero-padded input).
 * -------------------------------------------------------------------------------- */

#define DW_NHWC_P 8

/* P interior pixels (ow0 .. ow0+P-1) x V vectors of channels c .. c+V*VL-1 (last
 * vector nlast lanes). xp: input at (od*sd-pd, oh*sh-ph, ow0*sw-pw, c). */
DW_INLINE void FN(nhwc_tile)(const cc_dw_geom *g, const T *restrict xp, const T *restrict wp,
                             const T *restrict bp, T *restrict op, int nlast, const int P,
                             const int V)
{
    const cc_idx C = g->C, H = g->H, W = g->W;
    const cc_idx pstride = g->sw * C;
    VEC acc[DW_NHWC_P][2];
    for (int v = 0; v < V; v++) {
        const int n = v == V - 1 ? nlast : VL;
        const VEC b0 = bp ? FN(load_n)(bp + v * VL, n) : V_ZERO();
        for (int p = 0; p < P; p++)
            acc[p][v] = b0;
    }
    const cc_idx kwstep = g->dw * C;
    for (cc_idx kd = 0; kd < g->KD; kd++)
        for (cc_idx kh = 0; kh < g->KH; kh++) {
            /* one base pointer per pixel; each tap adds the same offset */
            const T *pp[DW_NHWC_P];
            for (int p = 0; p < P; p++)
                pp[p] = xp + ((kd * g->dd * H + kh * g->dh) * W) * C + p * pstride;
            const T *wt = wp + (kd * g->KH + kh) * g->KW * C;
            cc_idx off = 0;
            for (cc_idx kw = 0; kw < g->KW; kw++, off += kwstep, wt += C) {
                for (int v = 0; v < V; v++) {
                    const int n = v == V - 1 ? nlast : VL;
                    const VEC wv = FN(load_n)(wt + v * VL, n);
                    for (int p = 0; p < P; p++) {
                        const VEC xv = FN(load_n)(pp[p] + off + v * VL, n);
                        acc[p][v] = V_FMA(xv, wv, acc[p][v]);
                    }
                }
            }
        }
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++)
            FN(store_n)(op + p * C + v * VL, acc[p][v], v == V - 1 ? nlast : VL);
}

/* One kernel row of nhwc_tile8_kw: input vectors q in [lo, hi) of the row, zero
 * vectors elsewhere (lo = 0, hi = SW*7 + KWC when every tap is inside). */
DW_INLINE void FN(nhwc_t8_krow)(VEC acc[8][2], const T *restrict row, const T *restrict wt,
                                cc_idx C, int nlast, const int KWC, const int SW,
                                const int V, const int EDGE, int lo, int hi)
{
    _Pragma("GCC unroll 2")
    for (int v = 0; v < V; v++) {
        const int n = v == V - 1 ? nlast : VL;
        VEC wk[7];
        _Pragma("GCC unroll 7")
        for (int kw = 0; kw < KWC; kw++)
            wk[kw] = FN(load_n)(wt + kw * C + v * VL, n);
        _Pragma("GCC unroll 22")
        for (int q = 0; q < SW * 7 + KWC; q++) {
            VEC xv;
            if (!EDGE || (q >= lo && q < hi))
                xv = FN(load_n)(row + q * C + v * VL, n);
            else
                xv = V_ZERO();
            V_KEEP(xv); /* GCC otherwise folds the load into each FMA again */
            _Pragma("GCC unroll 7")
            for (int kw = 0; kw < KWC; kw++)
                if (q - kw >= 0 && (q - kw) % SW == 0 && (q - kw) / SW < 8)
                    acc[(q - kw) / SW][v] = V_FMA(xv, wk[kw], acc[(q - kw) / SW][v]);
        }
    }
}

/* The 8-pixel tiles' accumulators: the bias (or +0) in every pixel; stored to op. */
DW_INLINE void FN(t8_acc_bias)(VEC acc[8][2], const T *restrict bp, int nlast, const int V)
{
    _Pragma("GCC unroll 2")
    for (int v = 0; v < V; v++) {
        const VEC b0 = bp ? FN(load_n)(bp + v * VL, v == V - 1 ? nlast : VL) : V_ZERO();
        _Pragma("GCC unroll 8")
        for (int p = 0; p < 8; p++)
            acc[p][v] = b0;
    }
}

DW_INLINE void FN(t8_acc_store)(VEC acc[8][2], T *restrict op, cc_idx C, int nlast,
                                const int V)
{
    _Pragma("GCC unroll 8")
    for (int p = 0; p < 8; p++)
        _Pragma("GCC unroll 2")
        for (int v = 0; v < V; v++)
            FN(store_n)(op + p * C + v * VL, acc[p][v], v == V - 1 ? nlast : VL);
}

/* t8_acc_store with streaming (non-temporal) stores, for outputs too large for the cache:
 * they skip the read for ownership of each line. Whole vectors only: op and C aligned to
 * VL lanes (dw_stream_ok), nlast == VL. */
DW_INLINE void FN(t8_acc_stream)(VEC acc[8][2], T *restrict op, cc_idx C, const int V)
{
    _Pragma("GCC unroll 8")
    for (int p = 0; p < 8; p++)
        _Pragma("GCC unroll 2")
        for (int v = 0; v < V; v++)
            V_STREAM(op + p * C + v * VL, acc[p][v]);
}

/* The input vectors [*lo, *hi) of an edge tile's kernel row at input row ih (of a plane
 * inside the input when dok): qlo .. qhi where the row lies inside, none elsewhere. */
DW_INLINE void FN(t8_row_range)(const cc_dw_geom *g, int dok, cc_idx ih, int qlo, int qhi,
                                int *lo, int *hi)
{
    const int rok = dok && ih >= 0 && ih < g->H;
    *lo = rok ? qlo : 0;
    *hi = rok ? qhi : 0;
}

/* nhwc_tile for P = 8, a compile-time KH = KW = KWC (3, 5, 7) and stride SW (1, 2), dw = 1,
 * one kernel plane kd (the caller loops over kd; 3-D only): each input vector of a
 * kernel row is loaded once and used for every output of the tile that reads it
 * (SW*7 + KW loads per 8 * KW FMAs instead of 8 * KW; the generic tile is bound by its
 * loads). Kernel rows unrolled for 3x3 and 5x5 (3x3 ran 12% faster than with KH a
 * runtime bound). Outputs start from the bias (or +0) when first, else from the partial sums
 * in op (a float round trip, exact). Each output still adds kd, kh, kw in order: the
 * same bits as nhwc_tile and nhwc_border.
 * xp: input plane kd at row ih0 (kh = 0), column of q = 0; wp: that plane's weights.
 * EDGE: the tile may touch the padding. Input vector q of kernel row kh is read only
 * when dok (the plane lies inside the input), qlo <= q < qhi and row ih0 + kh*dh lies
 * inside; elsewhere it is a zero vector, as in nhwc_border. Not EDGE: every tap is
 * inside and qlo, qhi, dok, ih0 are unused. */
DW_INLINE void FN(nhwc_tile8_kw)(const cc_dw_geom *g, const T *restrict xp,
                                 const T *restrict wp, const T *restrict bp, T *restrict op,
                                 int nlast, const int KWC, const int SW, const int V,
                                 const int EDGE, int first, int qlo, int qhi, int dok,
                                 cc_idx ih0, int stream)
{
    const cc_idx C = g->C, W = g->W, rstride = g->dh * W * C;
    VEC acc[8][2];
    if (first) {
        FN(t8_acc_bias)(acc, bp, nlast, V);
    } else {
        _Pragma("GCC unroll 2")
        for (int v = 0; v < V; v++)
            _Pragma("GCC unroll 8")
            for (int p = 0; p < 8; p++)
                acc[p][v] = FN(load_n)(op + p * C + v * VL, v == V - 1 ? nlast : VL);
    }
#define DW_T8_KROW(kh)                                                                     \
    do {                                                                                   \
        int lo = 0, hi = SW * 7 + KWC;                                                     \
        if (EDGE)                                                                          \
            FN(t8_row_range)(g, dok, ih0 + (kh) * g->dh, qlo, qhi, &lo, &hi);              \
        FN(nhwc_t8_krow)(acc, xp + (kh) * rstride, wp + (kh) * KWC * C, C, nlast, KWC, SW,  \
                         V, EDGE, lo, hi);                                                 \
    } while (0)
    if (KWC == 7) { /* fully unrolled, 7x7 ran 12% slower */
        for (int kh = 0; kh < KWC; kh++)
            DW_T8_KROW(kh);
    } else {
        _Pragma("GCC unroll 5")
        for (int kh = 0; kh < KWC; kh++)
            DW_T8_KROW(kh);
    }
#undef DW_T8_KROW
    if (stream)
        FN(t8_acc_stream)(acc, op, C, V);
    else
        FN(t8_acc_store)(acc, op, C, nlast, V);
}

/* One out-of-line function per (KW, stride, V, edge): each gets its own register
 * allocation (inlined into the row loop, the tiles' speed moved by up to 1.4x with
 * unrelated code). */
typedef void (*FN(nhwc_t8_fn))(const cc_dw_geom *, const T *, const T *, const T *, T *,
                               int, int, int, int, int, cc_idx, int);
#define DW_NHWC_T8(KK, SS, VV, EE)                                                         \
    static __attribute__((noinline)) DW_TARGET void                                        \
    FN(nhwc_t8_k##KK##_s##SS##_v##VV##_e##EE)(                                             \
        const cc_dw_geom *g, const T *xp, const T *wp, const T *bp, T *op, int nlast,      \
        int first, int qlo, int qhi, int dok, cc_idx ih0, int stream)                      \
    {                                                                                      \
        FN(nhwc_tile8_kw)(g, xp, wp, bp, op, nlast, KK, SS, VV, EE, first, qlo, qhi, dok,  \
                          ih0, stream);                                                    \
    }
#define DW_NHWC_T8_VE(KK, SS)                                                              \
    DW_NHWC_T8(KK, SS, 1, 0)                                                               \
    DW_NHWC_T8(KK, SS, 2, 0)                                                               \
    DW_NHWC_T8(KK, SS, 1, 1)                                                               \
    DW_NHWC_T8(KK, SS, 2, 1)
DW_NHWC_T8_VE(3, 1)
DW_NHWC_T8_VE(5, 1)
DW_NHWC_T8_VE(7, 1)
DW_NHWC_T8_VE(3, 2)
DW_NHWC_T8_VE(5, 2)
#undef DW_NHWC_T8_VE
#undef DW_NHWC_T8

/* nhwc_tile8_kw for 3x3 stride 1 over every kernel plane in one call (3-D): the
 * accumulators stay in registers across the planes instead of a store and reload per
 * plane (3x3x3 layers 0.69-0.85x the time). A separate function: a plane loop inside
 * nhwc_tile8_kw itself cost its other uses 1.1-1.3x (register allocation). Same
 * arguments but id0, the input depth of plane kd = 0 (maybe outside), for dok; the same
 * bits. */
DW_INLINE void FN(nhwc_tile8_3d)(const cc_dw_geom *g, const T *restrict xp,
                                 const T *restrict wp, const T *restrict bp, T *restrict op,
                                 int nlast, const int V, const int EDGE, int qlo, int qhi,
                                 cc_idx id0, cc_idx ih0)
{
    const cc_idx C = g->C, rstride = g->dh * g->W * C, pstride = g->dd * g->H * g->W * C;
    VEC acc[8][2];
    FN(t8_acc_bias)(acc, bp, nlast, V);
    for (cc_idx kd = 0; kd < g->KD; kd++, xp += pstride, wp += 9 * C) {
        const cc_idx id = id0 + kd * g->dd;
        const int dok = id >= 0 && id < g->D;
        _Pragma("GCC unroll 3")
        for (int kh = 0; kh < 3; kh++) {
            int lo = 0, hi = 10;
            if (EDGE)
                FN(t8_row_range)(g, dok, ih0 + kh * g->dh, qlo, qhi, &lo, &hi);
            FN(nhwc_t8_krow)(acc, xp + kh * rstride, wp + kh * 3 * C, C, nlast, 3, 1, V, EDGE,
                             lo, hi);
        }
    }
    FN(t8_acc_store)(acc, op, C, nlast, V);
}

typedef void (*FN(nhwc_t8_3d_fn))(const cc_dw_geom *, const T *, const T *, const T *, T *,
                                  int, int, int, cc_idx, cc_idx);
#define DW_NHWC_T8_3D(VV, EE)                                                              \
    static __attribute__((noinline)) DW_TARGET void FN(nhwc_t8_3d_v##VV##_e##EE)(         \
        const cc_dw_geom *g, const T *xp, const T *wp, const T *bp, T *op, int nlast,      \
        int qlo, int qhi, cc_idx id0, cc_idx ih0)                                          \
    {                                                                                      \
        FN(nhwc_tile8_3d)(g, xp, wp, bp, op, nlast, VV, EE, qlo, qhi, id0, ih0);           \
    }
DW_NHWC_T8_3D(1, 0)
DW_NHWC_T8_3D(2, 0)
DW_NHWC_T8_3D(1, 1)
DW_NHWC_T8_3D(2, 1)
#undef DW_NHWC_T8_3D

/* The tile for (KW, stride, V, edge), or NULL when none is compiled. */
static inline FN(nhwc_t8_fn) FN(nhwc_t8_pick)(const cc_dw_geom *g, int V, int edge)
{
    const cc_idx KW = g->KH == g->KW && g->dw == 1 ? g->KW : 0, sw = g->sw;
#define DW_PICK(KK, SS)                                                                    \
    if (KW == KK && sw == SS)                                                              \
        return V == 1 ? (edge ? FN(nhwc_t8_k##KK##_s##SS##_v1_e1)                          \
                              : FN(nhwc_t8_k##KK##_s##SS##_v1_e0))                         \
                      : (edge ? FN(nhwc_t8_k##KK##_s##SS##_v2_e1)                          \
                              : FN(nhwc_t8_k##KK##_s##SS##_v2_e0));
    DW_PICK(3, 1)
    DW_PICK(5, 1)
    DW_PICK(7, 1)
    DW_PICK(3, 2)
    DW_PICK(5, 2)
#undef DW_PICK
    return 0;
}

/* One pixel (od, oh, ow) that may touch the padding, V vectors of channels from c.
 * x: image base + c (channel c of pixel (0, 0, 0)); wp, bp: weights / bias + c. */
DW_INLINE void FN(nhwc_border)(const cc_dw_geom *g, const T *restrict x, const T *restrict wp,
                               const T *restrict bp, T *restrict op, cc_idx od, cc_idx oh,
                               cc_idx ow, int nlast, const int V)
{
    const cc_idx C = g->C, H = g->H, W = g->W;
    VEC acc[2];
    for (int v = 0; v < V; v++) {
        const int n = v == V - 1 ? nlast : VL;
        acc[v] = bp ? FN(load_n)(bp + v * VL, n) : V_ZERO();
    }
    for (cc_idx kd = 0; kd < g->KD; kd++) {
        const cc_idx id = od * g->sd + kd * g->dd - g->pd;
        const int dok = id >= 0 && id < g->D;
        for (cc_idx kh = 0; kh < g->KH; kh++) {
            const cc_idx ih = oh * g->sh + kh * g->dh - g->ph;
            const int hok = dok && ih >= 0 && ih < H;
            for (cc_idx kw = 0; kw < g->KW; kw++) {
                const cc_idx iw = ow * g->sw + kw * g->dw - g->pw;
                const int ok = hok && iw >= 0 && iw < W;
                const T *xt = x + ((id * H + ih) * W + iw) * C;
                const T *wt = wp + ((kd * g->KH + kh) * g->KW + kw) * C;
                for (int v = 0; v < V; v++) {
                    const int n = v == V - 1 ? nlast : VL;
                    const VEC wv = FN(load_n)(wt + v * VL, n);
                    VEC xv = V_ZERO();
                    if (ok)
                        xv = FN(load_n)(xt + v * VL, n);
                    acc[v] = V_FMA(xv, wv, acc[v]);
                }
            }
        }
    }
    for (int v = 0; v < V; v++)
        FN(store_n)(op + v * VL, acc[v], v == V - 1 ? nlast : VL);
}

/* One output row in 8-pixel tiles (a compiled tile for this kernel size and stride,
 * OW >= 8): the edge variant where a tile touches the padding, the last tile moved
 * back to end at OW (it rewrites a few outputs with the same bits). Tiles outer,
 * channel vectors inner: a tile's inputs are then runs of whole pixels, contiguous in
 * memory (channels outer, 3x3 144@56 ran 5-13% slower). */
DW_INLINE void FN(nhwc_row_tiled)(const cc_dw_geom *g, const T *x, const T *w,
                                  const T *bias, T *orow, cc_idx od, cc_idx oh, cc_idx c0,
                                  cc_idx c1, cc_idx ow_lo, cc_idx ow_hi, int rows_ok,
                                  dwp_pf *pfx, dwp_pf *pfo, cc_idx sx, cc_idx so,
                                  int stream)
{
    const cc_idx C = g->C, OW = g->OW, sw = g->sw;
    const cc_idx id0 = od * g->sd - g->pd, ih0 = oh * g->sh - g->ph;
    /* input pixel (id0, ih0, 0); the tiles add column and channel offsets to it */
    const T *xb = x + ((id0 * g->H + ih0) * g->W) * C;
    const cc_idx nq = sw * 7 + g->KW;
    const cc_idx cfull = c0 + (c1 - c0) / (2 * VL) * (2 * VL), left = c1 - cfull;
    const int V = left > VL ? 2 : 1, nlast = (int)(left > VL ? left - VL : left);
    const cc_idx pstride = g->dd * g->H * g->W * C, wstride = g->KH * g->KW * C;
    /* [edge]: the 2-vector tile and the one for the last channels */
    const FN(nhwc_t8_fn) f2[2] = {FN(nhwc_t8_pick)(g, 2, 0), FN(nhwc_t8_pick)(g, 2, 1)};
    const FN(nhwc_t8_fn) fl[2] = {FN(nhwc_t8_pick)(g, V, 0), FN(nhwc_t8_pick)(g, V, 1)};
    /* 3-D 3x3 stride 1: every plane in one call */
    const int all3d = g->KD > 1 && g->KW == 3 && g->KH == 3 && sw == 1;
    const FN(nhwc_t8_3d_fn) g2[2] = {FN(nhwc_t8_3d_v2_e0), FN(nhwc_t8_3d_v2_e1)};
    const FN(nhwc_t8_3d_fn) gl[2] = {V == 2 ? FN(nhwc_t8_3d_v2_e0) : FN(nhwc_t8_3d_v1_e0),
                                     V == 2 ? FN(nhwc_t8_3d_v2_e1) : FN(nhwc_t8_3d_v1_e1)};
    for (cc_idx t = 0; t < OW; t += 8) {
        const cc_idx ow = t + 8 <= OW ? t : OW - 8;
        const cc_idx iw0 = ow * sw - g->pw; /* input column of the tile's q = 0 */
        const int qlo = (int)CC_DW_MIN(iw0 < 0 ? -iw0 : 0, nq);
        const int qhi = (int)CC_DW_MAX(CC_DW_MIN(nq, g->W - iw0), 0);
        const int inner = rows_ok && ow >= ow_lo && ow + 8 <= ow_hi;
        if (all3d) {
            const T *xk = xb + iw0 * C;
            for (cc_idx c = c0; c < cfull; c += 2 * VL)
                g2[!inner](g, xk + c, w + c, bias ? bias + c : 0, orow + ow * C + c, VL, qlo,
                           qhi, id0, ih0);
            if (left > 0)
                gl[!inner](g, xk + cfull, w + cfull, bias ? bias + cfull : 0,
                           orow + ow * C + cfull, nlast, qlo, qhi, id0, ih0);
            continue;
        }
        for (cc_idx kd = 0; kd < g->KD; kd++) {
            const cc_idx id = id0 + kd * g->dd;
            const int dok = id >= 0 && id < g->D;
            const T *xk = xb + kd * pstride + iw0 * C;
            const T *wk = w + kd * wstride;
            for (cc_idx c = c0; c < cfull; c += 2 * VL) {
                if (sx + so > 0) {
                    dwp_pf_step(pfx, sx, 0);
                    dwp_pf_step(pfo, so, 1);
                }
                f2[!inner](g, xk + c, wk + c, bias ? bias + c : 0, orow + ow * C + c, VL,
                           kd == 0, qlo, qhi, dok, ih0, stream);
            }
            if (left > 0) {
                if (sx + so > 0) {
                    dwp_pf_step(pfx, sx, 0);
                    dwp_pf_step(pfo, so, 1);
                }
                fl[!inner](g, xk + cfull, wk + cfull, bias ? bias + cfull : 0,
                           orow + ow * C + cfull, nlast, kd == 0, qlo, qhi, dok, ih0,
                           stream && nlast == VL);
            }
        }
    }
}

/* One output row, channels [c, c + V*VL) (last vector nlast lanes), without a compiled
 * tile: interior pixels through nhwc_tile, the rest through nhwc_border. */
DW_INLINE void FN(nhwc_row)(const cc_dw_geom *g, const T *x, const T *w, const T *bias,
                            T *orow, cc_idx od, cc_idx oh, cc_idx c, cc_idx ow_lo,
                            cc_idx ow_hi, int rows_ok, int nlast, const int V)
{
    const cc_idx C = g->C, OW = g->OW, sw = g->sw;
    const T *wp = w + c;
    const T *bp = bias ? bias + c : (const T *)0;
    cc_idx ow = 0;
    if (rows_ok) {
        const T *xb =
            x + (((od * g->sd - g->pd) * g->H + oh * g->sh - g->ph) * g->W) * C + c;
        for (; ow < ow_lo; ow++)
            FN(nhwc_border)(g, x + c, wp, bp, orow + ow * C + c, od, oh, ow, nlast, V);
        for (; ow + DW_NHWC_P <= ow_hi; ow += DW_NHWC_P)
            FN(nhwc_tile)(g, xb + (ow * sw - g->pw) * C, wp, bp, orow + ow * C + c, nlast,
                          DW_NHWC_P, V);
        for (; ow + 4 <= ow_hi; ow += 4)
            FN(nhwc_tile)(g, xb + (ow * sw - g->pw) * C, wp, bp, orow + ow * C + c, nlast,
                          4, V);
        for (; ow < ow_hi; ow++)
            FN(nhwc_tile)(g, xb + (ow * sw - g->pw) * C, wp, bp, orow + ow * C + c, nlast,
                          1, V);
    }
    for (; ow < OW; ow++)
        FN(nhwc_border)(g, x + c, wp, bp, orow + ow * C + c, od, oh, ow, nlast, V);
}

DW_TARGET static void FN(dw_nhwc)(const cc_dw_geom *g, const T *x, const T *w, const T *bias,
                                  T *out, cc_idx od, cc_idx oh, cc_idx c0, cc_idx c1,
                                  int prefetch)
{
    int rows_ok = 1;
    for (cc_idx kd = 0; kd < g->KD; kd++) {
        const cc_idx id = od * g->sd + kd * g->dd - g->pd;
        rows_ok &= id >= 0 && id < g->D;
    }
    for (cc_idx kh = 0; kh < g->KH; kh++) {
        const cc_idx ih = oh * g->sh + kh * g->dh - g->ph;
        rows_ok &= ih >= 0 && ih < g->H;
    }
    /* interior columns: ow*sw - pw >= 0 and ow*sw - pw + (KW-1)*dw <= W-1 */
    cc_idx ow_lo = (g->pw + g->sw - 1) / g->sw;
    const cc_idx span = g->W - 1 + g->pw - (g->KW - 1) * g->dw;
    cc_idx ow_hi = span >= 0 ? span / g->sw + 1 : 0;
    ow_lo = CC_DW_MIN(ow_lo, g->OW);
    ow_hi = CC_DW_MIN(CC_DW_MAX(ow_hi, ow_lo), g->OW);
    T *orow = out + (od * g->OH + oh) * g->OW * g->C;
    const int tiled = g->OW >= 8 && FN(nhwc_t8_pick)(g, 1, 0);
    /* Arrays too large for the cache (prefetch): the next row's new input rows and its
     * output row fetched ahead, on a 2-D tiled row a share before each (tile, 2-vector
     * channel block), else all at once before the row; a 2-D tiled row streams its
     * output instead of fetching it where it can (dw_stream_ok; one plane: no partial
     * sums to read back). */
    dwp_pf pfx = {0}, pfo = {0}; /* stepped only when sx + so > 0 */
    cc_idx sx = 0, so = 0;
    const int stream = (prefetch & DW_STREAM) && tiled && g->KD == 1 &&
                       FN(dw_stream_ok)(out, g->C);
    if (prefetch && oh + 1 < g->OH) {
        if (tiled && g->KD == 1) {
            dwp_row_walks(&pfx, &pfo, x + c0, out + (od * g->OH + oh + 1) * g->OW * g->C + c0,
                          (cc_idx)sizeof(T), g->D, g->H, g->W, g->OW, g->C, c1 - c0,
                          od * g->sd - g->pd, oh + 1, g->sh, g->ph, (g->KH - 1) * g->dh + 1,
                          !stream);
            const cc_idx steps = (g->OW + 7) / 8 * ((c1 - c0 + 2 * VL - 1) / (2 * VL));
            sx = dwp_share(&pfx, steps);
            so = dwp_share(&pfo, steps);
        } else
            cconv_dw_nhwc_prefetch_row(g, x, out, (cc_idx)sizeof(T), od, oh + 1, c0, c1);
    }
    if (tiled) {
        FN(nhwc_row_tiled)(g, x, w, bias, orow, od, oh, c0, c1, ow_lo, ow_hi, rows_ok, &pfx,
                           &pfo, sx, so, stream);
        if (stream)
            V_SFENCE(); /* the streaming stores are weakly ordered: done before the join */
        return;
    }
    cc_idx c = c0;
    for (; c + 2 * VL <= c1; c += 2 * VL)
        FN(nhwc_row)(g, x, w, bias, orow, od, oh, c, ow_lo, ow_hi, rows_ok, VL, 2);
    const cc_idx left = c1 - c;
    if (left > VL)
        FN(nhwc_row)(g, x, w, bias, orow, od, oh, c, ow_lo, ow_hi, rows_ok, (int)(left - VL), 2);
    else if (left > 0)
        FN(nhwc_row)(g, x, w, bias, orow, od, oh, c, ow_lo, ow_hi, rows_ok, (int)left, 1);
}

/* ----------------------------------------------------------------------------------
 * NHWC packed rows (2-D, KH = KW in 3, 5, 7, dw = 1, stride 1, or 2 for 5x5): an
 * item (a run of output rows, a group of channels) copies each input row it needs,
 * once, into per-thread rings of zero-padded rows, one ring per block of 2*VL channels
 * (V*VL lanes per pixel, 64-byte aligned, columns -pw .., zero beyond the input and in
 * the rows of the padding). The 8-pixel tiles of nhwc_t8_krow then read at compile-time
 * offsets with no edge cases, and a row's tiles run in one call. Against the strided
 * tiles above (Intel, 2 FMA ports, 2 threads, two-process A/B): 7x7 96@56 0.85x the
 * time, 5x5 240@28 0.65-0.74x, 7x7 768@7 0.44x, 3x3 192@28 0.80x; 3x3 on images over
 * 1 MB too (in-process A/B, 21 interleaved rounds: 144@56 0.80x, batch 8 0.76x, 240@56
 * 0.75x, 32@112 0.86x; an earlier host had measured 144@56 at 1.07x). Each output still adds
 * kh, kw in order from the bias (or +0), taps in the padding as FMAs with +0: the same
 * bits.
 * -------------------------------------------------------------------------------- */
#if VL > 1 /* one-lane vectors keep the strided path */
#define DWP_MAX_SPAN 64


/* Pixels per packed row (a multiple of 8, whole tiles) for output width OW. */
static inline cc_idx FN(dwp_row_pixels)(const cc_dw_geom *g)
{
    const cc_idx tiles = (g->OW + 7) / 8;
    return ((tiles - 1) * 8 * g->sw + g->sw * 7 + g->KW + 7) / 8 * 8;
}

/* One output row of 8-pixel tiles from packed rows rp[kh] (pixel 0 = column -pw);
 * wpk: weights [KH][KW][V*VL]; bpk: bias [V*VL] or NULL; o: output pixel 0, channel c0
 * of the block; C: output pixel stride; nlast: lanes of the last vector. */
DW_INLINE void FN(dwp_row)(const T *const *rp, const T *restrict wpk, const T *restrict bpk,
                           T *restrict o, cc_idx C, cc_idx OW, int nlast, const int KWC,
                           const int SW, const int V, const int STREAM)
{
    const cc_idx CB = V * VL;
    for (cc_idx t = 0; t < OW; t += 8) {
        VEC acc[8][2];
        _Pragma("GCC unroll 2")
        for (int v = 0; v < V; v++) {
            const VEC b0 = bpk ? V_LOAD(bpk + v * VL) : V_ZERO();
            _Pragma("GCC unroll 8")
            for (int p = 0; p < 8; p++)
                acc[p][v] = b0;
        }
        const cc_idx xoff = t * SW * CB;
        /* kernel rows unrolled, 7x7 too (unlike the strided tiles): 0-10% faster (noisy) */
        _Pragma("GCC unroll 7")
        for (int kh = 0; kh < KWC; kh++)
            FN(nhwc_t8_krow)(acc, rp[kh] + xoff, wpk + kh * KWC * CB, CB, VL, KWC, SW, V, 0,
                             0, 0);
        T *op = o + t * C;
        const cc_idx np = OW - t < 8 ? OW - t : 8;
        if (STREAM && np == 8) {
            FN(t8_acc_stream)(acc, op, C, V);
            continue;
        }
        _Pragma("GCC unroll 8")
        for (int p = 0; p < 8; p++)
            if (p < np)
                _Pragma("GCC unroll 2")
                for (int v = 0; v < V; v++)
                    FN(store_n)(op + p * C + v * VL, acc[p][v], v == V - 1 ? nlast : VL);
    }
}

/* NT empty, or _nt: the variant with streaming stores (nlast == VL, dw_stream_ok), a
 * function of its own: a run-time flag in the one function cost cached 3x3 rows 1.1x. */
typedef void (*FN(dwp_row_fn))(const T *const *, const T *, const T *, T *, cc_idx, cc_idx,
                               int);
#define DWP_ROW(KK, SS, VV, NT)                                                            \
    static __attribute__((noinline)) DW_TARGET void FN(dwp_row_k##KK##_s##SS##_v##VV##NT)(\
        const T *const *rp, const T *wpk, const T *bpk, T *o, cc_idx C, cc_idx OW,          \
        int nlast)                                                                         \
    {                                                                                      \
        FN(dwp_row)(rp, wpk, bpk, o, C, OW, nlast, KK, SS, VV, sizeof(#NT) > 1);           \
    }
#define DWP_ROW_V(KK, SS)                                                                  \
    DWP_ROW(KK, SS, 1, ) DWP_ROW(KK, SS, 2, ) DWP_ROW(KK, SS, 1, _nt) DWP_ROW(KK, SS, 2, _nt)
DWP_ROW_V(3, 1)
DWP_ROW_V(5, 1)
DWP_ROW_V(7, 1)
DWP_ROW_V(5, 2)
#undef DWP_ROW_V
#undef DWP_ROW

static inline FN(dwp_row_fn) FN(dwp_pick)(const cc_dw_geom *g, int V, int stream)
{
    if (g->KD != 1 || g->KH != g->KW || g->dw != 1 ||
        (g->KH - 1) * g->dh + 1 > DWP_MAX_SPAN)
        return 0;
#define DWP_PICK(KK, SS)                                                                   \
    if (g->KW == KK && g->sw == SS)                                                        \
        return stream ? (V == 1 ? FN(dwp_row_k##KK##_s##SS##_v1_nt)                        \
                                : FN(dwp_row_k##KK##_s##SS##_v2_nt))                       \
                      : (V == 1 ? FN(dwp_row_k##KK##_s##SS##_v1) : FN(dwp_row_k##KK##_s##SS##_v2));
    DWP_PICK(3, 1)
    DWP_PICK(5, 1)
    DWP_PICK(7, 1)
    DWP_PICK(5, 2) /* not 3x3 s2: packing two rows per output row cost more than the
                      strided tiles (96@112 ran 1.4x slower) */
#undef DWP_PICK
    return 0;
}

/* Scratch elements per thread for items of up to nc channels (0: the problem does not
 * take this path): per block of 2*VL channels a ring of span packed rows, the packed
 * weights and bias, and the ring's row tags. */
static cc_idx FN(dwp_scratch)(const cc_dw_geom *g, cc_idx nc)
{
    if (!FN(dwp_pick)(g, 2, 0))
        return 0;
    const cc_idx span = (g->KH - 1) * g->dh + 1, CB = 2 * VL, nb = (nc + CB - 1) / CB;
    const cc_idx tags = (nb * span * (cc_idx)sizeof(cc_idx) + 63) / 64 * 64 / (cc_idx)sizeof(T);
    return nb * (span * FN(dwp_row_pixels)(g) + g->KH * g->KW + 1) * CB + tags;
}

/* Input row ih, channels c0 .. c0+nc-1 (nc <= V*VL), as a packed row of V*VL lanes
 * per pixel. */
DW_INLINE void FN(dwp_pack_row)(const cc_dw_geom *g, const T *restrict x, cc_idx ih,
                                cc_idx c0, int nc, cc_idx npix, T *restrict dst, const int V)
{
    const cc_idx CB = V * VL, C = g->C;
    const VEC z = V_ZERO();
    if (ih < 0 || ih >= g->H) {
        for (cc_idx j = 0; j < npix * CB; j += VL)
            V_STORE(dst + j, z);
        return;
    }
    const cc_idx lo = CC_DW_MIN(g->pw, npix), hi = CC_DW_MAX(CC_DW_MIN(g->pw + g->W, npix), lo);
    for (cc_idx j = 0; j < lo * CB; j += VL)
        V_STORE(dst + j, z);
    const T *src = x + (ih * g->W + lo - g->pw) * C + c0;
    const int n1 = V == 2 ? nc - VL : nc;
    for (cc_idx j = lo; j < hi; j++, src += C) {
        if (V == 2) {
            V_STORE(dst + j * CB, V_LOAD(src));
            V_STORE(dst + j * CB + VL, FN(load_n)(src + VL, n1));
        } else {
            V_STORE(dst + j * CB, FN(load_n)(src, n1));
        }
    }
    for (cc_idx j = hi * CB; j < npix * CB; j += VL)
        V_STORE(dst + j, z);
}

/* Output rows oh0 .. oh1-1, channels c0 .. c1-1, through packed rows: the channels in
 * blocks of 2*VL (the last one maybe fewer), each with its own ring of span rows (input
 * row ih at slot ih mod span, kept across chunks); the rows in chunks that run one block
 * at a time, so a block's ring stays in L1 for the chunk while the chunk's input rows
 * (R of them, all channels) stay in L2 for the blocks and are read from memory once, in
 * order. (One block over all rows: 3x3 s2 96@112 ran 2x slower; one row over all
 * blocks: 5x5 240@28 1.3x slower.) scratch: dwp_scratch(g, c1 - c0) elements, 64-byte
 * aligned. prefetch (depthwise.h's flags): for arrays too large to stay in cache (on
 * cached ones the prefetches cost more than they save), fetch the next chunk's new input
 * rows ahead, a share per (block, row), and its output rows too, unless DW_STREAM (and
 * dw_stream_ok): then the output is written with streaming stores instead (3x3 144 @ 56²
 * batch 8 and 16, 96 @ 112² batch 8: 0.69-0.73x the time of prefetching the output rows,
 * in-process A/B, 5 rounds; _depthwise.stream_max_taps says which kernels). */
DW_TARGET static void FN(dw_nhwc_packed)(const cc_dw_geom *g, const T *x, const T *w,
                                         const T *bias, T *out, cc_idx c0, cc_idx c1,
                                         cc_idx oh0, cc_idx oh1, T *scratch,
                                         int prefetch)
{
    const cc_idx C = g->C, KH = g->KH, KW = g->KW, CB = 2 * VL;
    const cc_idx span = (KH - 1) * g->dh + 1, npix = FN(dwp_row_pixels)(g);
    const cc_idx nb = (c1 - c0 + CB - 1) / CB, ringlen = span * npix * CB;
    const int nl = (int)(c1 - c0 - (nb - 1) * CB); /* channels in the last block */
    const int Vl = nl > VL ? 2 : 1, nlast = Vl == 2 ? nl - VL : nl;
    /* arrays too large for the cache: the output rows streamed, not prefetched */
    const int stream = (prefetch & DW_STREAM) && FN(dw_stream_ok)(out, C);
    const FN(dwp_row_fn) row2 = FN(dwp_pick)(g, 2, stream);
    const FN(dwp_row_fn) rowl = FN(dwp_pick)(g, Vl, stream && nlast == VL);
    cc_idx *tag = (cc_idx *)scratch;
    T *ring = scratch + (nb * span * (cc_idx)sizeof(cc_idx) + 63) / 64 * 64 / (cc_idx)sizeof(T);
    T *wpk = ring + nb * ringlen, *bpk = wpk + nb * KH * KW * CB;
    for (cc_idx b = 0; b < nb; b++) {
        const cc_idx cb = c0 + b * CB;
        const int V = b == nb - 1 ? Vl : 2, n2 = b == nb - 1 ? nlast : VL;
        for (cc_idx k = 0; k < KH * KW; k++)
            for (int v = 0; v < V; v++)
                V_STORE(wpk + b * KH * KW * CB + k * V * VL + v * VL,
                        FN(load_n)(w + k * C + cb + v * VL, v == V - 1 ? n2 : VL));
        if (bias)
            for (int v = 0; v < V; v++)
                V_STORE(bpk + b * CB + v * VL,
                        FN(load_n)(bias + cb + v * VL, v == V - 1 ? n2 : VL));
    }
    for (cc_idx s = 0; s < nb * span; s++)
        tag[s] = INT64_MIN; /* no row: padding rows far above the input are negative */
    /* rows per chunk: its input rows, all channels, in about 256 KB */
    const cc_idx rowbytes = g->W * (c1 - c0) * (cc_idx)sizeof(T);
    cc_idx R = (256 * 1024 / (rowbytes > 0 ? rowbytes : 1) - span) / g->sh + 1;
    R = R < 1 ? 1 : R > 16 ? 16 : R;
    const T *rp[7];
    for (cc_idx r0 = oh0; r0 < oh1; r0 += R) {
        const cc_idx r1 = r0 + R < oh1 ? r0 + R : oh1;
        const cc_idx r2 = r1 + R < oh1 ? r1 + R : oh1;
        /* the next chunk's new input rows and its output rows, prefetched a share per
         * (block, row) of this chunk: the blocks read and write them strided (2*VL
         * channels of every pixel), which the hardware prefetchers follow badly once
         * they are not in cache */
        dwp_pf pfx, pfo;
        cc_idx ia = 0, ib = 0;
        if (r2 > r1)
            dwp_new_rows(r1, r2, -1, g->sh, g->ph, span, g->H, &ia, &ib);
        dwp_rows_start(&pfx, x + c0, (cc_idx)sizeof(T), g->W, C, c1 - c0, prefetch ? ia : 0,
                       prefetch ? ib : 0);
        dwp_rows_start(&pfo, out + c0, (cc_idx)sizeof(T), g->OW, C, c1 - c0,
                       prefetch && !stream ? r1 : 0, prefetch && !stream ? r2 : 0);
        const cc_idx steps = nb * (r1 - r0);
        const cc_idx nx = dwp_share(&pfx, steps), no = dwp_share(&pfo, steps);
        for (cc_idx b = 0; b < nb; b++) {
            const int last = b == nb - 1, V = last ? Vl : 2, nc = last ? nl : (int)CB;
            T *rg = ring + b * ringlen;
            cc_idx *tg = tag + b * span;
            const T *wb = wpk + b * KH * KW * CB, *bb = bias ? bpk + b * CB : 0;
            for (cc_idx oh = r0; oh < r1; oh++) {
                const cc_idx ih0 = oh * g->sh - g->ph;
                for (cc_idx kh = 0; kh < KH; kh++) {
                    const cc_idx ih = ih0 + kh * g->dh, s = ((ih % span) + span) % span;
                    T *dst = rg + s * npix * V * VL;
                    if (tg[s] != ih) {
                        if (V == 2)
                            FN(dwp_pack_row)(g, x, ih, c0 + b * CB, nc, npix, dst, 2);
                        else
                            FN(dwp_pack_row)(g, x, ih, c0 + b * CB, nc, npix, dst, 1);
                        tg[s] = ih;
                    }
                    rp[kh] = dst;
                }
                dwp_pf_step(&pfx, nx, 0);
                dwp_pf_step(&pfo, no, 1);
                T *o = out + oh * g->OW * C + c0 + b * CB;
                if (!last)
                    row2(rp, wb, bb, o, C, g->OW, VL);
                else
                    rowl(rp, wb, bb, o, C, g->OW, nlast);
            }
        }
    }
    if (stream)
        V_SFENCE(); /* the streaming stores are weakly ordered: done before the join */
}

#endif /* VL > 1 */

/* ----------------------------------------------------------------------------------
 * Grouped NCHW (Cg input channels and Og output channels per group, any groups): the
 * depthwise NCHW scratch (zero-padded, stride-phase split), one slab per input channel
 * of the group. Register tile: R output rows x MO output channels x one vector; each
 * input vector is loaded once for the MO channels and each weight broadcast once for
 * the R rows, so a group of 8 x 8 channels is one pass over its rows instead of a
 * GEMM with K = 72. Each output sums c, kd, kh, kw in increasing order (the im2col K
 * order) from +0, then adds the bias (+0 without one). Used for fewer than 8 output
 * channels per group (_plan.grouped_width_lanes); gconv_impl.h does the rest, with the
 * same bits.
 * -------------------------------------------------------------------------------- */
#define GC_MO 4

DW_INLINE void FN(gnchw_tile)(const T *restrict s, cc_idx cstride, cc_idx Cg,
                              cc_idx rstride, cc_idx khstride, cc_idx kdstride,
                              const cc_idx *restrict kwoff, const T *restrict w, cc_idx KD,
                              cc_idx KH, cc_idx KW, const T *bias, T *restrict o, cc_idx ldo,
                              cc_idx plane, int nlast, const int R, const int MO)
{
    VEC acc[4][GC_MO];
    const cc_idx KT = KD * KH * KW, wos = Cg * KT;
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MO; m++)
            acc[r][m] = V_ZERO();
    for (cc_idx c = 0; c < Cg; c++) {
        const T *wc = w + c * KT;
        for (cc_idx kd = 0; kd < KD; kd++)
            for (cc_idx kh = 0; kh < KH; kh++) {
                const T *rp[4];
                for (int r = 0; r < R; r++)
                    rp[r] = s + c * cstride + kd * kdstride + kh * khstride + r * rstride;
                const T *wt = wc + (kd * KH + kh) * KW;
                for (cc_idx kw = 0; kw < KW; kw++) {
                    const cc_idx off = kwoff[kw];
                    VEC xv[4];
                    for (int r = 0; r < R; r++)
                        xv[r] = V_LOAD(rp[r] + off);
                    for (int m = 0; m < MO; m++) {
                        const VEC wv = V_SET1(wt[m * wos + kw]);
                        for (int r = 0; r < R; r++)
                            acc[r][m] = V_FMA(xv[r], wv, acc[r][m]);
                    }
                }
            }
    }
    const VEC one = V_SET1((T)1);
    for (int m = 0; m < MO; m++) {
        const VEC bv = V_SET1(bias ? bias[m] : (T)0);
        for (int r = 0; r < R; r++) {
            const VEC y = V_FMA(bv, one, acc[r][m]);  /* acc + bias, one rounding */
            FN(store_n)(o + m * plane + r * ldo, y, nlast);
        }
    }
}

/* One image, one group: x = x[n, g*Cg], w = w[g*Og] (Og, Cg, KD, KH, KW), bias + g*Og
 * or NULL, out = out[n, g*Og]; output depth od, rows [oh0, oh1); scratch: Cg times
 * cconv_dw_nchw_scratch(g, oh1 - oh0). */
DW_TARGET static void FN(gconv_nchw)(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, const T *x,
                                     const T *w, const T *bias, T *out, cc_idx od,
                                     cc_idx oh0, cc_idx oh1, T *scratch)
{
    const cc_idx rb = oh1 - oh0, sw = g->sw, OW = g->OW;
    const cc_idx nrows = (rb - 1) * g->sh + (g->KH - 1) * g->dh + 1;
    const cc_idx PL = dw_phase_len(g), rowlen = sw * PL;
    const cc_idx KT = g->KD * g->KH * g->KW, plane = g->OD * g->OH * OW;
    const cc_idx rstride = g->sh * rowlen, khstride = g->dh * rowlen, kdstride = nrows * rowlen;
    const cc_idx cstride = g->KD * kdstride, xvol = g->D * g->H * g->W;
    cc_idx kwoff[g->KW];
    for (cc_idx kw = 0; kw < g->KW; kw++)
        kwoff[kw] = ((kw * g->dw) % sw) * PL + (kw * g->dw) / sw;
    FN(nchw_fill)(g, x, xvol, Cg, od, oh0, nrows, PL, scratch, cstride);
    for (cc_idx m0 = 0; m0 < Og; m0 += GC_MO) {
        const int MO = Og - m0 >= GC_MO ? GC_MO : (int)(Og - m0);
        const T *wm = w + m0 * Cg * KT;
        const T *bm = bias ? bias + m0 : NULL;
        T *om = out + m0 * plane + (od * g->OH + oh0) * OW;
        for (cc_idx r0 = 0; r0 < rb;) {
            const int R = rb - r0 >= GC_ROWS ? GC_ROWS : (int)(rb - r0);
            const T *s = scratch + r0 * rstride;
            for (cc_idx ow0 = 0; ow0 < OW; ow0 += VL) {
                const int nlast = OW - ow0 < VL ? (int)(OW - ow0) : VL;
#define GC_T(RR, MM)                                                                     \
    FN(gnchw_tile)(s + ow0, cstride, Cg, rstride, khstride, kdstride, kwoff, wm, g->KD,  \
                   g->KH, g->KW, bm, om + r0 * OW + ow0, OW, plane, nlast, RR, MM)
#define GC_MOS(RR)                                                                       \
    switch (MO) {                                                                        \
    case 1: GC_T(RR, 1); break;                                                          \
    case 2: GC_T(RR, 2); break;                                                          \
    case 3: GC_T(RR, 3); break;                                                          \
    default: GC_T(RR, 4); break;                                                         \
    }
                switch (R) {
                case 1: GC_MOS(1); break;
#if GC_ROWS >= 2
                case 2: GC_MOS(2); break;
#endif
#if GC_ROWS >= 4
                case 3: GC_MOS(3); break;
                case 4: GC_MOS(4); break;
#endif
                }
#undef GC_MOS
#undef GC_T
            }
            r0 += R;
        }
    }
}

#undef FN
#undef DW_INLINE
