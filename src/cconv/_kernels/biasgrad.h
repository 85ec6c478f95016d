/* cconv bias gradient: per-channel sums of grad_out, "biasgrad".
 *
 * Arithmetic contract (every ISA path, thread count and work split): every element is
 * converted to double and added into double accumulators, in this order:
 *   rows (channels-first, one channel's plane of n elements):
 *     lane l of 16 sums the elements i with i % 16 == l in increasing i, image after
 *     image in order, then the lanes are reduced once by halving (lane l += lane l + h
 *     for h = 8, 4, 2, 1).
 *   cols (channels-last, a block of rows of c channels):
 *     acc[j] += row[r][j] for the rows r in increasing order; blocks are a function of
 *     the problem only and the caller adds their partials in block order.
 * Every operation is one IEEE double addition written in C: the AVX-512, AVX2 and
 * portable builds of these loops agree bitwise (no FMA, no reassociation: the lanes
 * are separate sums). A float32 sum is rounded once at the end, so it is more
 * accurate than a float32 running sum. NaN and Inf propagate as in the definition.
 */
#ifndef CCONV_BIASGRAD_H
#define CCONV_BIASGRAD_H

#include "gemm.h"

#define CCONV_BIASGRAD_LANES 16

/* The sum of nimg rows of n elements, row b at a + b * stride: lanes as in the
 * contract, rows in order, then the lanes' halving reduction. */
double cconv_biasgrad_rows_f32(const float *a, cc_idx nimg, cc_idx stride, cc_idx n);
double cconv_biasgrad_rows_f64(const double *a, cc_idx nimg, cc_idx stride, cc_idx n);
/* acc[j] += a[r * lda + j] for j < c, rows r = 0 .. nr - 1 in order. */
void cconv_biasgrad_cols_f32(const float *a, cc_idx nr, cc_idx c, cc_idx lda, double *acc);
void cconv_biasgrad_cols_f64(const double *a, cc_idx nr, cc_idx c, cc_idx lda, double *acc);

#endif
