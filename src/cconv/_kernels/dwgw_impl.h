/* The dwgw kernel (dwgw.h), written once and instantiated per (ISA path, dtype) by
 * gwdot.c, which defines the logical-vector macros of gwdot_impl.h (T, SFX, LV, LANES,
 * LV_ZERO, LV_LOAD, LV_LOADM, LV_STORE, LV_FMA, GWD_TARGET) and DWGW_TILES(X) (X(1) ..
 * X(DWGW_TGMAX)) before including this file ahead of gwdot_impl.h, which undefines them.
 */
#define DWGW_CAT2(a, b) a##_##b
#define DWGW_CAT(a, b) DWGW_CAT2(a, b)
#define DFN(name) DWGW_CAT(name, SFX)
#define DWGW_INLINE static inline __attribute__((always_inline)) GWD_TARGET

/* The loops over a tile's taps, unrolled explicitly: GCC 12 left them rolled for the
 * larger tiles (up to 25 taps), which kept acc[] on the stack (a load and a store per
 * FMA). */
#define DWGW_EACH_TAP(TG) _Pragma("GCC unroll 32") for (int s = 0; s < (TG); s++)

/* One checked pixel: tap s reads only where its ow range [lo[s], hi[s]) holds ow. */
#define DWGW_EDGE_PIXEL(TG, LD)                                                           \
    {                                                                                     \
        const LV d = LD(dyr + ow * C);                                                    \
        const cc_idx xo = base + ow * step;                                               \
        DWGW_EACH_TAP(TG)                                                                 \
            if (ow >= lo[s] && ow < hi[s])                                                \
                acc[s] = LV_FMA(d, LD(x + (xo + koff[s])), acc[s]);                         \
    }

#ifndef DWGW_SLIDE
#define DWGW_SLIDE 0
#endif

/* The unchecked middle [ia, ib) of a 3 x 3 tap tile at stride 1, column dilation 1
 * (slide): tap (kh, kw) of pixel ow reads the column that tap (kh, kw + 1) read at
 * pixel ow - 1, so the 3 x 3 window of X vectors stays in registers and each pixel
 * loads one new column (3 vectors) instead of 9. The same FMAs in the same order.
 * AVX-512 (DWGW_SLIDE), in-process A/B against the 9-load loop, kernel time: 144 ch at
 * 56x56 batch 8 0.76-0.77 (1 and 2 threads), 192 ch at 28x28 0.80-0.85, 576 ch at
 * 14x14 0.85, 32 ch at 112x112 0.88-0.92. */
#define DWGW_MID_SLIDE(LD)                                                                \
    {                                                                                     \
        const T *r0 = x + base + ia * C + koff[0], *r1 = x + base + ia * C + koff[3];     \
        const T *r2 = x + base + ia * C + koff[6], *dp = dyr + ia * C;                    \
        LV a0 = LD(r0), a1 = LD(r0 + C), b0 = LD(r1), b1 = LD(r1 + C);                    \
        LV e0 = LD(r2), e1 = LD(r2 + C);                                                  \
        for (ow = ia; ow < ib; ow++) {                                                    \
            const LV d = LD(dp);                                                          \
            const LV a2 = LD(r0 + 2 * C), b2 = LD(r1 + 2 * C), e2 = LD(r2 + 2 * C);       \
            acc[0] = LV_FMA(d, a0, acc[0]);                                               \
            acc[1] = LV_FMA(d, a1, acc[1]);                                               \
            acc[2] = LV_FMA(d, a2, acc[2]);                                               \
            acc[3] = LV_FMA(d, b0, acc[3]);                                               \
            acc[4] = LV_FMA(d, b1, acc[4]);                                               \
            acc[5] = LV_FMA(d, b2, acc[5]);                                               \
            acc[6] = LV_FMA(d, e0, acc[6]);                                               \
            acc[7] = LV_FMA(d, e1, acc[7]);                                               \
            acc[8] = LV_FMA(d, e2, acc[8]);                                               \
            a0 = a1, a1 = a2, b0 = b1, b1 = b2, e0 = e1, e1 = e2;                         \
            r0 += C, r1 += C, r2 += C, dp += C;                                           \
        }                                                                                 \
    }

/* The row's pixels in order: checked ends, unchecked middle [ia, ib). */
#define DWGW_ROW(TG, LD)                                                                  \
    {                                                                                     \
        cc_idx ow = 0;                                                                    \
        for (; ow < ia; ow++)                                                             \
            DWGW_EDGE_PIXEL(TG, LD)                                                       \
        if (DWGW_SLIDE && TG == 9 && slide && ia < ib) {                                  \
            DWGW_MID_SLIDE(LD)                                                            \
        }                                                                                 \
        for (; ow < ib; ow++) {                                                           \
            const LV d = LD(dyr + ow * C);                                                \
            const cc_idx xo = base + ow * step;                                         \
            DWGW_EACH_TAP(TG)                                                             \
                acc[s] = LV_FMA(d, LD(x + (xo + koff[s])), acc[s]);                      \
        }                                                                                 \
        for (; ow < OW; ow++)                                                             \
            DWGW_EDGE_PIXEL(TG, LD)                                                       \
    }

/* TG taps x one channel vector over one output row; acc_mem: the partials of the
 * first tap (tap s at acc_mem + s * C). x, dyr: already offset to the vector's first
 * channel. base: X offset of (row origin, ow = 0) before the tap offsets koff[s];
 * step: X elements per output pixel (sw * C). nch < LANES: the last, partial vector. */
#define DWGW_DEFINE_TILE(TG)                                                              \
    DWGW_INLINE void DFN(dwgw_tile_##TG)(const T *x, const T *dyr, cc_idx base,           \
                                         cc_idx step, cc_idx C, cc_idx OW,                \
                                         const cc_idx *koff, const cc_idx *lo,            \
                                         const cc_idx *hi, T *acc_mem, int nch,           \
                                         int slide)                                       \
    {                                                                                     \
        LV acc[TG];                                                                       \
        cc_idx ia = 0, ib = OW;                                                           \
        DWGW_EACH_TAP(TG) {                                                               \
            acc[s] = LV_LOADM(acc_mem + s * C, nch);                                      \
            ia = lo[s] > ia ? lo[s] : ia;                                                 \
            ib = hi[s] < ib ? hi[s] : ib;                                                 \
        }                                                                                 \
        if (ib <= ia)                                                                     \
            ia = ib = OW; /* no pixel reads inside for every tap: all checked */          \
        if (nch == LANES) {                                                               \
            DWGW_ROW(TG, LV_LOAD)                                                         \
            DWGW_EACH_TAP(TG)                                                             \
                LV_STORE(acc_mem + s * C, acc[s]);                                        \
        } else {                                                                          \
            DWGW_ROW(TG, DWGW_LDM)                                                        \
            T tmp[LANES];                                                                 \
            DWGW_EACH_TAP(TG) {                                                           \
                LV_STORE(tmp, acc[s]);                                                    \
                memcpy(acc_mem + s * C, tmp, sizeof(T) * (size_t)nch);                    \
            }                                                                             \
        }                                                                                 \
    }
#define DWGW_LDM(p) LV_LOADM((p), nch)

DWGW_TILES(DWGW_DEFINE_TILE)

/* bias[j] += dyr[ow * C + j] in double for ow = 0 .. OW - 1 in order, j < nch: the
 * channels-last bias sum of biasgrad.h over one row (each lane its own double sum, so
 * vectorising reorders nothing). Runs right after the row's tiles, dY still in L1. */
DWGW_INLINE void DFN(dwgw_bias_row)(const T *dyr, cc_idx C, cc_idx OW, double *bias,
                                    int nch)
{
    double acc[LANES];
    for (int j = 0; j < LANES; j++)
        acc[j] = j < nch ? bias[j] : 0.0;
    if (nch == LANES) {
        for (cc_idx ow = 0; ow < OW; ow++)
            for (int j = 0; j < LANES; j++)
                acc[j] += (double)dyr[ow * C + j];
    } else {
        for (cc_idx ow = 0; ow < OW; ow++)
            for (int j = 0; j < nch; j++)
                acc[j] += (double)dyr[ow * C + j];
    }
    for (int j = 0; j < nch; j++)
        bias[j] = acc[j];
}

/* Prefetch row r's dY and the input rows it reads that row r - 1 (same image and plane)
 * did not: the channel blocks below read them strided, badly prefetched by the hardware
 * from memory. */
DWGW_INLINE void DFN(dwgw_prefetch_row)(const cc_dwgw_geom *g, const T *x, const T *dy,
                                        cc_idx r)
{
    const cc_idx C = g->C, plane = g->OD * g->OH, es = (cc_idx)sizeof(T);
    const cc_idx n = r / plane, od = r % plane / g->OH, oh = r % g->OH;
    const cc_idx span = (g->KH - 1) * g->dh + 1;
    cc_idx ia, ib;
    dwp_new_rows(oh, oh + 1, 0, g->sh, g->ph, span, g->H, &ia, &ib);
    dwp_fetch_plane_rows(x + n * g->D * g->H * g->W * C, es, g->D, g->H, g->W, C, C, g->KD,
                         od * g->sd - g->pd, g->dd, ia, ib);
    dwp_fetch_rows(dy + r * g->OW * C, es, g->OW, C, C, 0, 1, 0);
}

GWD_TARGET static int DFN(dwgw_rows)(const cc_dwgw_geom *g, const T *x, const T *dy,
                                     cc_idx r0, cc_idx r1, T *part, double *bias)
{
    const cc_idx C = g->C, OW = g->OW, W = g->W;
    const cc_idx taps = g->KD * g->KH * g->KW;
    const cc_idx ng = (taps + DWGW_TGMAX - 1) / DWGW_TGMAX, tg = (taps + ng - 1) / ng;
    cc_idx *tab = malloc(sizeof(cc_idx) * (size_t)(3 * taps + 2 * g->KW));
    if (tab == NULL)
        return -1;
    cc_idx *koff = tab, *lo = tab + taps, *hi = tab + 2 * taps;
    cc_idx *lok = tab + 3 * taps, *hik = lok + g->KW;
    /* ow range of column tap kw: 0 <= ow*sw + kw*dw - pw < W */
    for (cc_idx kw = 0; kw < g->KW; kw++) {
        cc_idx a = 0, b = OW;
        while (a < OW && a * g->sw + kw * g->dw - g->pw < 0)
            a++;
        while (b > a && (b - 1) * g->sw + kw * g->dw - g->pw >= W)
            b--;
        lok[kw] = a;
        hik[kw] = b;
    }
    for (cc_idx t = 0; t < taps; t++) {
        const cc_idx kw = t % g->KW, kh = t / g->KW % g->KH, kd = t / (g->KW * g->KH);
        koff[t] = ((kd * g->dd * g->H + kh * g->dh) * W + kw * g->dw) * C;
    }
    memset(part, 0, sizeof(T) * (size_t)(taps * C));
    if (bias != NULL)
        memset(bias, 0, sizeof(double) * (size_t)C);
    const cc_idx plane = g->OD * g->OH;
    /* one 3 x 3 tile, stride 1 and column dilation 1 along W: DWGW_MID_SLIDE */
    const int slide = g->KD == 1 && g->KH == 3 && g->KW == 3 && g->sw == 1 && g->dw == 1;
    for (cc_idx r = r0; r < r1; r++) {
        const cc_idx n = r / plane, od = r % plane / g->OH, oh = r % g->OH;
        const cc_idx id0 = od * g->sd - g->pd, ih0 = oh * g->sh - g->ph;
        for (cc_idx t = 0; t < taps; t++) {
            const cc_idx kw = t % g->KW, kh = t / g->KW % g->KH, kd = t / (g->KW * g->KH);
            const cc_idx id = id0 + kd * g->dd, ih = ih0 + kh * g->dh;
            const int ok = id >= 0 && id < g->D && ih >= 0 && ih < g->H;
            lo[t] = ok ? lok[kw] : 0;
            hi[t] = ok ? hik[kw] : 0;
        }
        const cc_idx base = ((n * g->D + id0) * g->H + ih0) * W * C - g->pw * C;
        const T *dyr = dy + r * OW * C;
        /* the next row's lines, a share before each channel block (against all at once
         * before the row, batch 8-32: 3x3 0.52-0.58x the time, 5x5 0.51); 3-D: all at
         * once */
        dwp_pf pfx = {0}, pfd = {0}; /* stepped only when sx + sd > 0 */
        const cc_idx nblk = (C + LANES - 1) / LANES;
        cc_idx sx = 0, sd = 0;
        const int pf = g->prefetch && r + 1 < r1;
        if (pf && g->KD == 1) {
            const cc_idx rn = r + 1, nn = rn / plane, odn = rn % plane / g->OH;
            dwp_row_walks(&pfx, &pfd, x + nn * g->D * g->H * W * C, dy + rn * OW * C,
                          (cc_idx)sizeof(T), g->D, g->H, W, OW, C, C, odn * g->sd - g->pd,
                          rn % g->OH, g->sh, g->ph, (g->KH - 1) * g->dh + 1, 1);
            sx = dwp_share(&pfx, nblk);
            sd = dwp_share(&pfd, nblk);
        } else if (pf)
            DFN(dwgw_prefetch_row)(g, x, dy, r + 1);
        for (cc_idx c0 = 0; c0 < C; c0 += LANES) {
            const int nch = (int)(C - c0 < LANES ? C - c0 : LANES);
            if (sx + sd > 0) {
                dwp_pf_step(&pfx, sx, 0);
                dwp_pf_step(&pfd, sd, 0);
            }
            for (cc_idx t0 = 0; t0 < taps; t0 += tg) {
                const cc_idx cnt = taps - t0 < tg ? taps - t0 : tg;
                T *am = part + t0 * C + c0;
#define DWGW_CASE(TG)                                                                     \
    case TG:                                                                              \
        DFN(dwgw_tile_##TG)(x + c0, dyr + c0, base, g->sw * C, C, OW, koff + t0, lo + t0, \
                            hi + t0, am, nch, slide);                                     \
        break;
                switch (cnt) {
                    DWGW_TILES(DWGW_CASE)
                default: abort(); /* not reached: cnt <= tg <= DWGW_TGMAX */
                }
#undef DWGW_CASE
            }
            if (bias != NULL)
                DFN(dwgw_bias_row)(dyr + c0, C, OW, bias + c0, nch);
        }
    }
    free(tab);
    return 0;
}

#undef DWGW_LDM
#undef DWGW_DEFINE_TILE
#undef DWGW_MID_SLIDE
#undef DWGW_SLIDE
#undef DWGW_ROW
#undef DWGW_EDGE_PIXEL
#undef DWGW_INLINE
#undef DWGW_EACH_TAP
#undef DFN
