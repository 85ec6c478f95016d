/* Pixel-major C tiles written back channels-first (the pixel-row micro-kernels compute
 * out[pixels, channels]; a channels-first output wants each channel's pixels contiguous).
 *
 * cconv_unpack_tile_nchw_*: dst[j * ldd + p] = ct[p * ldc + j] + (bias ? bias[j] : 0)
 * for p < np, j < nc. Reads ct rows p < np at columns 0 .. nc rounded up to the vector
 * width (at most ldc: the tile's panel width, a multiple of every path's width); writes
 * exactly the np x nc outputs. One addition per element on every path: the same bits
 * (the + 0 without a bias kept, as the scalar loop it replaced: -0 becomes +0). */
#ifndef CCONV_UNPACK_H
#define CCONV_UNPACK_H

#include "gemm.h"

void cconv_unpack_tile_nchw_f32(const float *ct, cc_idx ldc, cc_idx np, cc_idx nc,
                                const float *bias, float *dst, cc_idx ldd);
void cconv_unpack_tile_nchw_f64(const double *ct, cc_idx ldc, cc_idx np, cc_idx nc,
                                const double *bias, double *dst, cc_idx ldd);

#endif
