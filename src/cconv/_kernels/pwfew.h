/* Pointwise (1x1) channels-last convolution with few output channels.
 *
 * out[p*ldo + o] = sum over c < C of x[p*C + c] * w[c*O + o], for p < P and o < O
 * (O <= CCONV_PWFEW_MAX_O), each output one fused multiply-add chain from +0 over c in
 * increasing order: the GEMM core's order, so the same bits as its 1x1 route and on every
 * ISA path (the portable loop uses fmaf / fma). The bias is the caller's.
 *
 * Why: that GEMM packs all of x into row panels to multiply it by O <= 8 columns, and its
 * 12 x 32 register tiles then run at O / 32 of their width; here x is read once, V pixels
 * x V channels at a time turned channels-as-vectors by a register transpose (V = lanes of
 * the path), against O accumulators of V pixels. Reads x[0 .. P*C) only. */
#ifndef CCONV_PWFEW_H
#define CCONV_PWFEW_H
#include "gemm.h"

#define CCONV_PWFEW_MAX_O 8

void cconv_pwfew_f32(const float *x, cc_idx P, cc_idx C, const float *w, cc_idx O, float *out,
                     cc_idx ldo);
void cconv_pwfew_f64(const double *x, cc_idx P, cc_idx C, const double *w, cc_idx O,
                     double *out, cc_idx ldo);
#endif
