/* Transposed implicit im2col packing for weight gradients (see packt.h). */
#include <string.h>
#include "packt.h"
#include "gemm.h"

static inline cc_idx floor_div(cc_idx a, cc_idx b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline cc_idx ceil_div(cc_idx a, cc_idx b) { return -floor_div(-a, b); }
static inline cc_idx imax(cc_idx a, cc_idx b) { return a > b ? a : b; }
static inline cc_idx imin(cc_idx a, cc_idx b) { return a < b ? a : b; }

/* K index k of the channels-first order -> (c, kd, kh, kw). */
static inline void k_split(const cc_conv_geom *g, cc_idx k, cc_idx *c, cc_idx *kd, cc_idx *kh,
                           cc_idx *kw)
{
    const cc_idx taps = g->KD * g->KH * g->KW, t = k % taps;
    *c = k / taps;
    *kd = t / (g->KH * g->KW);
    *kh = (t / g->KW) % g->KH;
    *kw = t % g->KW;
}

#define DEFINE_PACKERS_T(T, SUF)                                                                \
/* Row `row` of a B block, columns col..col+len-1: src[0..len-1] or zeros (src NULL). */   \
static inline void put_row_##SUF(T *bp, cc_idx ps, int nr, cc_idx row, cc_idx col,        \
                                 cc_idx len, const T *src) {                               \
    while (len > 0) {                                                                       \
        cc_idx j = col % nr;                                                                \
        cc_idx take = imin(nr - j, len);                                                    \
        T *dst = bp + (col / nr) * ps + row * nr + j;                                      \
        if (src) {                                                                          \
            memcpy(dst, src, (size_t)take * sizeof(T));                                     \
            src += take;                                                                    \
        } else {                                                                            \
            memset(dst, 0, (size_t)take * sizeof(T));                                       \
        }                                                                                   \
        col += take;                                                                        \
        len -= take;                                                                        \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* Columns k..k+V-1 (V = CCONV_GATHER_W: one 256-bit vector) of the transposed im2col, \
 * pixels p0..p0+pc-1, into dst (column k's row i at dst[i*nr], the others after it):   \
 * one cconv_gather_rows_t per output row run, which zero-fills each column's padding. */\
static void pack_bt_nchw_group_##SUF(const cc_conv_geom *g, const T *x, cc_idx k, cc_idx p0,\
                                     cc_idx pc, T *dst, int nr) {                          \
    enum { V = CCONV_GATHER_W_##SUF };                                                      \
    const cc_idx HW = g->H * g->W, DHW = g->D * HW, OHW = g->OH * g->OW, sw = g->sw;        \
    cc_idx kd[V], kh[V], woff[V], lo[V], hi[V];                                             \
    const T *xc[V];                                                                         \
    for (int j = 0; j < V; j++) {                                                           \
        cc_idx c, kw;                                                                       \
        k_split(g, k + j, &c, &kd[j], &kh[j], &kw);                                         \
        xc[j] = x + c * DHW;                                                                \
        woff[j] = kw * g->dw - g->pw;                                                       \
        lo[j] = imax(0, ceil_div(-woff[j], sw));                                            \
        hi[j] = imin(g->OW, floor_div(g->W - 1 - woff[j], sw) + 1);                         \
    }                                                                                       \
    cc_idx od = p0 / OHW, oh = (p0 / g->OW) % g->OH, ow = p0 % g->OW, i = 0;                \
    while (i < pc) {                                                                        \
        const cc_idx run = imin(pc - i, g->OW - ow);                                        \
        const T *row[V];                                                                    \
        cc_idx a[V], b[V]; /* valid pixels of the run, from its start */                    \
        for (int j = 0; j < V; j++) {                                                       \
            const cc_idx id = od * g->sd + kd[j] * g->dd - g->pd;                           \
            const cc_idx ih = oh * g->sh + kh[j] * g->dh - g->ph;                           \
            a[j] = imax(lo[j] - ow, 0);                                                     \
            b[j] = imin(hi[j] - ow, run);                                                   \
            row[j] = id < 0 || id >= g->D || ih < 0 || ih >= g->H || a[j] >= b[j] ? NULL    \
                     : xc[j] + id * HW + ih * g->W + woff[j] + ow * sw;                     \
        }                                                                                   \
        cconv_gather_rows_t_##SUF(row, a, b, run, sw, dst + i * nr, nr);                    \
        i += run;                                                                           \
        ow = 0;                                                                             \
        if (++oh == g->OH) { oh = 0; od++; }                                                \
    }                                                                                       \
}                                                                                           \
                                                                                            \
void cconv_pack_bt_im2col_nchw_##SUF(const cc_conv_geom *g, const T *x, cc_idx k0, cc_idx kc,\
                                     cc_idx p0, cc_idx pc, int nr, cc_idx ps, T *bp) {      \
    const cc_idx HW = g->H * g->W, DHW = g->D * HW, OHW = g->OH * g->OW;                    \
    const cc_idx taps = g->KD * g->KH * g->KW;                                              \
    const cc_idx sw = g->sw;                                                                \
    if (taps == 1 && ps == pc * nr && g->OD == g->D && g->OH == g->H && g->OW == g->W &&    \
        g->sd == 1 && g->sh == 1 && sw == 1 && g->pd == 0 && g->ph == 0 && g->pw == 0) {    \
        /* pointwise: column k is channel k's pixels p0.., a transpose of x's rows      \
         * (register transposes; 1x1 grad_weight had spent half its time here) */       \
        cconv_pack_rows_to_panels_##SUF(nr, kc, pc, x + k0 * DHW + p0, DHW, bp);            \
        return;                                                                             \
    }                                                                                       \
    cc_idx kcp = ((kc + nr - 1) / nr) * nr;                                                 \
    for (cc_idx i = 0; i < pc && kcp > kc; i++)                                             \
        put_row_##SUF(bp, ps, nr, i, kc, kcp - kc, NULL);                                   \
    const int V = CCONV_GATHER_W_##SUF;                                                     \
    cc_idx kk = 0;                                                                          \
    if (nr % V == 0 && (sw == 1 || sw == 2))                                                \
        for (; kk + V <= kc; kk += V)                                                       \
            pack_bt_nchw_group_##SUF(g, x, k0 + kk, p0, pc, bp + (kk / nr) * ps + kk % nr, nr);\
    for (; kk < kc; kk++) {                                                                 \
        cc_idx c, kd, kh, kw;                                                               \
        k_split(g, k0 + kk, &c, &kd, &kh, &kw);                                             \
        const T *xc = x + c * DHW;                                                          \
        T *dst = bp + (kk / nr) * ps + kk % nr;  /* column kk: row i at dst[i*nr] */        \
        cc_idx woff = kw * g->dw - g->pw;                                                   \
        cc_idx ow_lo = imax(0, ceil_div(-woff, sw));                                        \
        cc_idx ow_hi = imin(g->OW, floor_div(g->W - 1 - woff, sw) + 1);                     \
        cc_idx od = p0 / OHW, oh = (p0 / g->OW) % g->OH, ow = p0 % g->OW;                   \
        cc_idx i = 0;                                                                       \
        while (i < pc) {                                                                    \
            cc_idx run = imin(pc - i, g->OW - ow);                                          \
            cc_idx ow_end = ow + run;                                                       \
            cc_idx id = od * g->sd + kd * g->dd - g->pd;                                    \
            cc_idx ih = oh * g->sh + kh * g->dh - g->ph;                                    \
            T *d = dst + (i - ow) * nr;  /* row of ow = 0 in this run */                    \
            if (id < 0 || id >= g->D || ih < 0 || ih >= g->H || ow_lo >= ow_hi) {            \
                for (cc_idx j = ow; j < ow_end; j++) d[j * nr] = (T)0;                     \
            } else {                                                                        \
                cc_idx a = imax(ow, imin(ow_lo, ow_end));                                   \
                cc_idx b = imax(a, imin(ow_hi, ow_end));                                    \
                const T *row = xc + id * HW + ih * g->W + woff;                             \
                cc_idx j = ow;                                                              \
                for (; j < a; j++) d[j * nr] = (T)0;                                        \
                if (sw == 1)                                                                \
                    for (; j < b; j++) d[j * nr] = row[j];                                  \
                else                                                                        \
                    for (; j < b; j++) d[j * nr] = row[j * sw];                             \
                for (; j < ow_end; j++) d[j * nr] = (T)0;                                   \
            }                                                                               \
            i += run;                                                                       \
            ow = 0;                                                                         \
            if (++oh == g->OH) { oh = 0; od++; }                                            \
        }                                                                                   \
    }                                                                                       \
}

DEFINE_PACKERS_T(float, f32)
DEFINE_PACKERS_T(double, f64)
