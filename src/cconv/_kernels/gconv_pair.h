/* Grouped kernel for groups of 8 (or 4) output channels, two (four) groups at a time
 * (AVX-512, float32; included by depthwise.c into the AVX-512 instance of gconv_impl.h,
 * which calls gp_groups for every GPV groups of an item: channels-last always,
 * channels-first at stride 1 with GPV x Cg == 16). GPV = 16 / Og groups per vector;
 * "pair" below means those GPV groups.
 *
 * Why: the 8-lane kernel (gconv_impl.h) issues one input broadcast per 8-lane FMA, and
 * on this Zen 4 host broadcasts, not FMAs, bound it (about one per cycle: 34 GFLOP/s per
 * core in a loop of nothing else). Here one zmm holds both groups' outputs interleaved
 * (lane GPV*i + h: output channel i of group g + h), and one 64-bit (128-bit) broadcast
 * of the groups' input values feeds all 16 lanes (the same loop: 76 GFLOP/s).
 *
 * Micro-kernel contract (gp_tile): R rows (1-3) x GN_Q pixels of one group pair,
 * R * GN_Q <= 21 zmm accumulators.
 *   - Scratch of the pair: KD * nrows rows of sw stride phases x PL pixels x Cg channel
 *     pairs, zero-padded: input (pixel p, channel c, group h) at
 *     ((row * sw + phase) * PL + p) * GPV*Cg + GPV*c + h, so the groups' values of one
 *     (pixel, channel) are one broadcast load and every tile reads consecutive pixels.
 *   - Weights of the pair: (KT, Cg) rows of 16 interleaved lanes, packed per pair.
 *   - A tile may compute up to GN_Q - 1 pixels past the row end (scratch padding; never
 *     stored). Stores de-interleave each pixel's 16 lanes into the groups' 16
 *     contiguous channels (one permute); channels-first then transposes each row's
 *     pixels x 16 channels in registers and stores a run per channel.
 * Arithmetic: as gconv_tile (+0, fma over (c, kd, kh, kw) in increasing order, + bias
 * with one rounding), so the outputs are bitwise those of the 8-lane kernel.
 */

#define GP_R 3 /* rows per tile: 21 accumulators (with 4 rows GCC spilled one of 28) */

/* GPV runs of n elements, rs apart from a -> dst[GPV*i + h] = a[h*rs + i] */
static inline __attribute__((always_inline)) DW_TARGET void
gp_interleave(const float *a, cc_idx rs, float *dst, cc_idx n, const int GPV)
{
    cc_idx i = 0;
    if (GPV == 2) {
        const __m512i idx =
            _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
        for (; i + 8 <= n; i += 8) {
            const __m512 v = _mm512_insertf32x8(
                _mm512_castps256_ps512(_mm256_loadu_ps(a + i)), _mm256_loadu_ps(a + rs + i), 1);
            _mm512_storeu_ps(dst + 2 * i, _mm512_permutexvar_ps(idx, v));
        }
    } else {
        const __m512i idx =
            _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        for (; i + 4 <= n; i += 4) {
            __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(a + i));
            v = _mm512_insertf32x4(v, _mm_loadu_ps(a + rs + i), 1);
            v = _mm512_insertf32x4(v, _mm_loadu_ps(a + 2 * rs + i), 2);
            v = _mm512_insertf32x4(v, _mm_loadu_ps(a + 3 * rs + i), 3);
            _mm512_storeu_ps(dst + 4 * i, _mm512_permutexvar_ps(idx, v));
        }
    }
    for (; i < n; i++)
        for (int h = 0; h < GPV; h++)
            dst[GPV * i + h] = a[h * rs + i];
}

/* One input row of the pair into its scratch row (layout above), channels-last:
 * src: the row's pixel 0 at the pair's first channel (its 2Cg channels contiguous),
 * C between pixels. */
static inline __attribute__((always_inline)) DW_TARGET void
gp_row_last(const cc_dw_geom *g, const float *src, cc_idx Cg, cc_idx PL, float *row,
            const int GPV)
{
    const cc_idx sw = g->sw, C = g->C, pw = g->pw, pst = GPV * Cg;
    for (cc_idx q = 0; q < sw; q++) {
        cc_idx lo, hi;
        cc_dw_phase_cols(g, q, PL, &lo, &hi);
        const float *sq = src + (q - pw) * C;
        float *dq = row + q * PL * pst;
        for (cc_idx t = lo; t < hi; t++)
            gp_interleave(sq + t * sw * C, Cg, dq + t * pst, Cg, GPV);
    }
}

/* The same from channels-first input, stride 1 and GPV x Cg == 16 only:
 * src: the row's pixel 0 of channel 0 of the image, xvol between channels. The pair's
 * 16 channel rows, taken in interleaved order, become pixel vectors by one 16 x 16
 * register transpose per 16 pixels. */
static inline __attribute__((always_inline)) DW_TARGET void
gp_row_first(const cc_dw_geom *g, const float *src, cc_idx gi, cc_idx xvol, cc_idx PL,
             float *row, const int GPV)
{
    const cc_idx Cg = 16 / GPV;
    cc_idx lo, hi;
    cc_dw_phase_cols(g, 0, PL, &lo, &hi);
    src -= g->pw;
    for (cc_idx t = lo; t < hi; t += 16) {
        const int n = hi - t < 16 ? (int)(hi - t) : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1u);
        __m512 a[16];
        for (int j = 0; j < 16; j++)
            a[j] = _mm512_maskz_loadu_ps(m, src + ((gi + j % GPV) * Cg + j / GPV) * xvol + t);
        cc_tr16_ps(a);
        for (int p = 0; p < n; p++)
            _mm512_storeu_ps(row + (t + p) * 16, a[p]);
    }
}

/* The pair's whole scratch, zero padding included; x: image base, (D, H, W, C)
 * channels-last, (C, D, H, W) channels-first (cf). */
static DW_TARGET void gp_fill(const cc_dw_geom *g, const float *x, cc_idx gi, cc_idx Cg,
                              cc_idx od, cc_idx oh0, cc_idx nrows, cc_idx PL, float *s,
                              int cf, const int GPV)
{
    const cc_idx W = g->W, rowfl = g->sw * PL * GPV * Cg, total = g->KD * nrows * rowfl;
    cc_idx t = 0;
    for (; t + 16 <= total; t += 16)
        _mm512_storeu_ps(s + t, _mm512_setzero_ps());
    for (; t < total; t++)
        s[t] = 0.0f;
    for (cc_idx kd = 0; kd < g->KD; kd++) {
        const cc_idx id = od * g->sd + kd * g->dd - g->pd;
        if (id < 0 || id >= g->D)
            continue;
        for (cc_idx ri = 0; ri < nrows; ri++) {
            const cc_idx ih = oh0 * g->sh - g->ph + ri;
            if (ih < 0 || ih >= g->H)
                continue;
            float *row = s + (kd * nrows + ri) * rowfl;
            if (cf)
                gp_row_first(g, x + (id * g->H + ih) * W, gi, g->D * g->H * W, PL, row, GPV);
            else
                gp_row_last(g, x + (id * g->H + ih) * W * g->C + gi * Cg, Cg, PL, row, GPV);
        }
    }
}

/* See the contract above. s: the pair's scratch at the tile's first row and pixel;
 * rstride / khstride / kdstride / kwoff in floats; o: output of the pair's first channel
 * at the tile's first pixel, ldo between rows, ops between pixels. */
static inline __attribute__((always_inline)) DW_TARGET void
gp_tile(const float *restrict s, cc_idx Cg, cc_idx rstride, cc_idx khstride, cc_idx kdstride,
        const cc_idx *restrict kwoff, const float *restrict wp, cc_idx KD, cc_idx KH,
        cc_idx KW, const float *bb, float *restrict o, cc_idx ldo, cc_idx ops, cc_idx pst,
        cc_idx plane, int count, const int R, const int CF, const int GPV)
{
    __m512 acc[4 * GN_Q];
    _Pragma("GCC unroll 32")
    for (int i = 0; i < R * GN_Q; i++)
        acc[i] = _mm512_setzero_ps();
    for (cc_idx c = 0; c < Cg; c++)
        for (cc_idx kd = 0; kd < KD; kd++)
            for (cc_idx kh = 0; kh < KH; kh++) {
                const float *rp[4];
                _Pragma("GCC unroll 4")
                for (int r = 0; r < R; r++)
                    rp[r] = s + GPV * c + kd * kdstride + kh * khstride + r * rstride;
                const float *wt = wp + ((kd * KH + kh) * KW * Cg + c) * 16;
                for (cc_idx kw = 0; kw < KW; kw++, wt += Cg * 16) {
                    const cc_idx off = kwoff[kw];
                    const __m512 wv = _mm512_loadu_ps(wt);
                    _Pragma("GCC unroll 4")
                    for (int r = 0; r < R; r++)
                        _Pragma("GCC unroll 8")
                        for (int q = 0; q < GN_Q; q++) {
                            const float *xp = rp[r] + off + q * pst;
                            const __m512 xb =
                                GPV == 2 ? _mm512_castpd_ps(_mm512_broadcastsd_pd(
                                               _mm_load_sd((const double *)xp)))
                                         : _mm512_broadcast_f32x4(_mm_loadu_ps(xp));
                            acc[r * GN_Q + q] = _mm512_fmadd_ps(xb, wv, acc[r * GN_Q + q]);
                        }
                }
            }
    /* (made here, not passed in: a vector argument stays live through the loop and
     * pushed an accumulator out of the 32 registers) */
    const __m512 bv = bb ? _mm512_loadu_ps(bb) : _mm512_setzero_ps();
    const __m512 one = _mm512_set1_ps(1.0f);
    /* output lane h*Og + i <- accumulator lane GPV*i + h */
    const __m512i split =
        GPV == 2 ? _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)
                 : _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    if (CF) {
        /* per row: pixels x channels -> channel runs of `count` pixels, `plane` apart */
        const __mmask16 m = (__mmask16)((1u << count) - 1u);
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            __m512 a[16];
            _Pragma("GCC unroll 16")
            for (int q = 0; q < 16; q++)
                a[q] = q < GN_Q ? _mm512_permutexvar_ps(
                                      split, _mm512_fmadd_ps(bv, one, acc[r * GN_Q + q]))
                                : _mm512_setzero_ps();
            cc_tr16_ps(a);
            _Pragma("GCC unroll 16")
            for (int j = 0; j < 16; j++)
                _mm512_mask_storeu_ps(o + j * plane + r * ldo, m, a[j]);
        }
        return;
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int q = 0; q < GN_Q; q++)
            if (q < count) {
                const __m512 y = _mm512_fmadd_ps(bv, one, acc[r * GN_Q + q]);
                _mm512_storeu_ps(o + r * ldo + q * ops, _mm512_permutexvar_ps(split, y));
            }
}

/* Groups [g0, g1) of one item of gconv (gconv_impl.h; same arguments, Og = 16 / GPV),
 * GPV at a time. Returns the first group not done (the rest of g1 - g0 over GPV is left
 * to the 8-lane kernel). scratch: cconv_gconv_scratch(g, Cg, Og, g1 - g0, oh1 - oh0, cf)
 * elements, g1 - g0 >= GPV. */
static inline __attribute__((always_inline)) DW_TARGET cc_idx
gp_groups_v(const cc_dw_geom *g, cc_idx Cg, cc_idx g0, cc_idx g1, const float *x,
            const float *w, const float *bias, float *out, cc_idx od, cc_idx oh0, cc_idx oh1,
            float *scratch, int cf, const int GPV)
{
    const cc_idx Og = 16 / GPV;
    const cc_idx rb = oh1 - oh0, sw = g->sw, OW = g->OW, O = g->C / Cg * Og;
    const cc_idx nrows = (rb - 1) * g->sh + (g->KH - 1) * g->dh + 1;
    const cc_idx PL = gn_phase_len(g), pst = GPV * Cg, rowfl = sw * PL * pst;
    const cc_idx rstride = g->sh * rowfl, khstride = g->dh * rowfl, kdstride = nrows * rowfl;
    const cc_idx KT = g->KD * g->KH * g->KW;
    cc_idx kwoff[g->KW];
    for (cc_idx kw = 0; kw < g->KW; kw++)
        kwoff[kw] = (((kw * g->dw) % sw) * PL + (kw * g->dw) / sw) * pst;
    float *wp = scratch + g->KD * nrows * rowfl;
    cc_idx gi = g0;
    for (; gi + GPV <= g1; gi += GPV) {
        gp_fill(g, x, gi, Cg, od, oh0, nrows, PL, scratch, cf, GPV);
        if (cf) {
            /* w (O, Cg, KT): lane GPV*i + h of row (t, c) is w[(gi + h) * Og + i, c, t] */
            for (cc_idx t = 0; t < KT; t++)
                for (cc_idx c = 0; c < Cg; c++)
                    for (int j = 0; j < 16; j++)
                        wp[(t * Cg + c) * 16 + j] =
                            w[(((gi + j % GPV) * Og + j / GPV) * Cg + c) * KT + t];
        } else {
            for (cc_idx k = 0; k < KT * Cg; k++)
                gp_interleave(w + k * O + gi * Og, Og, wp + k * 16, Og, GPV);
        }
        float bb[16];
        if (bias)
            gp_interleave(bias + gi * Og, Og, bb, Og, GPV);
        const cc_idx plane = g->OD * g->OH * OW;
        float *og = cf ? out + gi * Og * plane + (od * g->OH + oh0) * OW
                       : out + (od * g->OH + oh0) * OW * O + gi * Og;
        const cc_idx ldo = cf ? OW : OW * O, ops = cf ? 1 : O;
        for (cc_idx r0 = 0; r0 < rb;) {
            const int R = rb - r0 >= GP_R ? GP_R : (int)(rb - r0);
            for (cc_idx ow0 = 0; ow0 < OW; ow0 += GN_Q) {
                const int count = OW - ow0 < GN_Q ? (int)(OW - ow0) : GN_Q;
#define GP_T(RR, CF)                                                                       \
    gp_tile(scratch + r0 * rstride + ow0 * pst, Cg, rstride, khstride, kdstride, kwoff, wp, \
            g->KD, g->KH, g->KW, bias ? bb : NULL, og + r0 * ldo + ow0 * ops, ldo, ops, pst,  \
            plane, count, RR, CF, GPV)
#define GP_SW(CF)                                                                          \
    switch (R) {                                                                           \
    case 1: GP_T(1, CF); break;                                                            \
    case 2: GP_T(2, CF); break;                                                            \
    default: GP_T(3, CF); break;                                                           \
    }
                if (cf) {
                    GP_SW(1)
                } else {
                    GP_SW(0)
                }
#undef GP_SW
#undef GP_T
            }
            r0 += R;
        }
    }
    return gi;
}

/* One out-of-line instance per GPV, each with its own register allocation. */
#define GP_GROUPS(NAME, GPV)                                                               \
    static DW_TARGET __attribute__((noinline)) cc_idx NAME(                                \
        const cc_dw_geom *g, cc_idx Cg, cc_idx g0, cc_idx g1, const float *x, const float *w, \
        const float *bias, float *out, cc_idx od, cc_idx oh0, cc_idx oh1, float *scratch,  \
        int cf)                                                                            \
    {                                                                                      \
        return gp_groups_v(g, Cg, g0, g1, x, w, bias, out, od, oh0, oh1, scratch, cf, GPV); \
    }
GP_GROUPS(gp_groups2, 2)
GP_GROUPS(gp_groups4, 4)
#undef GP_GROUPS

static inline DW_TARGET cc_idx gp_groups(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx g0,
                                         cc_idx g1, const float *x, const float *w,
                                         const float *bias, float *out, cc_idx od,
                                         cc_idx oh0, cc_idx oh1, float *scratch, int cf)
{
    return (Og == 8 ? gp_groups2 : gp_groups4)(g, Cg, g0, g1, x, w, bias, out, od, oh0, oh1,
                                               scratch, cf);
}

/* Whether gp_groups takes groups of an item of g1 - g0 groups. */
static inline int gp_takes(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx ngroups, int cf)
{
    return (Og == 8 || Og == 4) && ngroups >= 16 / Og && (!cf || (g->sw == 1 && Cg * (16 / Og) == 16));
}
