/* Grouped direct kernel, both layouts, written once and instantiated per (ISA path,
 * dtype) by depthwise.c with the macros of depthwise_impl.h plus
 *   V_BCAST(p)     every lane = *p
 *   V_TRANSPOSE(a) a[0..VL-1] (VEC a[VL]) transposed in place: lane j of a[i] <-> lane i
 *                  of a[j] (nothing for VL == 1)
 *   GN_R1, GN_R2   output rows of a register tile for one / two vectors of channels
 * and, from depthwise.c, GN_Q (pixels per tile row) and gn_phase_len().
 *
 * Micro-kernel contract (gconv_tile): R rows x GN_Q pixels x V vectors of output
 * channels of one group (R * GN_Q * V <= GN_R1 * GN_Q accumulators).
 *   - Weights: (KD, KH, KW, Cg, Og-or-more) with the output channels contiguous, one
 *     vector load per (c, tap) and vector. Channels-last weights are read in place;
 *     channels-first weights are first repacked per group into the item's scratch.
 *   - Input: one value per (pixel, c, tap), broadcast. The rows an item needs sit in a
 *     per-thread scratch in the depthwise NCHW form (depthwise_impl.h: zero-padded,
 *     split into sw stride phases, one slab per input channel), so for every stride the
 *     GN_Q pixels of a tile read consecutive scratch elements and no tap checks the
 *     padding. Channels-first input fills it by row copies (nchw_fill), channels-last
 *     by VL x VL register transposes.
 *   - A tile may compute up to GN_Q - 1 pixels past the row end (they read scratch
 *     padding and are never stored).
 *   - Output: channels-last stores a vector per pixel; channels-first transposes each
 *     row's GN_Q pixels x VL channels in registers and stores a run per channel.
 * On AVX-512, float32 groups of 8 output channels go two at a time through
 * gconv_pair.h instead (channels-last; channels-first at stride 1 with Cg == 8; same
 * arithmetic, same bits).
 * Arithmetic: each output is +0, then fma over (c, kd, kh, kw) in increasing order
 * (im2col's K order), then + bias with one rounding, so both layouts, every ISA path
 * and every thread count give the same bits.
 */

#define GN_CAT2(a, b) a##_##b
#define GN_CAT(a, b) GN_CAT2(a, b)
#define GN_FN(name) GN_CAT(name, SFX)
#define GN_INLINE static inline __attribute__((always_inline)) DW_TARGET

/* VL pixels (src, `step` apart) x VL channels (contiguous) -> VL scratch rows (dst,
 * `cstride` apart) of VL pixels each, by one register transpose. */
GN_INLINE void GN_FN(gconv_fill_block)(const T *restrict src, cc_idx step, T *restrict dst,
                                       cc_idx cstride)
{
    VEC a[VL];
    for (int i = 0; i < VL; i++)
        a[i] = V_LOAD(src + i * step);
    V_TRANSPOSE(a);
    for (int j = 0; j < VL; j++)
        V_STORE(dst + j * cstride, a[j]);
}

/* Channels-last input rows of channels [c0, c0 + nc) into the scratch (one slab of
 * KD * nrows rows of sw * PL elements per channel). x: image base (D, H, W, C). */
GN_INLINE void GN_FN(gconv_fill_last)(const cc_dw_geom *g, const T *x, cc_idx c0, cc_idx nc,
                                      cc_idx od, cc_idx oh0, cc_idx nrows, cc_idx PL,
                                      T *scratch)
{
    const cc_idx sw = g->sw, W = g->W, C = g->C, pw = g->pw, rowlen = sw * PL;
    const cc_idx cstride = g->KD * nrows * rowlen;
    /* the padding first, all slabs at once: per row and channel, the one- or two-element
     * masked stores of the pad columns took an eighth of a ResNeXt 3x3 layer */
    GN_FN(row_zero)(scratch, nc * cstride);
    for (cc_idx kd = 0; kd < g->KD; kd++) {
        const cc_idx id = od * g->sd + kd * g->dd - g->pd;
        for (cc_idx ri = 0; ri < nrows; ri++) {
            const cc_idx ih = oh0 * g->sh - g->ph + ri;
            T *row0 = scratch + (kd * nrows + ri) * rowlen;
            if (id < 0 || id >= g->D || ih < 0 || ih >= g->H)
                continue;
            const T *src = x + (id * g->H + ih) * W * C + c0;
            const cc_idx step = sw * C; /* between the input pixels of one phase */
            for (cc_idx q = 0; q < sw; q++) {
                cc_idx lo, hi;
                cc_dw_phase_cols(g, q, PL, &lo, &hi);
                const T *sq = src + (q - pw) * C;
                T *dq = row0 + q * PL;
                cc_idx c = 0;
#if VL > 1
                /* VL pixels x VL channels per register transpose */
                for (; c + VL <= nc; c += VL) {
                    cc_idx t = lo;
                    for (; t + VL <= hi; t += VL)
                        GN_FN(gconv_fill_block)(sq + t * step + c, step, dq + c * cstride + t,
                                                cstride);
                    if (t < hi && hi - lo >= VL) {
                        /* the last VL pixels again, overlapping: the same values */
                        GN_FN(gconv_fill_block)(sq + (hi - VL) * step + c, step,
                                                dq + c * cstride + hi - VL, cstride);
                        t = hi;
                    }
                    for (; t < hi; t++)
                        for (int j = 0; j < VL; j++)
                            dq[(c + j) * cstride + t] = sq[t * step + c + j];
                }
#endif
                /* one channel row at a time: the strided reads stay within the same
                 * few cache lines for every channel, the writes run sequentially */
                for (; c < nc; c++) {
                    T *restrict dst = dq + c * cstride;
                    const T *restrict sp = sq + c;
                    for (cc_idx t = lo; t < hi; t++)
                        dst[t] = sp[t * step];
                }
            }
        }
    }
}

/* One group's channels-first weights (Og, Cg, KT) as (KT, Cg, Og), the layout the tile
 * reads: a matrix transpose (Og rows, K = Cg * KT columns, column k = c * KT + t goes
 * to row t * Cg + c), VL x VL blocks in registers. */
GN_INLINE void GN_FN(gconv_repack_w)(const T *restrict w, cc_idx Og, cc_idx Cg, cc_idx KT,
                                     T *restrict dst)
{
    const cc_idx K = Cg * KT;
    cc_idx m0 = 0;
#if VL > 1
    for (; m0 + VL <= Og; m0 += VL) {
        cc_idx k0 = 0;
        for (; k0 + VL <= K; k0 += VL) {
            VEC a[VL];
            for (int i = 0; i < VL; i++)
                a[i] = V_LOAD(w + (m0 + i) * K + k0);
            V_TRANSPOSE(a);
            for (int j = 0; j < VL; j++) {
                const cc_idx k = k0 + j, c = k / KT, t = k - c * KT;
                V_STORE(dst + (t * Cg + c) * Og + m0, a[j]);
            }
        }
        for (; k0 < K; k0++) {
            const cc_idx c = k0 / KT, t = k0 - c * KT;
            for (int i = 0; i < VL; i++)
                dst[(t * Cg + c) * Og + m0 + i] = w[(m0 + i) * K + k0];
        }
    }
#endif
    for (; m0 < Og; m0++)
        for (cc_idx k = 0; k < K; k++) {
            const cc_idx c = k / KT, t = k - c * KT;
            dst[(t * Cg + c) * Og + m0] = w[m0 * K + k];
        }
}

/* See the contract above. s: scratch of the group's first input channel at the tile's
 * first pixel; w: weight of (tap 0, c 0) at the tile's first channel, wcs elements
 * between input channels and Cg * wcs between taps. o: output at the tile's first pixel
 * and channel, ldo elements between rows; channels-last (CF == 0): pixel stride ops;
 * channels-first (CF == 1): `plane` elements between channels. Stores the first
 * `count` pixels of each row; the last vector has nlast lanes. */
GN_INLINE void GN_FN(gconv_tile)(const T *restrict s, cc_idx cstride, cc_idx Cg,
                                 cc_idx rstride, cc_idx khstride, cc_idx kdstride,
                                 const cc_idx *restrict kwoff, const T *restrict w,
                                 cc_idx wcs, cc_idx KD, cc_idx KH, cc_idx KW,
                                 const T *bias, T *restrict o, cc_idx ldo, cc_idx ops,
                                 cc_idx plane, int count, int nlast, const int R,
                                 const int V, const int CF)
{
    /* flat and exactly the register budget (GN_R2 * V <= GN_R1): GCC keeps an array
     * in registers only while it is small, and only with every loop over it unrolled
     * (hence the pragmas; without them every FMA was followed by a store) */
    VEC acc[GN_R1 * GN_Q];
#define GN_ACC(r, q, v) acc[((r) * GN_Q + (q)) * V + (v)]
    const cc_idx wts = Cg * wcs; /* weight stride between taps */
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int q = 0; q < GN_Q; q++)
            _Pragma("GCC unroll 8")
            for (int v = 0; v < V; v++)
                GN_ACC(r, q, v) = V_ZERO();
    for (cc_idx c = 0; c < Cg; c++) {
        const T *wc = w + c * wcs;
        for (cc_idx kd = 0; kd < KD; kd++)
            for (cc_idx kh = 0; kh < KH; kh++) {
                const T *rp[GN_R1];
                _Pragma("GCC unroll 8")
                for (int r = 0; r < R; r++)
                    rp[r] = s + c * cstride + kd * kdstride + kh * khstride + r * rstride;
                const T *wt = wc + (kd * KH + kh) * KW * wts;
                for (cc_idx kw = 0; kw < KW; kw++, wt += wts) {
                    const cc_idx off = kwoff[kw];
                    VEC wv[2];
                    _Pragma("GCC unroll 8")
                    for (int v = 0; v < V; v++)
                        wv[v] = v == V - 1 && nlast < VL ? V_LOADM(wt + v * VL, nlast)
                                                         : V_LOAD(wt + v * VL);
                    _Pragma("GCC unroll 8")
                    for (int r = 0; r < R; r++)
                        _Pragma("GCC unroll 8")
                        for (int q = 0; q < GN_Q; q++) {
                            const VEC xb = V_BCAST(rp[r] + off + q);
                            _Pragma("GCC unroll 8")
                            for (int v = 0; v < V; v++)
                                GN_ACC(r, q, v) = V_FMA(xb, wv[v], GN_ACC(r, q, v));
                        }
                }
            }
    }
    const VEC one = V_SET1((T)1);
    VEC bv[2];
    _Pragma("GCC unroll 8")
    for (int v = 0; v < V; v++) {
        const int n = v == V - 1 ? nlast : VL;
        bv[v] = bias ? (n < VL ? V_LOADM(bias + v * VL, n) : V_LOAD(bias + v * VL)) : V_ZERO();
    }
    /* constant trip counts with tests on count / nlast inside: a runtime bound would
     * index acc dynamically and keep it in memory */
    if (!CF) {
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++)
            _Pragma("GCC unroll 8")
            for (int q = 0; q < GN_Q; q++)
                _Pragma("GCC unroll 8")
                for (int v = 0; v < V && q < count; v++) {
                    const VEC y = V_FMA(bv[v], one, GN_ACC(r, q, v)); /* + bias, one rounding */
                    T *p = o + r * ldo + q * ops + v * VL;
                    if (v == V - 1 && nlast < VL)
                        V_STOREM(p, y, nlast);
                    else
                        V_STORE(p, y);
                }
        return;
    }
    /* channels-first: per row and vector, blocks of VL pixels x VL channels */
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int v = 0; v < V; v++)
            _Pragma("GCC unroll 8")
            for (int q0 = 0; q0 < GN_Q; q0 += VL) {
                VEC a[VL];
                _Pragma("GCC unroll 16")
                for (int i = 0; i < VL; i++)
                    a[i] = q0 + i < GN_Q ? V_FMA(bv[v], one, GN_ACC(r, q0 + i, v)) : V_ZERO();
                V_TRANSPOSE(a);
                const int n = count - q0 < VL ? count - q0 : VL;
                const int nch = v == V - 1 ? nlast : VL;
                if (n <= 0)
                    continue;
                _Pragma("GCC unroll 16")
                for (int j = 0; j < VL; j++) {
                    if (j >= nch)
                        break;
                    T *p = o + (v * VL + j) * plane + r * ldo + q0;
                    if (n < VL)
                        V_STOREM(p, a[j], n);
                    else
                        V_STORE(p, a[j]);
                }
            }
#undef GN_ACC
}

/* One image, groups [g0, g1), output depth od, rows [oh0, oh1), every output channel of
 * those groups.
 *   channels-last (cf == 0): x image base (D, H, W, C); w (KD, KH, KW, Cg, O);
 *     out image base (OD, OH, OW, O).
 *   channels-first (cf == 1): x image base (C, D, H, W); w (O, Cg, KD, KH, KW);
 *     out image base (O, OD, OH, OW).
 * bias: (O,) or NULL. g->C is the input channel count; g->M is not read. scratch:
 * cconv_gconv_scratch(g, Cg, Og, g1 - g0, oh1 - oh0, cf) elements. */
DW_TARGET static void GN_FN(gconv)(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx g0,
                                   cc_idx g1, const T *x, const T *w, const T *bias, T *out,
                                   cc_idx od, cc_idx oh0, cc_idx oh1, T *scratch, int cf)
{
#ifdef GN_PAIR
    /* groups of 8 (4) output channels two (four) at a time (gconv_pair.h) */
    if (gp_takes(g, Cg, Og, g1 - g0, cf)) {
        g0 = gp_groups(g, Cg, Og, g0, g1, x, w, bias, out, od, oh0, oh1, scratch, cf);
        if (g0 == g1)
            return;
    }
#endif
    const cc_idx rb = oh1 - oh0, sw = g->sw, OW = g->OW;
    const cc_idx O = g->C / Cg * Og;
    const cc_idx nrows = (rb - 1) * g->sh + (g->KH - 1) * g->dh + 1;
    const cc_idx PL = gn_phase_len(g), rowlen = sw * PL;
    const cc_idx rstride = g->sh * rowlen, khstride = g->dh * rowlen, kdstride = nrows * rowlen;
    const cc_idx cstride = g->KD * kdstride, KT = g->KD * g->KH * g->KW;
    const cc_idx plane = g->OD * g->OH * OW;
    cc_idx kwoff[g->KW];
    for (cc_idx kw = 0; kw < g->KW; kw++)
        kwoff[kw] = ((kw * g->dw) % sw) * PL + (kw * g->dw) / sw;
    T *wsc = scratch + (g1 - g0) * Cg * cstride; /* channels-first: one group's weights */
    if (cf) {
        const cc_idx xvol = g->D * g->H * g->W;
        GN_FN(nchw_fill)(g, x + g0 * Cg * xvol, xvol, (g1 - g0) * Cg, od, oh0, nrows, PL,
                         scratch, cstride);
    } else {
        GN_FN(gconv_fill_last)(g, x, g0 * Cg, (g1 - g0) * Cg, od, oh0, nrows, PL, scratch);
    }
    for (cc_idx gi = g0; gi < g1; gi++) {
        const T *sg = scratch + (gi - g0) * Cg * cstride;
        const T *wg;
        cc_idx wcs;
        if (cf) {
            GN_FN(gconv_repack_w)(w + gi * Og * Cg * KT, Og, Cg, KT, wsc);
            wg = wsc;
            wcs = Og;
        } else {
            wg = w + gi * Og;
            wcs = O;
        }
        for (cc_idx o0 = 0; o0 < Og; o0 += 2 * VL) {
            const cc_idx left = Og - o0;
            const int V = left > VL ? 2 : 1;
            const int nlast = (int)(left - (cc_idx)(V - 1) * VL < VL
                                    ? left - (cc_idx)(V - 1) * VL : VL);
            const int RM = V == 1 ? GN_R1 : GN_R2;
            const T *bg = bias ? bias + gi * Og + o0 : NULL;
            T *og = cf ? out + (gi * Og + o0) * plane + (od * g->OH + oh0) * OW
                       : out + (od * g->OH + oh0) * OW * O + gi * Og + o0;
            const cc_idx ldo = cf ? OW : OW * O, ops = cf ? 1 : O;
            for (cc_idx r0 = 0; r0 < rb;) {
                const int R = rb - r0 >= RM ? RM : (int)(rb - r0);
                for (cc_idx ow0 = 0; ow0 < OW; ow0 += GN_Q) {
                    const int count = OW - ow0 < GN_Q ? (int)(OW - ow0) : GN_Q;
#define GN_T(RR, VV, CC)                                                                 \
    GN_FN(gconv_tile)(sg + r0 * rstride + ow0, cstride, Cg, rstride, khstride, kdstride, \
                      kwoff, wg + o0, wcs, g->KD, g->KH, g->KW, bg,                      \
                      og + r0 * ldo + ow0 * ops, ldo, ops, plane, count, nlast, RR, VV, CC)
#define GN_SW1(CC)                                                                       \
    switch (R) {                                                                         \
    case 1: GN_T(1, 1, CC); break;                                                       \
    GN_CASE_R1_2(CC)                                                                     \
    GN_CASE_R1_34(CC)                                                                    \
    }
#define GN_SW2(CC)                                                                       \
    switch (R) {                                                                         \
    case 1: GN_T(1, 2, CC); break;                                                       \
    GN_CASE_R2_2(CC)                                                                     \
    }
#if GN_R1 >= 2
#define GN_CASE_R1_2(CC) case 2: GN_T(2, 1, CC); break;
#else
#define GN_CASE_R1_2(CC)
#endif
#if GN_R1 >= 4
#define GN_CASE_R1_34(CC) case 3: GN_T(3, 1, CC); break; case 4: GN_T(4, 1, CC); break;
#else
#define GN_CASE_R1_34(CC)
#endif
#if GN_R2 >= 2
#define GN_CASE_R2_2(CC) case 2: GN_T(2, 2, CC); break;
#else
#define GN_CASE_R2_2(CC)
#endif
                    if (cf) {
                        if (V == 1) { GN_SW1(1) } else { GN_SW2(1) }
                    } else {
                        if (V == 1) { GN_SW1(0) } else { GN_SW2(0) }
                    }
#undef GN_CASE_R1_2
#undef GN_CASE_R1_34
#undef GN_CASE_R2_2
#undef GN_SW1
#undef GN_SW2
#undef GN_T
                }
                r0 += R;
            }
        }
    }
}

#undef GN_FN
#undef GN_INLINE
