/* cconv GEMM core: BLIS-style packed GEMM with runtime ISA dispatch.
 *
 * Conventions (all kernels):
 *   - Matrices are addressed with explicit element strides; indices are int64.
 *   - A packed A ("Ap") holds ceil(m/MR) panels. Panel p holds rows p*MR..p*MR+MR-1
 *     for k = 0..kc-1, stored k-major: element (i, k) at panel + k*MR + (i % MR).
 *     Rows past m are zero (packing pads the edges, kernels never branch on them).
 *   - A packed B ("Bp") holds ceil(n/NR) panels. Panel q holds columns q*NR..q*NR+NR-1,
 *     element (k, j) at panel + k*NR + (j % NR). Columns past n are zero.
 *   - C is row-major with row stride ldc and unit column stride.
 *   - Every element of C is accumulated as a single running sum over k in increasing
 *     order with fused multiply-add, on every ISA path: results are bitwise identical
 *     across ISA paths and thread counts for the same KC blocking.
 *   - MR and NR depend on the active ISA and dtype: query them, never assume.
 */
#ifndef CCONV_GEMM_H
#define CCONV_GEMM_H

#include <stdint.h>

typedef int64_t cc_idx;

enum { CCONV_ISA_GENERIC = 0, CCONV_ISA_AVX2 = 1, CCONV_ISA_AVX512 = 2 };

/* Best ISA path the running CPU supports. */
int cconv_isa_best(void);
/* Active path (initially the best one). */
int cconv_isa_active(void);
/* Select a path: returns 0, or -1 when the CPU lacks it (active path unchanged). */
int cconv_isa_select(int isa);

/* Body of a void dispatcher in a file compiled with gemm.c: calls NAME_avx512,
 * NAME_avx2 or NAME_gen with ARGS by the active path, then returns (NAME_gen only off
 * x86-64). */
#if defined(__x86_64__) || defined(_M_X64)
#define CC_ISA_PICK(NAME, ARGS)                                                            \
    do {                                                                                   \
        switch (cconv_isa_active()) {                                                      \
        case CCONV_ISA_AVX512: NAME##_avx512 ARGS; return;                                \
        case CCONV_ISA_AVX2: NAME##_avx2 ARGS; return;                                    \
        default: NAME##_gen ARGS; return;                                                 \
        }                                                                                  \
    } while (0)
#else
#define CC_ISA_PICK(NAME, ARGS) do { NAME##_gen ARGS; return; } while (0)
#endif
/* "generic", "avx2", "avx512"; NULL for an unknown id. */
const char *cconv_isa_name(int isa);

/* Register-tile geometry of the active path. */
int cconv_mr_f32(void);
int cconv_nr_f32(void);
int cconv_mr_f64(void);
int cconv_nr_f64(void);

/* K blocking used by every driver (fixed: part of the reproducibility contract). */
#define CCONV_KC_F32 256
#define CCONV_KC_F64 256

/* Pack an m x k block of A (element (i,kk) at a[i*rs + kk*cs]) into MR panels. */
void cconv_pack_a_f32(cc_idx m, cc_idx k, const float *a, cc_idx rs, cc_idx cs, float *ap);
void cconv_pack_a_f64(cc_idx m, cc_idx k, const double *a, cc_idx rs, cc_idx cs, double *ap);
/* The m rows of a row-major block (row i at a + i*rs, k unit-stride elements) into
 * panels of w rows: panel q at ap + q*w*k, element (i, kk) at [kk*w + i % w], the last
 * panel zero-padded (cconv_pack_a_* for any panel width; SIMD transposes when w is a
 * whole number of 256-bit vectors). */
void cconv_pack_rows_to_panels_f32(int w, cc_idx m, cc_idx k, const float *a, cc_idx rs,
                                   float *ap);
void cconv_pack_rows_to_panels_f64(int w, cc_idx m, cc_idx k, const double *a, cc_idx rs,
                                   double *ap);
/* dst[i*ld + j] = src[j][i*sw] for i in [lo[j], hi[j]) and 0 for the other i < n, for
 * j < CCONV_GATHER_W (one 256-bit vector of columns); a NULL src[j] gives zeros. Reads
 * only those elements (src[j] itself may point before the row: lo[j] > 0). Register
 * transposes with masked loads for sw 1 and 2; scalar on the generic path. */
#define CCONV_GATHER_W_f32 8
#define CCONV_GATHER_W_f64 4
void cconv_gather_rows_t_f32(const float *const *src, const cc_idx *lo, const cc_idx *hi,
                             cc_idx n, cc_idx sw, float *dst, cc_idx ld);
void cconv_gather_rows_t_f64(const double *const *src, const cc_idx *lo, const cc_idx *hi,
                             cc_idx n, cc_idx sw, double *dst, cc_idx ld);
/* dst[j] = src[j*ss] for j < n (SIMD for ss 2; reads src[0 .. (n-1)*ss] only). */
void cconv_copy_strided_f32(float *dst, const float *src, cc_idx ss, cc_idx n);
void cconv_copy_strided_f64(double *dst, const double *src, cc_idx ss, cc_idx n);
/* d0[j] = src[2j], d1[j] = src[2j + 1] for j < n: the two column phases of a stride-2
 * row (SIMD; reads src[0 .. 2n) only). */
void cconv_split2_f32(float *d0, float *d1, const float *src, cc_idx n);
void cconv_split2_f64(double *d0, double *d1, const double *src, cc_idx n);
/* dst[j*ds] += src[j] for j < n, each element once in increasing j (col2im's adds; SIMD
 * for ds 1 and 2). dst and src must not overlap. */
void cconv_add_strided_f32(float *dst, cc_idx ds, const float *src, cc_idx n);
void cconv_add_strided_f64(double *dst, cc_idx ds, const double *src, cc_idx n);
/* Pack a k x n block of B (element (kk,j) at b[kk*rs + j*cs]) into NR panels. */
void cconv_pack_b_f32(cc_idx k, cc_idx n, const float *b, cc_idx rs, cc_idx cs, float *bp);
void cconv_pack_b_f64(cc_idx k, cc_idx n, const double *b, cc_idx rs, cc_idx cs, double *bp);
/* Rows [k0, k1) of a K x n B (element (kk, j) at b[kk*rs + j]) into the NR panels of
 * its whole-K packing (what cconv_pack_b_* with k = K writes for those rows), so
 * threads can pack disjoint row ranges of one matrix, reading it sequentially. */
void cconv_pack_b_rows_to_panels_f32(cc_idx k0, cc_idx k1, cc_idx n, const float *b,
                                     cc_idx rs, float *bp, cc_idx K);
void cconv_pack_b_rows_to_panels_f64(cc_idx k0, cc_idx k1, cc_idx n, const double *b,
                                     cc_idx rs, double *bp, cc_idx K);

/* Macro-kernel over packed panels:
 *   C[0:m, 0:n] = (accumulate ? C : 0) + A[0:m, 0:kc] * B[0:kc, 0:n]
 * ap: first A panel; consecutive A panels are ps_a elements apart (ps_a >= kc*MR, so a
 *     panel packed with a longer k can be sliced: ap = base + k0*MR, ps_a = K*MR).
 * bp: first B panel; consecutive B panels are ps_b elements apart (ps_b >= kc*NR).
 * Partial tiles at the m and n edges are handled inside (only C[0:m,0:n] is touched).
 * kc may be 0 (then C = accumulate ? C : 0). Single-threaded. */
void cconv_gemm_macro_f32(cc_idx m, cc_idx n, cc_idx kc, const float *ap, cc_idx ps_a,
                          const float *bp, cc_idx ps_b, float *c, cc_idx ldc, int accumulate);
void cconv_gemm_macro_f64(cc_idx m, cc_idx n, cc_idx kc, const double *ap, cc_idx ps_a,
                          const double *bp, cc_idx ps_b, double *c, cc_idx ldc, int accumulate);

/* Plain GEMM C[m,n] = A[m,k] * B[k,n] (general strides for A and B, row-major C with
 * row stride ldc), blocked for the caches, on nthreads OpenMP threads (split over
 * M and N blocks only, so the result does not depend on nthreads).
 * Returns 0, or -1 if workspace could not be allocated. */
int cconv_gemm_f32(cc_idx m, cc_idx n, cc_idx k, const float *a, cc_idx rsa, cc_idx csa,
                   const float *b, cc_idx rsb, cc_idx csb, float *c, cc_idx ldc, int nthreads);
int cconv_gemm_f64(cc_idx m, cc_idx n, cc_idx k, const double *a, cc_idx rsa, cc_idx csa,
                   const double *b, cc_idx rsb, cc_idx csb, double *c, cc_idx ldc, int nthreads);

/* Indirect micro-kernel (XNNPACK-style "igemm"), used where packing A would cost more
 * than the product, e.g. channels-last convolution where each A row is a run of
 * contiguous input channels:
 *   C[0:m, 0:n] = (accumulate ? C : 0) + sum_{k<kc} a_rows[i][k] * B[k, j]
 * a_rows: MR row pointers of the active ISA's tile (rows i >= m are never read, may be
 *         NULL); row i is read at a_rows[i][0..kc-1] only.
 * b:      one packed B panel (gemm.h layout: element (k, j) at b[k*NR + j]), zero
 *         beyond column n.
 * c:      row-major, row stride ldc; only C[0:m, 0:n] is read or written.
 * Accumulation follows the same rule as the macro-kernel (one running FMA sum per
 * element, starting from C when accumulating), so splitting k over several calls gives
 * bitwise the same result as one call. m <= MR, n <= NR, kc >= 0. */
void cconv_igemm_ukernel_f32(cc_idx kc, const float *const *a_rows, const float *b, float *c,
                             cc_idx ldc, cc_idx m, cc_idx n, int accumulate);
void cconv_igemm_ukernel_f64(cc_idx kc, const double *const *a_rows, const double *b, double *c,
                             cc_idx ldc, cc_idx m, cc_idx n, int accumulate);

/* Indirect micro-kernel over ntaps taps in one call, the accumulators kept in registers
 * between them (channels-last convolution with few channels per tap):
 *   C[0:m, 0:n] = (accumulate ? C : 0)
 *                 + sum_{t<ntaps} sum_{k<kc} a_rows[t*ts + i][k] * B[t*kc + k, j]
 * a_rows: ntaps groups of MR pointers (the active ISA's tile), group t at a_rows + t*ts;
 *         all MR pointers of every group readable for kc elements, rows i >= m too
 *         (their results are discarded; point them at any row of the tap).
 * b:      one packed B panel holding the ntaps*kc rows (gemm.h layout), zero beyond
 *         column n.
 * Each element: one FMA chain over t, then k, in increasing order: bitwise ntaps calls of
 * cconv_igemm_ukernel_* (the later ones accumulating). ntaps >= 1, m <= MR, n <= NR. */
void cconv_igemm_taps_ukernel_f32(cc_idx kc, cc_idx ntaps, const float *const *a_rows,
                                  cc_idx ts, const float *b, float *c, cc_idx ldc, cc_idx m,
                                  cc_idx n, int accumulate);
void cconv_igemm_taps_ukernel_f64(cc_idx kc, cc_idx ntaps, const double *const *a_rows,
                                  cc_idx ts, const double *b, double *c, cc_idx ldc, cc_idx m,
                                  cc_idx n, int accumulate);

/* Pixel-row micro-kernel: m consecutive output pixels of one row (the M dimension) x one
 * packed B panel of NR output channels, A read in place from a (zero-padded,
 * stride-phase) input at per-k offsets:
 *   C[i, j] = (accumulate ? C : 0) + sum_{kk<kc} x[offs[kk] + i] * B[kk, j]
 * i < m, j < n (1 <= n <= NR: the panel's output channels that are needed; columns
 * n..NR-1 of c may be written too: on AVX-512, n <= NR/2 runs a half-width kernel that
 * writes NR/2 columns, the other paths write all NR). Reads x[offs[kk] .. offs[kk] + m
 * - 1] for each kk. c: m x NR, row stride ldc, unit column stride. 1 <= m <=
 * cconv_pixrow_max_*() (active ISA: 14 on AVX-512, 6 on AVX2, 8 portable). One FMA chain
 * per element in kk order, as in every kernel above (bitwise the packed product on the
 * same data). */
int cconv_pixrow_max_f32(void);
int cconv_pixrow_max_f64(void);
void cconv_pixrow_ukernel_f32(cc_idx m, cc_idx n, cc_idx kc, const float *x, const cc_idx *offs,
                              const float *b, float *c, cc_idx ldc, int accumulate);
void cconv_pixrow_ukernel_f64(cc_idx m, cc_idx n, cc_idx kc, const double *x, const cc_idx *offs,
                              const double *b, double *c, cc_idx ldc, int accumulate);
/* Row pairs: the same for m = 2*m1 pixels, i < m1 at x[offs[kk] + i], i >= m1 at
 * x[offs[kk] + rs + i - m1] (two output rows rs elements apart); 1 <= 2*m1 <=
 * cconv_pixrow_max_*(). Reads only those elements. */
void cconv_pixrow2_ukernel_f32(cc_idx m1, cc_idx n, cc_idx kc, const float *x, cc_idx rs,
                               const cc_idx *offs, const float *b, float *c, cc_idx ldc,
                               int accumulate);
void cconv_pixrow2_ukernel_f64(cc_idx m1, cc_idx n, cc_idx kc, const double *x, cc_idx rs,
                               const cc_idx *offs, const double *b, double *c, cc_idx ldc,
                               int accumulate);

/* Channels-last grad_weight micro-kernel (gwrows_impl.h has the whole contract): one
 * MR x NR tile of dW += (MR channels of x, read in place along runs of pixels) .
 * (an NR-column B panel of grad_out, rows ldb apart: packed, ldb = NR, or grad_out's
 * own rows), over nseg runs:
 *   C[i, j] = (accumulate ? C : 0) + sum_s sum_{kk < seg[s].len}
 *             x[seg[s].x + kk*xs + i] * b[(seg[s].p + kk)*ldb + j]
 * i < MR = cconv_gwrows_mr_*(), j < NR = cconv_nr_*() (the active path's); every one
 * of the MR channels is read, so the caller packs a partial channel block. */
typedef struct {
    cc_idx x;   /* element offset of the run's first pixel in x */
    cc_idx p;   /* its row in the B panel */
    cc_idx len; /* pixels in the run */
} cc_gwseg;
int cconv_gwrows_mr_f32(void);
int cconv_gwrows_mr_f64(void);
void cconv_gwrows_ukernel_f32(cc_idx n, cc_idx nseg, const cc_gwseg *seg, const float *x, cc_idx xs,
                              const float *b, cc_idx ldb, float *c, cc_idx ldc, int accumulate);
void cconv_gwrows_ukernel_f64(cc_idx n, cc_idx nseg, const cc_gwseg *seg, const double *x, cc_idx xs,
                              const double *b, cc_idx ldb, double *c, cc_idx ldc, int accumulate);
/* The same for a panel whose rows 4.. are not needed: rows 0..3 of C at least (the
 * rest of the MR x NR tile may be written too); x[.. + 0 .. 3] read on AVX-512, all MR
 * channels on the other paths. */
void cconv_gwrows4_ukernel_f32(cc_idx n, cc_idx nseg, const cc_gwseg *seg, const float *x,
                               cc_idx xs, const float *b, cc_idx ldb, float *c, cc_idx ldc,
                               int accumulate);
void cconv_gwrows4_ukernel_f64(cc_idx n, cc_idx nseg, const cc_gwseg *seg, const double *x,
                               cc_idx xs, const double *b, cc_idx ldb, double *c, cc_idx ldc,
                               int accumulate);

#endif
