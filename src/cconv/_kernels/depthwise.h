/* cconv depthwise convolution kernels (groups == C, channel multiplier M = O / C).
 *
 * Direct kernels with runtime ISA dispatch (AVX-512 / AVX2+FMA / portable C), chosen
 * by cconv_isa_active() from gemm.h: this file must be compiled into the same module
 * as gemm.c.
 *
 * Arithmetic contract (every ISA path, every thread count): each output element is
 *     acc = bias (or +0); for kd, kh, kw in increasing order: acc = fma(x, w, acc)
 * where a tap that falls into the zero padding reads x = +0 (exactly as if the input
 * were padded with zeros). The result is bitwise identical across ISA paths and thread
 * counts.
 *
 * Layouts (all arrays C-contiguous, 3-D; 1-D / 2-D problems use size-1 leading dims):
 *   NCHW: x (N, C, D, H, W), w (C*M, 1, KD, KH, KW), out (N, C*M, OD, OH, OW).
 *   NHWC: x (N, D, H, W, C), w (KD, KH, KW, 1, C), out (N, OD, OH, OW, C); the NHWC
 *         kernel is for M == 1 (the driver expands the input channels for M > 1).
 */
#ifndef CCONV_DEPTHWISE_H
#define CCONV_DEPTHWISE_H

#include "gemm.h"

typedef struct {
    cc_idx C;                 /* input channels (= groups) */
    cc_idx M;                 /* channel multiplier: output channel o = c * M + m */
    cc_idx D, H, W;           /* input spatial size */
    cc_idx OD, OH, OW;        /* output spatial size */
    cc_idx KD, KH, KW;        /* kernel size */
    cc_idx sd, sh, sw;        /* strides */
    cc_idx dd, dh, dw;        /* dilations */
    cc_idx pd, ph, pw;        /* zero padding before (after is implied by the sizes) */
} cc_dw_geom;

/* NCHW: per-thread scratch (elements of the dtype) needed by one call covering at most
 * `rows` output rows. */
cc_idx cconv_dw_nchw_scratch(const cc_dw_geom *g, cc_idx rows);

/* NCHW: one input channel c of one image, one output depth od, output rows [oh0, oh1),
 * all M output channels c*M .. c*M+M-1.
 *   x:    x[n, c] (the D*H*W volume of the channel)
 *   w:    w[c*M]  (M filters of KD*KH*KW, contiguous)
 *   bias: bias + c*M, or NULL
 *   out:  out[n, c*M] (M volumes of OD*OH*OW)
 *   scratch: cconv_dw_nchw_scratch(g, oh1 - oh0) elements, private to the caller. */
void cconv_dw_nchw_f32(const cc_dw_geom *g, const float *x, const float *w, const float *bias,
                       float *out, cc_idx od, cc_idx oh0, cc_idx oh1, float *scratch);
void cconv_dw_nchw_f64(const cc_dw_geom *g, const double *x, const double *w,
                       const double *bias, double *out, cc_idx od, cc_idx oh0, cc_idx oh1,
                       double *scratch);

/* The prefetch argument of the channels-last kernels: 0, or DW_PREFETCH (fetch ahead what
 * the next rows read and write) with DW_STREAM or not (write the output with streaming
 * stores where they can, instead of fetching it). */
enum { DW_PREFETCH = 1, DW_STREAM = 2 };

/* NHWC (M == 1): one image, one output row (od, oh), channels [c0, c1).
 *   x: image base (D, H, W, C); w: (KD, KH, KW, C); bias: (C,) or NULL;
 *   out: image base (OD, OH, OW, C).
 * prefetch: also fetch what row oh + 1 (same channels) will read and write, for arrays
 * too large for the cache (cconv_dw_nhwc_prefetch_row's lines, spread over the row). */
void cconv_dw_nhwc_f32(const cc_dw_geom *g, const float *x, const float *w, const float *bias,
                       float *out, cc_idx od, cc_idx oh, cc_idx c0, cc_idx c1, int prefetch);
void cconv_dw_nhwc_f64(const cc_dw_geom *g, const double *x, const double *w,
                       const double *bias, double *out, cc_idx od, cc_idx oh, cc_idx c0,
                       cc_idx c1, int prefetch);
/* Prefetch what cconv_dw_nhwc_* reads and writes for output row (od, oh), channels
 * c0 .. c1-1, beyond what row oh - 1 read, all at once. */
void cconv_dw_nhwc_prefetch_row(const cc_dw_geom *g, const void *x, const void *out,
                                cc_idx esize, cc_idx od, cc_idx oh, cc_idx c0, cc_idx c1);

/* Grouped NCHW, Cg input / Og output channels per group (any groups; the ResNeXt-style
 * few-channel groups that a GEMM per group serves badly): one image, one group, output
 * depth od, rows [oh0, oh1), all Og output channels of the group.
 *   x: x[n, g*Cg]; w: w[g*Og] (Og, Cg, KD, KH, KW); bias: bias + g*Og, or NULL;
 *   out: out[n, g*Og]; scratch: Cg * cconv_dw_nchw_scratch(g, oh1 - oh0) elements.
 * g->C and g->M are not read. Each output: +0, then fma over (c, kd, kh, kw) in
 * increasing order (im2col's K order), then + bias; taps in the zero padding read +0. */
/* Channels-last packed rows (2-D, square 3/5/7 kernels, dw = 1; see depthwise_impl.h):
 * scratch elements per thread, 0 when the problem or the ISA path does not take it;
 * channels per block (each call does one block, c1 - c0 <= block); the rows (prefetch:
 * fetch rows ahead, for arrays that do not stay in cache; the same bits either way). */
cc_idx cconv_dw_nhwc_packed_scratch_f32(const cc_dw_geom *g, cc_idx nc);
cc_idx cconv_dw_nhwc_packed_scratch_f64(const cc_dw_geom *g, cc_idx nc);
cc_idx cconv_dw_nhwc_packed_block_f32(void);
cc_idx cconv_dw_nhwc_packed_block_f64(void);
void cconv_dw_nhwc_packed_f32(const cc_dw_geom *g, const float *x, const float *w,
                              const float *bias, float *out, cc_idx c0, cc_idx c1, cc_idx oh0,
                              cc_idx oh1, float *scratch, int prefetch);
void cconv_dw_nhwc_packed_f64(const cc_dw_geom *g, const double *x, const double *w,
                              const double *bias, double *out, cc_idx c0, cc_idx c1,
                              cc_idx oh0, cc_idx oh1, double *scratch, int prefetch);

void cconv_gconv_nchw_f32(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, const float *x,
                          const float *w, const float *bias, float *out, cc_idx od,
                          cc_idx oh0, cc_idx oh1, float *scratch);
void cconv_gconv_nchw_f64(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, const double *x,
                          const double *w, const double *bias, double *out, cc_idx od,
                          cc_idx oh0, cc_idx oh1, double *scratch);

/* Grouped, both layouts (gconv_impl.h), Cg input / Og output channels per group: one
 * image, groups [g0, g1), output depth od, rows [oh0, oh1), all their output channels.
 *   cf == 0 (channels-last): x image base (D, H, W, C), g->C = C; w (KD, KH, KW, Cg, O)
 *     with O = C/Cg*Og; out image base (OD, OH, OW, O).
 *   cf == 1 (channels-first): x image base (C, D, H, W); w (O, Cg, KD, KH, KW); out
 *     image base (O, OD, OH, OW).
 *   bias: (O,) or NULL; scratch: cconv_gconv_scratch(g, Cg, Og, g1 - g0, oh1 - oh0, cf)
 *   elements. Each output: +0, then fma over (c, kd, kh, kw) in increasing order, then
 *   + bias; taps in the zero padding read +0. Both layouts give the same bits (and so
 *   does the AVX-512 float32 path for Og == 8, which runs pairs of groups in one
 *   register tile: gconv_pair.h). */
cc_idx cconv_gconv_scratch(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx ngroups,
                           cc_idx rows, int cf);
void cconv_gconv_f32(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx g0, cc_idx g1,
                     const float *x, const float *w, const float *bias, float *out,
                     cc_idx od, cc_idx oh0, cc_idx oh1, float *scratch, int cf);
void cconv_gconv_f64(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx g0, cc_idx g1,
                     const double *x, const double *w, const double *bias, double *out,
                     cc_idx od, cc_idx oh0, cc_idx oh1, double *scratch, int cf);

#endif
