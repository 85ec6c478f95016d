/* cconv depthwise input gradient, channels-last, strided: "dwgi" (a gather).
 *
 * One input channel per group and one output channel per input channel (O == C),
 * dilation 1. Every element of dx (N, D, H, W, C; the zero-padded input's size) is
 * written once, from the taps that reach it: along each dim, coordinate i receives the
 * taps k with (i + pad - k) % s == 0, from output position o = (i + pad - k) / s;
 * an o outside grad_out reads +0 (the zero padding of a stride-phase convolution).
 *
 * Arithmetic contract (every ISA path, every thread count): for each element,
 *     acc = +0; for kd, then kh, then kw, each over its taps in DEcreasing k order:
 *     acc = fma(w[kd, kh, kw, c], dY[n, od, oh, ow, c] (or +0), acc)
 * which is the depthwise forward contract (depthwise.h) of each stride phase's
 * convolution with the flipped weight: bitwise the sub-pixel route it replaces. The
 * loops are plain C with fma builtins, each lane its own chain: vectorising reorders
 * nothing, so the AVX-512, AVX2 + FMA and portable builds agree bitwise.
 *
 * Tap tables, per dim (d, h, w) and coordinate i: cnt[i] taps (<= T of that dim), tap
 * j at [i * T + j]: its kernel index k and output position o (-1: outside grad_out),
 * in decreasing k.
 *
 * stream: dx is written with non-temporal stores (AVX-512 path, dx and C aligned to a
 * vector), which skip the read for ownership of each line: for outputs too large to stay
 * in the cache. The same values.
 */
#ifndef CCONV_DWGI_H
#define CCONV_DWGI_H

#include "gemm.h"

typedef struct {
    cc_idx D, H, W, C;  /* dx (N, D, H, W, C) */
    cc_idx OD, OH, OW;  /* grad_out (N, OD, OH, OW, C) */
    cc_idx KH, KW;      /* weight (KD, KH, KW, C) */
    cc_idx Td, Th, Tw;  /* table row lengths */
    const cc_idx *cnt_d, *k_d, *o_d;
    const cc_idx *cnt_h, *k_h, *o_h;
    const cc_idx *cnt_w, *k_w, *o_w;
    int stream;         /* dx too large for the cache: streaming stores where aligned */
} cc_dwgi_geom;

/* dx row (n, id, ih): all W pixels, all C channels. zero: C zeros. */
void cconv_dwgi_nhwc_row_f32(const cc_dwgi_geom *g, const float *dy, const float *w,
                             float *dx, cc_idx n, cc_idx id, cc_idx ih, const float *zero);
void cconv_dwgi_nhwc_row_f64(const cc_dwgi_geom *g, const double *dy, const double *w,
                             double *dx, cc_idx n, cc_idx id, cc_idx ih, const double *zero);

#endif
