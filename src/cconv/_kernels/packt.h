/* Transposed implicit im2col for weight gradients (see pack.h for the geometry).
 *
 * cols^T as the B operand of a GEMM that reduces over output pixels: rows are pixels
 * p0..p0+pc-1, columns are K indices k0..k0+kc-1 (the K order of pack.h for each
 * layout; channels-first only: channels-last grad_weight reads x in place, gwrows
 * kernels); NR-column panels ps elements apart, element (p, j) at
 * bp + (j/nr)*ps + (p-p0)*nr + j%nr; columns past kc are zero up to the panel edge.
 * x points at channel 0 of this group of one image, as in pack.h.
 */
#ifndef CCONV_PACKT_H
#define CCONV_PACKT_H

#include "pack.h"

void cconv_pack_bt_im2col_nchw_f32(const cc_conv_geom *g, const float *x, cc_idx k0, cc_idx kc,
                                   cc_idx p0, cc_idx pc, int nr, cc_idx ps, float *bp);
void cconv_pack_bt_im2col_nchw_f64(const cc_conv_geom *g, const double *x, cc_idx k0, cc_idx kc,
                                   cc_idx p0, cc_idx pc, int nr, cc_idx ps, double *bp);

#endif
