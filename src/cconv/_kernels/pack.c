/* Implicit im2col packing (see pack.h for the layouts). */
#include <string.h>
#include "pack.h"

static inline cc_idx floor_div(cc_idx a, cc_idx b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline cc_idx ceil_div(cc_idx a, cc_idx b) { return -floor_div(-a, b); }
static inline cc_idx imax(cc_idx a, cc_idx b) { return a > b ? a : b; }
static inline cc_idx imin(cc_idx a, cc_idx b) { return a < b ? a : b; }

#define DEFINE_PACKERS(T, SUF)                                                                  \
/* Write a run of `len` consecutive columns (starting at column `col` of the block) of     \
 * B-panel row kk: values src[0], src[ss], ... or zeros when src is NULL. */                \
static inline void put_run_##SUF(T *bp, cc_idx ps, int nr, cc_idx kk, cc_idx col, cc_idx len,\
                                 const T *src, cc_idx ss) {                                 \
    while (len > 0) {                                                                       \
        cc_idx j = col % nr;                                                                \
        cc_idx take = imin(nr - j, len);                                                    \
        T *dst = bp + (col / nr) * ps + kk * nr + j;                                       \
        if (!src) {                                                                         \
            memset(dst, 0, (size_t)take * sizeof(T));                                       \
        } else if (ss == 1) {                                                               \
            memcpy(dst, src, (size_t)take * sizeof(T));                                     \
            src += take;                                                                    \
        } else {                                                                            \
            for (cc_idx t = 0; t < take; t++) dst[t] = src[t * ss];                         \
            src += take * ss;                                                               \
        }                                                                                   \
        col += take;                                                                        \
        len -= take;                                                                        \
    }                                                                                       \
}                                                                                           \
                                                                                            \
void cconv_pack_b_im2col_nchw_##SUF(const cc_conv_geom *g, const T *x, cc_idx k0, cc_idx kc, \
                                    cc_idx p0, cc_idx nc, int nr, cc_idx ps, T *bp) {       \
    const cc_idx HW = g->H * g->W, DHW = g->D * HW, OHW = g->OH * g->OW;                    \
    const cc_idx taps = g->KD * g->KH * g->KW;                                              \
    /* Zero the padding columns of the last panel once. */                                  \
    cc_idx ncp = ((nc + nr - 1) / nr) * nr;                                                 \
    for (cc_idx kk = 0; kk < kc && ncp > nc; kk++)                                          \
        put_run_##SUF(bp, ps, nr, kk, nc, ncp - nc, NULL, 0);                               \
    for (cc_idx kk = 0; kk < kc; kk++) {                                                    \
        cc_idx k = k0 + kk;                                                                 \
        cc_idx c = k / taps, t = k % taps;                                                  \
        cc_idx kd = t / (g->KH * g->KW), kh = (t / g->KW) % g->KH, kw = t % g->KW;          \
        const T *xc = x + c * DHW;                                                          \
        cc_idx woff = kw * g->dw - g->pw;                                                   \
        /* ow range whose input column is inside [0, W) */                                  \
        cc_idx ow_lo = imax(0, ceil_div(-woff, g->sw));                                     \
        cc_idx ow_hi = imin(g->OW, floor_div(g->W - 1 - woff, g->sw) + 1);                  \
        cc_idx p = p0, pend = p0 + nc;                                                      \
        while (p < pend) {                                                                  \
            cc_idx od = p / OHW, oh = (p / g->OW) % g->OH, ow = p % g->OW;                  \
            cc_idx run_end = imin(pend, p + (g->OW - ow));                                  \
            cc_idx ow_end = ow + (run_end - p);                                             \
            cc_idx id = od * g->sd + kd * g->dd - g->pd;                                    \
            cc_idx ih = oh * g->sh + kh * g->dh - g->ph;                                    \
            cc_idx col = p - p0;                                                            \
            if (id < 0 || id >= g->D || ih < 0 || ih >= g->H || ow_lo >= ow_hi) {            \
                put_run_##SUF(bp, ps, nr, kk, col, run_end - p, NULL, 0);                   \
            } else {                                                                        \
                cc_idx a = imax(ow, imin(ow_lo, ow_end));                                   \
                cc_idx b = imax(a, imin(ow_hi, ow_end));                                    \
                const T *row = xc + id * HW + ih * g->W + woff;                             \
                if (a > ow) put_run_##SUF(bp, ps, nr, kk, col, a - ow, NULL, 0);            \
                if (b > a) put_run_##SUF(bp, ps, nr, kk, col + (a - ow), b - a,             \
                                         row + a * g->sw, g->sw);                           \
                if (ow_end > b) put_run_##SUF(bp, ps, nr, kk, col + (b - ow), ow_end - b,   \
                                              NULL, 0);                                     \
            }                                                                               \
            p = run_end;                                                                    \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
void cconv_pack_rows_im2col_nhwc_##SUF(const cc_conv_geom *g, const T *x, cc_idx p0,       \
                                       cc_idx mc, cc_idx k0, cc_idx kc, T *dst, cc_idx ld) {\
    const cc_idx OHW = g->OH * g->OW, C = g->C, ct = g->ctot;                               \
    /* With all channels in one group and unit W dilation, the taps kw..KW-1 of one   \
     * (kd, kh) are a single contiguous run of the input row: copy them at once. */   \
    const int merge = (C == ct && g->dw == 1);                                              \
    /* the pixel's output coordinates, stepped (divisions per pixel cost up to a third  \
     * of a packing with few channels) */                                                 \
    cc_idx od = p0 / OHW, oh = (p0 / g->OW) % g->OH, ow = p0 % g->OW;                       \
    const cc_idx t0 = k0 / C, c00 = k0 % C;                                                 \
    const cc_idx kd0 = t0 / (g->KH * g->KW), kh0 = (t0 / g->KW) % g->KH, kw0 = t0 % g->KW;  \
    for (cc_idx r = 0; r < mc; r++) {                                                       \
        cc_idx id0 = od * g->sd - g->pd;                                                    \
        cc_idx ih0 = oh * g->sh - g->ph;                                                    \
        cc_idx iw0 = ow * g->sw - g->pw;                                                    \
        if (++ow == g->OW) { ow = 0; if (++oh == g->OH) { oh = 0; od++; } }                 \
        T *row = dst + r * ld;                                                              \
        /* position of column k0: tap (kd, kh, kw), channel c0; advanced incrementally */  \
        cc_idx c0 = c00, kd = kd0, kh = kh0, kw = kw0;                                      \
        cc_idx kk = 0;                                                                      \
        while (kk < kc) {                                                                   \
            cc_idx id = id0 + kd * g->dd, ih = ih0 + kh * g->dh;                            \
            int row_ok = id >= 0 && id < g->D && ih >= 0 && ih < g->H;                      \
            const T *xrow = x + (id * g->H + ih) * g->W * ct;                               \
            /* whole taps left in this kernel row and in the block (no division but at \
             * the block's end) */                                                          \
            cc_idx ntaps = g->KW - kw;                                                      \
            if (ntaps * C > kc - kk) ntaps = (kc - kk) / C;                                 \
            cc_idx step;                  /* taps finished by this copy */                  \
            if (merge && c0 == 0 && ntaps >= 1) {                                           \
                cc_idx iwf = iw0 + kw;                  /* input column of the first tap */ \
                cc_idx lo = imax(0, -iwf), hi = imin(ntaps, g->W - iwf);                    \
                if (!row_ok || lo >= hi) {                                                  \
                    memset(row + kk, 0, (size_t)(ntaps * C) * sizeof(T));                   \
                } else {                                                                    \
                    if (lo > 0) memset(row + kk, 0, (size_t)(lo * C) * sizeof(T));          \
                    memcpy(row + kk + lo * C, xrow + (iwf + lo) * C,                        \
                           (size_t)((hi - lo) * C) * sizeof(T));                            \
                    if (hi < ntaps)                                                         \
                        memset(row + kk + hi * C, 0, (size_t)((ntaps - hi) * C) * sizeof(T));\
                }                                                                           \
                kk += ntaps * C;                                                            \
                step = ntaps;                                                               \
            } else {                                                                        \
                cc_idx seg = imin(C - c0, kc - kk);                                         \
                cc_idx iw = iw0 + kw * g->dw;                                               \
                if (row_ok && iw >= 0 && iw < g->W)                                         \
                    memcpy(row + kk, xrow + iw * ct + c0, (size_t)seg * sizeof(T));         \
                else                                                                        \
                    memset(row + kk, 0, (size_t)seg * sizeof(T));                           \
                kk += seg;                                                                  \
                c0 += seg;                                                                  \
                step = c0 == C;                                                             \
                if (step) c0 = 0;                                                           \
            }                                                                               \
            kw += step;                                                                     \
            while (kw >= g->KW) { kw -= g->KW; if (++kh == g->KH) { kh = 0; kd++; } }       \
        }                                                                                   \
    }                                                                                       \
}

#define DEFINE_ROW_PACKER(T, SUF)                                                           \
/* Whole panels one at a time (sequential writes), each row a fixed-size copy the       \
 * compiler inlines for the panel widths of the micro-kernels; then the partial panel. */ \
static inline void copy_panel_##SUF(T *dst, const T *s0, const cc_idx *offs, cc_idx kc,    \
                                    int nr) {                                               \
    switch (nr) {                                                                           \
    case 32:                                                                                \
        for (cc_idx kk = 0; kk < kc; kk++) memcpy(dst + kk * 32, s0 + offs[kk], 32 * sizeof(T)); \
        break;                                                                              \
    case 16:                                                                                \
        for (cc_idx kk = 0; kk < kc; kk++) memcpy(dst + kk * 16, s0 + offs[kk], 16 * sizeof(T)); \
        break;                                                                              \
    case 8:                                                                                 \
        for (cc_idx kk = 0; kk < kc; kk++) memcpy(dst + kk * 8, s0 + offs[kk], 8 * sizeof(T)); \
        break;                                                                              \
    default:                                                                                \
        for (cc_idx kk = 0; kk < kc; kk++)                                                  \
            memcpy(dst + kk * nr, s0 + offs[kk], (size_t)nr * sizeof(T));                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
void cconv_pack_b_rows_##SUF(const T *base, const cc_idx *offs, cc_idx kc, cc_idx j0,      \
                             cc_idx nc, int nr, cc_idx ps, T *bp) {                         \
    const cc_idx full = nc / nr, done = full * nr;                                          \
    for (cc_idx p = 0; p < full; p++)                                                       \
        copy_panel_##SUF(bp + p * ps, base + j0 + p * nr, offs, kc, nr);                    \
    if (done < nc) {                                                                        \
        for (cc_idx kk = 0; kk < kc; kk++) {                                                \
            put_run_##SUF(bp, ps, nr, kk, done, nc - done, base + offs[kk] + j0 + done, 1); \
            put_run_##SUF(bp, ps, nr, kk, nc, done + nr - nc, NULL, 0);                     \
        }                                                                                   \
    }                                                                                       \
}

#define DEFINE_PAD_PHASES(T, SUF)                                                           \
/* Column phases 0 and 1 of stride 2, rows (a, b), from one pass over each input row      \
 * (cconv_split2): the same values as two cconv_copy_strided passes, but each input row   \
 * read once, in one call (3x3 stride 2, 128 channels at 56x56, one image: the copy was   \
 * 15-20% of the call; 0.88x the time when memory is slow, 0.98-1.0x when it is not). */  \
static void pad_phase_pair_##SUF(const T *x, cc_idx D, cc_idx H, cc_idx W, T *p0, T *p1,   \
                                 cc_idx Dq, cc_idx Hq, cc_idx Wq, cc_idx sd, cc_idx sh,     \
                                 cc_idx a, cc_idx b, cc_idx pd, cc_idx ph, cc_idx pw) {     \
    cc_idx lo[2], hi[2];                                                                    \
    for (int c = 0; c < 2; c++) {                                                           \
        /* wq whose input column 2*wq + c - pw lies in [0, W) */                            \
        lo[c] = imax(0, ceil_div(pw - c, 2));                                               \
        hi[c] = imin(Wq, imax(0, floor_div(W - 1 + pw - c, 2) + 1));                        \
        if (hi[c] < lo[c]) hi[c] = lo[c];                                                   \
    }                                                                                       \
    /* [L, R): both phases read there (L > R: nowhere) */                                   \
    const cc_idx L = imax(lo[0], lo[1]), R = imin(hi[0], hi[1]);                            \
    for (cc_idx dq = 0; dq < Dq; dq++)                                                      \
        for (cc_idx hq = 0; hq < Hq; hq++) {                                                \
            T *rows[2] = {p0 + (dq * Hq + hq) * Wq, p1 + (dq * Hq + hq) * Wq};              \
            cc_idx id = dq * sd + a - pd, ih = hq * sh + b - ph;                            \
            if (id < 0 || id >= D || ih < 0 || ih >= H) {                                   \
                memset(rows[0], 0, (size_t)Wq * sizeof(T));                                 \
                memset(rows[1], 0, (size_t)Wq * sizeof(T));                                 \
                continue;                                                                   \
            }                                                                               \
            const T *src = x + (id * H + ih) * W; /* row[wq] = src[2*wq + c - pw] */        \
            for (int c = 0; c < 2; c++) {                                                   \
                T *row = rows[c];                                                           \
                const cc_idx m0 = L < R ? imin(L, hi[c]) : hi[c], m1 = L < R ? R : hi[c];   \
                for (cc_idx wq = 0; wq < lo[c]; wq++) row[wq] = 0;                          \
                for (cc_idx wq = lo[c]; wq < m0; wq++) row[wq] = src[2 * wq + c - pw];      \
                for (cc_idx wq = m1; wq < hi[c]; wq++) row[wq] = src[2 * wq + c - pw];      \
                for (cc_idx wq = hi[c]; wq < Wq; wq++) row[wq] = 0;                         \
            }                                                                               \
            if (L < R)                                                                      \
                cconv_split2_##SUF(rows[0] + L, rows[1] + L, src + 2 * L - pw, R - L);      \
        }                                                                                   \
}                                                                                           \
                                                                                            \
void cconv_pad_phases_##SUF(const T *x, cc_idx D, cc_idx H, cc_idx W, T *xp, cc_idx Dq,      \
                            cc_idx Hq, cc_idx Wq, cc_idx sd, cc_idx sh, cc_idx sw, cc_idx pd, \
                            cc_idx ph, cc_idx pw) {                                         \
    for (cc_idx a = 0; a < sd; a++)                                                         \
    for (cc_idx b = 0; b < sh; b++)                                                         \
    for (cc_idx c = 0; c < sw; c++) {                                                       \
        if (sw == 2) { /* both column phases at once */                                     \
            const cc_idx pl = Dq * Hq * Wq;                                                 \
            T *p0 = xp + (a * sh + b) * 2 * pl;                                             \
            pad_phase_pair_##SUF(x, D, H, W, p0, p0 + pl, Dq, Hq, Wq, sd, sh, a, b, pd, ph,  \
                                 pw);                                                       \
            break;                                                                          \
        }                                                                                   \
        T *plane = xp + ((a * sh + b) * sw + c) * Dq * Hq * Wq;                             \
        /* wq whose input column wq*sw + c - pw lies in [0, W) */                           \
        cc_idx lo = imax(0, ceil_div(pw - c, sw));                                          \
        cc_idx hi = imin(Wq, imax(0, floor_div(W - 1 + pw - c, sw) + 1));                   \
        if (hi < lo) hi = lo;                                                               \
        for (cc_idx dq = 0; dq < Dq; dq++)                                                  \
            for (cc_idx hq = 0; hq < Hq; hq++) {                                            \
                T *row = plane + (dq * Hq + hq) * Wq;                                       \
                cc_idx id = dq * sd + a - pd, ih = hq * sh + b - ph;                        \
                if (id < 0 || id >= D || ih < 0 || ih >= H || lo >= hi) {                   \
                    memset(row, 0, (size_t)Wq * sizeof(T));                                 \
                    continue;                                                               \
                }                                                                           \
                const T *src = x + (id * H + ih) * W + lo * sw + c - pw;                    \
                memset(row, 0, (size_t)lo * sizeof(T));                                     \
                if (sw == 1) memcpy(row + lo, src, (size_t)(hi - lo) * sizeof(T));         \
                else cconv_copy_strided_##SUF(row + lo, src, sw, hi - lo);                 \
                memset(row + hi, 0, (size_t)(Wq - hi) * sizeof(T));                         \
            }                                                                               \
    }                                                                                       \
}

DEFINE_PACKERS(float, f32)
DEFINE_PACKERS(double, f64)
DEFINE_ROW_PACKER(float, f32)
DEFINE_ROW_PACKER(double, f64)
DEFINE_PAD_PHASES(float, f32)
DEFINE_PAD_PHASES(double, f64)
