/* Transposed implicit im2col packing for weight gradients (see packt.h). */
#include <string.h>
#include "packt.h"
#include "gemm.h"

static inline cc_idx floor_div(cc_idx a, cc_idx b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline cc_idx ceil_div(cc_idx a, cc_idx b) { return -floor_div(-a, b); }
static inline cc_idx imax(cc_idx a, cc_idx b) { return a > b ? a : b; }
static inline cc_idx imin(cc_idx a, cc_idx b) { return a < b ? a : b; }

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
    /* (c, kd, kh, kw) of k0 and (od, oh, ow) of p0; both advanced without divisions */     \
    cc_idx c = k0 / taps, t0 = k0 % taps;                                                   \
    cc_idx kd = t0 / (g->KH * g->KW), kh = (t0 / g->KW) % g->KH, kw = t0 % g->KW;           \
    const cc_idx od0 = p0 / OHW, oh0 = (p0 / g->OW) % g->OH, ow0 = p0 % g->OW;              \
    for (cc_idx kk = 0; kk < kc; kk++) {                                                    \
        const T *xc = x + c * DHW;                                                          \
        T *dst = bp + (kk / nr) * ps + kk % nr;  /* column kk: row i at dst[i*nr] */        \
        cc_idx woff = kw * g->dw - g->pw;                                                   \
        cc_idx ow_lo = imax(0, ceil_div(-woff, sw));                                        \
        cc_idx ow_hi = imin(g->OW, floor_div(g->W - 1 - woff, sw) + 1);                     \
        cc_idx od = od0, oh = oh0, ow = ow0;                                                \
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
        if (++kw == g->KW) { kw = 0; if (++kh == g->KH) { kh = 0;                           \
            if (++kd == g->KD) { kd = 0; c++; } } }                                         \
    }                                                                                       \
}                                                                                           \
                                                                                            \
void cconv_pack_bt_im2col_nhwc_##SUF(const cc_conv_geom *g, const T *x, cc_idx k0, cc_idx kc,\
                                     cc_idx p0, cc_idx pc, int nr, cc_idx ps, T *bp) {      \
    const cc_idx OHW = g->OH * g->OW, C = g->C, ct = g->ctot;                               \
    cc_idx kcp = ((kc + nr - 1) / nr) * nr;                                                 \
    for (cc_idx i = 0; i < pc; i++) {                                                       \
        cc_idx p = p0 + i;                                                                  \
        cc_idx od = p / OHW, oh = (p / g->OW) % g->OH, ow = p % g->OW;                      \
        cc_idx kk = 0;                                                                      \
        while (kk < kc) {                                                                   \
            cc_idx k = k0 + kk;                                                             \
            cc_idx t = k / C, c0 = k % C;                                                   \
            cc_idx seg = imin(C - c0, kc - kk);                                             \
            cc_idx kd = t / (g->KH * g->KW), kh = (t / g->KW) % g->KH, kw = t % g->KW;      \
            cc_idx id = od * g->sd + kd * g->dd - g->pd;                                    \
            cc_idx ih = oh * g->sh + kh * g->dh - g->ph;                                    \
            cc_idx iw = ow * g->sw + kw * g->dw - g->pw;                                    \
            const T *src = NULL;                                                            \
            if (id >= 0 && id < g->D && ih >= 0 && ih < g->H && iw >= 0 && iw < g->W)       \
                src = x + ((id * g->H + ih) * g->W + iw) * ct + c0;                         \
            put_row_##SUF(bp, ps, nr, i, kk, seg, src);                                     \
            kk += seg;                                                                      \
        }                                                                                   \
        if (kcp > kc) put_row_##SUF(bp, ps, nr, i, kc, kcp - kc, NULL);                     \
    }                                                                                       \
}

DEFINE_PACKERS_T(float, f32)
DEFINE_PACKERS_T(double, f64)
