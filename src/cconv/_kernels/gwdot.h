/* cconv weight gradient by dot products along output rows (NCHW), "gwdot".
 *
 * dW[o, k] += sum over output pixels p of dY[o, p] * X_k[p], where k = (c, tap) and X_k
 * is the input read by tap k: on the zero-padded, stride-phase-split copy of a channel
 * (pack.h, cconv_pad_phases_*), X_k over one output row (od, oh) is one contiguous run
 * of the copy, as is dY's row. So both operands are read with unit stride and no
 * transposing pack: the micro-kernel keeps an R x NX tile of (o, k) accumulators in
 * vector registers, loads R rows of dY and NX runs of X per step, and reduces each
 * accumulator across its lanes at the end.
 *
 * Arithmetic contract (every ISA path, thread count and blocking): with LANES = 64 /
 * sizeof(T) (16 float32, 8 float64), lane l of an accumulator sums, in order, the
 * products at the positions ow of each output row (rows in increasing (od, oh)) with
 * ow % LANES == l, as a chain of fused multiply-adds started at +0, over the
 * images of a block in order; positions past the row end add fma(+0, +0, acc). The
 * lanes are then reduced by halving (lane l += lane l + h for h = LANES/2, ..., 1), and
 * the result is added to dW[o, k] (one addition per block of images; the caller zeroes
 * dW, passes the blocks in order, and sizes them from the problem, never from the
 * thread count). When the grid has no gaps the image counts as one row.
 * Every ISA path implements exactly this order: results are bitwise identical.
 *
 * Non-finite values: only products of a dY element and the input element its tap
 * really reads enter a sum (padding reads +0), so NaN / Inf spread as in the
 * definition.
 */
#ifndef CCONV_GWDOT_H
#define CCONV_GWDOT_H

#include "gemm.h"

/* The output rows cut into chunks of at most LANES positions: chunk q covers
 * positions ow0 .. ow0 + n - 1 of one row (or of the whole image when the grid has no
 * gaps), with tab[3q] = X offset of position ow0, tab[3q + 1] = its dY offset,
 * tab[3q + 2] = n. One table serves every image, channel and tap. */
typedef struct {
    cc_idx nq;          /* chunks */
    const cc_idx *tab;  /* 3 * nq entries */
    cc_idx P;           /* dY row stride: elements per output channel (OD*OH*OW) */
} cc_gwd_rows;

/* A block of nb images: for o < m and k < kc,
 *   dw[o * ldw + k] += sum over b < nb, output pixels p of
 *                      dys[b][o * P + p] * xim[b][koff[k] + row offset + ow]
 * dys[b]: the m output-channel planes of this group in image b; xim[b]: the (padded)
 * input copy of image b that koff indexes. The caller zeroes dw, then passes the
 * images in order in blocks whose size depends on the problem only. */
void cconv_gwd_nchw_f32(const cc_gwd_rows *r, const float *const *dys, const float *const *xim,
                        cc_idx nb, cc_idx m, const cc_idx *koff, cc_idx kc, float *dw,
                        cc_idx ldw);
void cconv_gwd_nchw_f64(const cc_gwd_rows *r, const double *const *dys,
                        const double *const *xim, cc_idx nb, cc_idx m, const cc_idx *koff,
                        cc_idx kc, double *dw, cc_idx ldw);

#endif
