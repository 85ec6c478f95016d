/* cconv Winograd transforms: F(2x2,3x3) and F(4x4,3x3) (and the 1-D F(2,3), F(4,3)).
 *
 * Y = A^T [ (G g G^T) (.) (B^T d B) ] A   per (alpha x alpha) input tile d, alpha = m + 2,
 * which is the cross-correlation of d with the 3x3 kernel g (Lavin & Gray 2016, points
 * 0, +-1, +-2, inf for F(4x4,3x3); 0, +-1, inf for F(2x2,3x3)).
 *
 * Every transform works on L independent "lanes" (tiles or channels) that are
 * contiguous in memory, so the loop over lanes vectorises: element (i, j) of lane l of
 * a tile is read at d[i*rs + j*cs + l]; transformed element t = i*alpha + j of lane l
 * is at v[t*ldv + l]. 1-D transforms use the same calls with rs ignored (one row).
 *
 * Arithmetic: plain adds and multiplies in a fixed order (no FMA contraction: the
 * build uses -ffp-contract=off), so the result of each lane is bitwise identical on
 * every ISA path (SSE2, AVX2, AVX-512 builds of the same code) and for any L.
 * The kernel (weight) transform computes in the dtype, like the other transforms (it had
 * computed in float64, rounding once: 3-4x the time for float32, where the one-shot
 * transform of 256 x 256 weights was about a quarter of a 14x14 layer's call).
 *
 * The ISA path is the one active in gemm.c (cconv_isa_active()): this file must be
 * compiled into the same module as gemm.c.
 */
#ifndef CCONV_WINOGRAD_H
#define CCONV_WINOGRAD_H

#include "gemm.h"

/* Input transform V = B^T d B (2-D) or B^T d (1-D) of L lanes. */
void cconv_winograd_f4x3_input_transform_f32(const float *d, cc_idx rs, cc_idx cs, float *v,
                                             cc_idx ldv, cc_idx L);
void cconv_winograd_f4x3_input_transform_f64(const double *d, cc_idx rs, cc_idx cs, double *v,
                                             cc_idx ldv, cc_idx L);
void cconv_winograd_f2x3_input_transform_f32(const float *d, cc_idx rs, cc_idx cs, float *v,
                                             cc_idx ldv, cc_idx L);
void cconv_winograd_f2x3_input_transform_f64(const double *d, cc_idx rs, cc_idx cs, double *v,
                                             cc_idx ldv, cc_idx L);

/* Output transform y = A^T M A + bias (2-D) or A^T M + bias (1-D): reads M element t of
 * lane l at mm[t*ldm + l], writes the full m x m (or m) outputs of lane l at
 * y[i*rs + j*cs + l], adding bias[l] (bias must not be NULL). */
void cconv_winograd_f4x3_output_transform_f32(const float *mm, cc_idx ldm, const float *bias,
                                              float *y, cc_idx rs, cc_idx cs, cc_idx L);
void cconv_winograd_f4x3_output_transform_f64(const double *mm, cc_idx ldm, const double *bias,
                                              double *y, cc_idx rs, cc_idx cs, cc_idx L);
void cconv_winograd_f2x3_output_transform_f32(const float *mm, cc_idx ldm, const float *bias,
                                              float *y, cc_idx rs, cc_idx cs, cc_idx L);
void cconv_winograd_f2x3_output_transform_f64(const double *mm, cc_idx ldm, const double *bias,
                                              double *y, cc_idx rs, cc_idx cs, cc_idx L);

/* Kernel transform U = G g G^T (2-D) or G g (1-D) in the dtype: kernel element (i, j) of
 * lane l at g[i*rs + j*cs + l*ls]; U element t of lane l written at u[t*ldu + l*lu]. */
void cconv_winograd_f4x3_kernel_transform_f32(const float *g, cc_idx rs, cc_idx cs, cc_idx ls,
                                              float *u, cc_idx ldu, cc_idx lu, cc_idx L);
void cconv_winograd_f4x3_kernel_transform_f64(const double *g, cc_idx rs, cc_idx cs, cc_idx ls,
                                              double *u, cc_idx ldu, cc_idx lu, cc_idx L);
void cconv_winograd_f2x3_kernel_transform_f32(const float *g, cc_idx rs, cc_idx cs, cc_idx ls,
                                              float *u, cc_idx ldu, cc_idx lu, cc_idx L);
void cconv_winograd_f2x3_kernel_transform_f64(const double *g, cc_idx rs, cc_idx cs, cc_idx ls,
                                              double *u, cc_idx ldu, cc_idx lu, cc_idx L);

/* Dispatchers used by the driver: m = 2 or 4 (output tile), nd = 1 or 2. */
void cconv_wino_input_f32(int m, int nd, const float *d, cc_idx rs, cc_idx cs, float *v,
                          cc_idx ldv, cc_idx L);
void cconv_wino_input_f64(int m, int nd, const double *d, cc_idx rs, cc_idx cs, double *v,
                          cc_idx ldv, cc_idx L);
void cconv_wino_output_f32(int m, int nd, const float *mm, cc_idx ldm, const float *bias,
                           float *y, cc_idx rs, cc_idx cs, cc_idx L);
void cconv_wino_output_f64(int m, int nd, const double *mm, cc_idx ldm, const double *bias,
                           double *y, cc_idx rs, cc_idx cs, cc_idx L);
void cconv_wino_kernel_f32(int m, int nd, const float *g, cc_idx rs, cc_idx cs, cc_idx ls,
                           float *u, cc_idx ldu, cc_idx lu, cc_idx L);
void cconv_wino_kernel_f64(int m, int nd, const double *g, cc_idx rs, cc_idx cs, cc_idx ls,
                           double *u, cc_idx ldu, cc_idx lu, cc_idx L);

/* dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols (src and dst must not overlap):
 * channels-first weight taps turned lanes-innermost before the kernel transform. */
void cconv_wino_lanes_f32(const float *src, cc_idx lds, cc_idx rows, cc_idx cols, float *dst,
                          cc_idx ldd);
void cconv_wino_lanes_f64(const double *src, cc_idx lds, cc_idx rows, cc_idx cols,
                          double *dst, cc_idx ldd);

#endif
