/* Grouped channels-last direct kernel, written once and instantiated per (ISA path,
 * dtype) by depthwise.c with the macros of depthwise_impl.h plus
 *   V_BCAST(p)   every lane = *p
 *   GN_R1, GN_R2 output rows of a register tile for one / two vectors of channels
 * (the tile is GN_R x GN_Q pixels x V vectors; GN_R1 * GN_Q accumulators for V = 1).
 *
 * GN_Q (pixels per tile row) and gn_phase_len() come from depthwise.c.
 *
 * Micro-kernel contract (gnhwc_tile):
 *   - vectors run along the output channels of one group: the channels-last weight
 *     (KD, KH, KW, Cg, O) holds them contiguous, so weights are read in place (no pack).
 *   - each tap reads one input value per output pixel and broadcasts it: the input rows
 *     an item needs are first copied into a per-thread scratch in the depthwise NCHW
 *     form (depthwise_impl.h: zero-padded, split into sw stride phases, one slab per
 *     input channel), so that for every stride the GN_Q pixels of a tile read
 *     consecutive scratch elements and no tap ever checks the padding.
 *   - a tile may compute up to GN_Q - 1 pixels past the row end (they read scratch
 *     padding, never stored).
 * Arithmetic: that of gconv_nchw (each output +0, then fma over (c, kd, kh, kw) in
 * increasing order, then + bias with one rounding), so the two layouts give the same
 * bits, on every ISA path and thread count.
 */

#define GN_CAT2(a, b) a##_##b
#define GN_CAT(a, b) GN_CAT2(a, b)
#define GN_FN(name) GN_CAT(name, SFX)
#define GN_INLINE static inline __attribute__((always_inline)) DW_TARGET
/* Copy the input rows of channels [c0, c0 + nc) into the scratch (one slab of
 * KD * nrows rows of sw * PL elements per channel). x: image base (D, H, W, C). */
GN_INLINE void GN_FN(gnhwc_fill)(const cc_dw_geom *g, const T *x, cc_idx c0, cc_idx nc,
                                 cc_idx od, cc_idx oh0, cc_idx nrows, cc_idx PL, T *scratch)
{
    const cc_idx sw = g->sw, W = g->W, C = g->C, pw = g->pw, rowlen = sw * PL;
    const cc_idx cstride = g->KD * nrows * rowlen;
    for (cc_idx kd = 0; kd < g->KD; kd++) {
        const cc_idx id = od * g->sd + kd * g->dd - g->pd;
        for (cc_idx ri = 0; ri < nrows; ri++) {
            const cc_idx ih = oh0 * g->sh - g->ph + ri;
            T *row0 = scratch + (kd * nrows + ri) * rowlen;
            if (id < 0 || id >= g->D || ih < 0 || ih >= g->H) {
                for (cc_idx c = 0; c < nc; c++)
                    memset(row0 + c * cstride, 0, (size_t)rowlen * sizeof(T));
                continue;
            }
            const T *src = x + (id * g->H + ih) * W * C + c0;
            for (cc_idx q = 0; q < sw; q++) {
                /* padded column q + sw*t is input column q + sw*t - pw */
                cc_idx lo = pw > q ? (pw - q + sw - 1) / sw : 0;
                cc_idx hi = W - 1 + pw - q >= 0 ? (W - 1 + pw - q) / sw + 1 : 0;
                lo = CC_DW_MIN(lo, PL);
                hi = CC_DW_MIN(CC_DW_MAX(hi, lo), PL);
                /* one channel row at a time: the strided reads stay within the same
                 * few cache lines for every channel, the writes run sequentially
                 * (pixel-major scatter writes were 3x slower) */
                for (cc_idx c = 0; c < nc; c++) {
                    T *restrict dst = row0 + c * cstride + q * PL;
                    const T *restrict sp = src + c + (q - pw) * C;
                    const cc_idx step = sw * C;
                    for (cc_idx t = 0; t < lo; t++)
                        dst[t] = (T)0;
                    for (cc_idx t = lo; t < hi; t++)
                        dst[t] = sp[t * step];
                    for (cc_idx t = hi; t < PL; t++)
                        dst[t] = (T)0;
                }
            }
        }
    }
}

/* R output rows x GN_Q pixels x V vectors of output channels (the last vector nlast
 * lanes); stores the first `count` pixels of each row. s: scratch of the group's first
 * input channel at the tile's first pixel; w: weight at (tap 0, c 0, first channel);
 * o: output at the tile's first pixel and channel. */
GN_INLINE void GN_FN(gnhwc_tile)(const T *restrict s, cc_idx cstride, cc_idx Cg,
                                 cc_idx rstride, cc_idx khstride, cc_idx kdstride,
                                 const cc_idx *restrict kwoff, const T *restrict w, cc_idx O,
                                 cc_idx KD, cc_idx KH, cc_idx KW, const T *bias,
                                 T *restrict o, cc_idx ldo, int count, int nlast, const int R,
                                 const int V)
{
    /* flat and exactly the register budget (GN_R2 * V <= GN_R1): GCC keeps an array
     * in registers only while it is small */
    VEC acc[GN_R1 * GN_Q];
#define GN_ACC(r, q, v) acc[((r) * GN_Q + (q)) * V + (v)]
    const cc_idx wts = Cg * O; /* weight stride between taps */
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int q = 0; q < GN_Q; q++)
            _Pragma("GCC unroll 8")
            for (int v = 0; v < V; v++)
                GN_ACC(r, q, v) = V_ZERO();
    for (cc_idx c = 0; c < Cg; c++) {
        const T *wc = w + c * O;
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
    /* constant trip counts and a test on count: a runtime bound here would index acc
     * dynamically and keep it in memory (a store after every FMA, 3x slower) */
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int q = 0; q < GN_Q; q++)
            _Pragma("GCC unroll 8")
            for (int v = 0; v < V && q < count; v++) {
                const VEC y = V_FMA(bv[v], one, GN_ACC(r, q, v)); /* acc + bias, one rounding */
                T *p = o + r * ldo + q * O + v * VL;
                if (v == V - 1 && nlast < VL)
                    V_STOREM(p, y, nlast);
                else
                    V_STORE(p, y);
            }
#undef GN_ACC
}

/* One image, groups [g0, g1), output depth od, rows [oh0, oh1), every output channel of
 * those groups. x: image base (D, H, W, C); w: (KD, KH, KW, Cg, O); bias: (O,) or NULL;
 * out: image base (OD, OH, OW, O); scratch: (g1 - g0) * Cg * gn_scratch(g, oh1 - oh0)
 * elements. g->C is the input channel count; g->M is not read. */
DW_TARGET static void GN_FN(gconv_nhwc)(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx g0,
                                        cc_idx g1, const T *x, const T *w, const T *bias,
                                        T *out, cc_idx od, cc_idx oh0, cc_idx oh1, T *scratch)
{
    const cc_idx rb = oh1 - oh0, sw = g->sw, OW = g->OW;
    const cc_idx O = g->C / Cg * Og;
    const cc_idx nrows = (rb - 1) * g->sh + (g->KH - 1) * g->dh + 1;
    const cc_idx PL = gn_phase_len(g), rowlen = sw * PL;
    const cc_idx rstride = g->sh * rowlen, khstride = g->dh * rowlen, kdstride = nrows * rowlen;
    const cc_idx cstride = g->KD * kdstride;
    cc_idx kwoff[g->KW];
    for (cc_idx kw = 0; kw < g->KW; kw++)
        kwoff[kw] = ((kw * g->dw) % sw) * PL + (kw * g->dw) / sw;
    GN_FN(gnhwc_fill)(g, x, g0 * Cg, (g1 - g0) * Cg, od, oh0, nrows, PL, scratch);
    T *ob = out + (od * g->OH + oh0) * OW * O;
    for (cc_idx gi = g0; gi < g1; gi++) {
        const T *sg = scratch + (gi - g0) * Cg * cstride;
        for (cc_idx o0 = 0; o0 < Og; o0 += 2 * VL) {
            const cc_idx left = Og - o0;
            const int V = left > VL ? 2 : 1;
            const int nlast = (int)(left - (cc_idx)(V - 1) * VL < VL
                                    ? left - (cc_idx)(V - 1) * VL : VL);
            const int RM = V == 1 ? GN_R1 : GN_R2;
            const T *wg = w + gi * Og + o0;
            const T *bg = bias ? bias + gi * Og + o0 : NULL;
            for (cc_idx r0 = 0; r0 < rb;) {
                const int R = rb - r0 >= RM ? RM : (int)(rb - r0);
                for (cc_idx ow0 = 0; ow0 < OW; ow0 += GN_Q) {
                    const int count = OW - ow0 < GN_Q ? (int)(OW - ow0) : GN_Q;
#define GN_T(RR, VV)                                                                     \
    GN_FN(gnhwc_tile)(sg + r0 * rstride + ow0, cstride, Cg, rstride, khstride, kdstride, \
                      kwoff, wg, O, g->KD, g->KH, g->KW, bg,                             \
                      ob + (r0 * OW + ow0) * O + gi * Og + o0, OW * O, count, nlast, RR, VV)
                    if (V == 1) {
                        switch (R) {
                        case 1: GN_T(1, 1); break;
#if GN_R1 >= 2
                        case 2: GN_T(2, 1); break;
#endif
#if GN_R1 >= 3
                        case 3: GN_T(3, 1); break;
#endif
#if GN_R1 >= 4
                        case 4: GN_T(4, 1); break;
#endif
                        }
                    } else {
                        switch (R) {
                        case 1: GN_T(1, 2); break;
#if GN_R2 >= 2
                        case 2: GN_T(2, 2); break;
#endif
                        }
                    }
#undef GN_T
                }
                r0 += R;
            }
        }
    }
}

#undef GN_FN
#undef GN_INLINE
