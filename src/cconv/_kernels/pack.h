/* Implicit im2col packing: GEMM panels straight from a convolution input.
 *
 * Every problem is 3-D (1-D and 2-D inputs have D = H = 1 and kernel size 1 there).
 * Zero padding is done here: taps that fall outside the input read as 0, so the
 * micro-kernels never branch. Other padding modes are materialised by the caller.
 *
 * NCHW ("channels first") maps to  out[O, P] = W[O, K] x cols[K, P]:
 *   K index k = ((c*KD + kd)*KH + kh)*KW + kw   (matches weight (O, Cg, KD, KH, KW))
 *   P index p = (od*OH + oh)*OW + ow
 *   cols are the B operand: cconv_pack_b_im2col_nchw_* writes NR-column panels
 *   (layout of gemm.h) for rows k0..k0+kc-1 and columns p0..p0+nc-1; consecutive
 *   panels are ps elements apart (ps = kc*NR for a KC block, K*NR with bp offset by
 *   k0*NR for a buffer holding all of K).
 * NHWC ("channels last") maps to  out[P, O] = cols[P, K] x W[K, O]:
 *   K index k = ((kd*KH + kh)*KW + kw)*Cg + c  (matches weight (KD, KH, KW, Cg, O))
 *   cols are the A operand, read by the indirect micro-kernel through row pointers:
 *   straight from x (enough channels per tap) or from rows built here.
 */
#ifndef CCONV_PACK_H
#define CCONV_PACK_H

#include "gemm.h"

typedef struct {
    cc_idx C;              /* channels of this group (Cg) */
    cc_idx D, H, W;        /* input spatial size */
    cc_idx KD, KH, KW;     /* kernel size */
    cc_idx OD, OH, OW;     /* output spatial size */
    cc_idx sd, sh, sw;     /* stride */
    cc_idx dd, dh, dw;     /* dilation */
    cc_idx pd, ph, pw;     /* zero padding before (after-padding is implied by O*) */
    cc_idx ctot;           /* NHWC: channels per pixel in memory (all groups) */
} cc_conv_geom;

/* x points at channel 0 of this group of one image (NCHW: x + (n*C + g*Cg)*D*H*W). */
void cconv_pack_b_im2col_nchw_f32(const cc_conv_geom *g, const float *x, cc_idx k0, cc_idx kc,
                                  cc_idx p0, cc_idx nc, int nr, cc_idx ps, float *bp);
void cconv_pack_b_im2col_nchw_f64(const cc_conv_geom *g, const double *x, cc_idx k0, cc_idx kc,
                                  cc_idx p0, cc_idx nc, int nr, cc_idx ps, double *bp);
/* Rows (pixels) p0..p0+mc-1, columns k0..k0+kc-1 of the NHWC cols matrix, row-major:
 * element (r, kk) at dst[r*ld + kk]. For the indirect micro-kernel (row pointers), used
 * when a pixel's channels per tap are too few to read in place efficiently.
 * x points at channel 0 of this group of one image (x + n*D*H*W*ctot + g*Cg). */
void cconv_pack_rows_im2col_nhwc_f32(const cc_conv_geom *g, const float *x, cc_idx p0,
                                     cc_idx mc, cc_idx k0, cc_idx kc, float *dst, cc_idx ld);
void cconv_pack_rows_im2col_nhwc_f64(const cc_conv_geom *g, const double *x, cc_idx p0,
                                     cc_idx mc, cc_idx k0, cc_idx kc, double *dst, cc_idx ld);

/* B rows given by offsets: row kk of the block is base[offs[kk] + j0 .. + nc - 1]
 * (contiguous), packed into NR-column panels ps elements apart, zero past nc.
 * Stride-1 NCHW convolution over a zero-padded input is such a matrix: with the
 * output computed on the padded grid ("virtual pixels" v = (od*Hp + oh)*Wp + ow),
 * tap (c, kd, kh, kw) reads x_pad[off_k + v], off_k = c*Dp*Hp*Wp + kd*dd*Hp*Wp +
 * kh*dh*Wp + kw*dw. The columns with ow >= OW are computed and dropped. */
void cconv_pack_b_rows_f32(const float *base, const cc_idx *offs, cc_idx kc, cc_idx j0,
                           cc_idx nc, int nr, cc_idx ps, float *bp);
void cconv_pack_b_rows_f64(const double *base, const cc_idx *offs, cc_idx kc, cc_idx j0,
                           cc_idx nc, int nr, cc_idx ps, double *bp);

/* One channel (D, H, W), zero-padded by (pd, ph, pw) before, split into sd*sh*sw stride
 * phases of (Dq, Hq, Wq): phase (a, b, c) element (dq, hq, wq) is padded-input element
 * (dq*sd + a, hq*sh + b, wq*sw + c) (zero outside the input). With the phases, tap
 * (kd, kh, kw) of output (od, oh, ow) reads phase ((kd*dd) % sd, ...) at
 * (od + kd*dd / sd, ...): for any stride, a cols row is one contiguous run. Stride 1
 * is the plain zero-padded copy. */
void cconv_pad_phases_f32(const float *x, cc_idx D, cc_idx H, cc_idx W, float *xp, cc_idx Dq,
                          cc_idx Hq, cc_idx Wq, cc_idx sd, cc_idx sh, cc_idx sw, cc_idx pd,
                          cc_idx ph, cc_idx pw);
void cconv_pad_phases_f64(const double *x, cc_idx D, cc_idx H, cc_idx W, double *xp, cc_idx Dq,
                          cc_idx Hq, cc_idx Wq, cc_idx sd, cc_idx sh, cc_idx sw, cc_idx pd,
                          cc_idx ph, cc_idx pw);

#endif
