/* cconv depthwise weight gradient, channels-last, "dwgw".
 *
 * One input channel per group and one output channel per input channel (O == C):
 *   dW[t, c] = sum over images n and output pixels p of dY[n, p, c] * X[n, p*s + t*d - pad, c]
 * for every tap t = (kd, kh, kw). Channels are the vector lanes, so X and dY are read
 * with unit stride and nothing is packed or transposed. The caller cuts the rows
 * r = (n, od, oh) of dY into blocks (a function of the problem, never of the thread
 * count), calls cconv_dwgw_nhwc_* once per block, and adds the blocks' partials in
 * block order.
 *
 * Arithmetic contract (every ISA path): within a block, the partial for (t, c) is a
 * chain of fused multiply-adds started at +0 over the rows in order and, within a row,
 * the output pixels ow in increasing order; a (pixel, tap) whose input lies in the
 * padding contributes nothing (no product is formed, so an Inf in dY next to the border
 * does not become NaN). Every path (AVX-512, AVX2 + FMA, portable C with fma()) forms
 * exactly these operations: results are bitwise identical.
 *
 * Micro-kernel: a tile of TG taps x LANES channels (LANES = 64 / sizeof(T)) held in
 * vector registers over one output row; per pixel it loads one dY vector and one X
 * vector per tap. Pixels whose taps all read inside the image run without checks; the
 * others (row ends, top and bottom rows) test each tap. TG <= DWGW_TGMAX of the path
 * (25 AVX-512, 5 AVX2, 4 portable); more taps run as several groups, each re-reading dY.
 * On AVX-512 a 3x3 tile at stride 1 (column dilation 1) keeps its 3 x 3 window of X
 * vectors in registers and loads one new column per pixel (DWGW_MID_SLIDE).
 */
#ifndef CCONV_DWGW_H
#define CCONV_DWGW_H

#include "gemm.h"

typedef struct {
    cc_idx D, H, W, C;      /* input (N, D, H, W, C); dY is (N, OD, OH, OW, C) */
    cc_idx OD, OH, OW;
    cc_idx KD, KH, KW;
    cc_idx sd, sh, sw;      /* strides */
    cc_idx dd, dh, dw;      /* dilations */
    cc_idx pd, ph, pw;      /* padding before each dim (after needs nothing: bounds test) */
    int prefetch;           /* fetch each next row ahead (arrays too large for the cache) */
} cc_dwgw_geom;

/* part[t * C + c] = the block's partial for rows r0 .. r1 - 1 (overwritten; taps * C
 * elements). bias: NULL, or C doubles overwritten with the block's bias gradient sums,
 * dY[r, ow, c] added in row order then ow order (biasgrad.h's channels-last order with
 * this block as its row block), read while the row is still in cache.
 * Returns 0, or -1 when its small index tables cannot be allocated. */
int cconv_dwgw_nhwc_f32(const cc_dwgw_geom *g, const float *x, const float *dy, cc_idx r0,
                        cc_idx r1, float *part, double *bias);
int cconv_dwgw_nhwc_f64(const cc_dwgw_geom *g, const double *x, const double *dy, cc_idx r0,
                        cc_idx r1, double *part, double *bias);

#endif
