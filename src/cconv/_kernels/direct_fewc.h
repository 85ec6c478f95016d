/* cconv direct channels-last convolution for few input channels (the first layer of a
 * CNN: RGB input, 3x3 ... 7x7 kernels), where im2col's packed rows are mostly copying.
 *
 * Output channels are the SIMD lanes: each input value is broadcast and multiplied into
 * a register tile of P output pixels x NV vectors of output channels.
 *
 * Contract (row kernel):
 *   xr:    the zero-padded input at (n, od * sd, oh * sh, 0, 0) of a (N, Dp, Hp, Wp, C)
 *          array (the driver does all edge padding, so no bounds checks here);
 *   toff:  K offsets (elements) from xr of the taps in (kd, kh, kw, c) order;
 *   xcs:   elements between horizontally adjacent output pixels (sw * C);
 *   w:     K rows of OP weights (row k = tap k, columns = output channels), OP a
 *          multiple of cconv_fewc_lanes_*() with zero columns beyond O; 64-byte
 *          alignment not required;
 *   bias:  OP values (zeros beyond O and when the problem has no bias);
 *   out:   the output row (OW pixels x O channels, pixel stride O).
 * Arithmetic: every output element is acc = bias; acc = fma(x, w, acc) over the K taps
 * in order: bitwise identical on every ISA path and for any thread count. */
#ifndef CCONV_DIRECT_FEWC_H
#define CCONV_DIRECT_FEWC_H
#include "gemm.h"

int cconv_fewc_lanes_f32(void);
int cconv_fewc_lanes_f64(void);
void cconv_fewc_row_f32(const float *xr, const cc_idx *toff, cc_idx K, cc_idx xcs,
                        const float *w, cc_idx OP, const float *bias, float *out, cc_idx O,
                        cc_idx OW);
void cconv_fewc_row_f64(const double *xr, const cc_idx *toff, cc_idx K, cc_idx xcs,
                        const double *w, cc_idx OP, const double *bias, double *out,
                        cc_idx O, cc_idx OW);
#endif
