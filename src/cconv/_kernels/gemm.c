/* PLACEHOLDER generic GEMM (correct, slow) until the SIMD kernels land from the
 * kernels branch; implements gemm.h with MR=4, NR=8 and no ISA dispatch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "gemm.h"

#define MR 4
#define NR 8
int cconv_isa_best(void) { return CCONV_ISA_GENERIC; }
int cconv_isa_active(void) { return CCONV_ISA_GENERIC; }
int cconv_isa_select(int isa) { return isa == CCONV_ISA_GENERIC ? 0 : -1; }
const char *cconv_isa_name(int isa) { return isa == 0 ? "generic" : isa == 1 ? "avx2" : isa == 2 ? "avx512" : NULL; }
int cconv_mr_f32(void) { return MR; }
int cconv_nr_f32(void) { return NR; }
int cconv_mr_f64(void) { return MR; }
int cconv_nr_f64(void) { return NR; }

#define DEF(T, SUF, FMA)                                                                     \
void cconv_pack_a_##SUF(cc_idx m, cc_idx k, const T *a, cc_idx rs, cc_idx cs, T *ap) {      \
    for (cc_idx p = 0; p < (m + MR - 1) / MR; p++)                                          \
        for (cc_idx kk = 0; kk < k; kk++)                                                   \
            for (cc_idx i = 0; i < MR; i++) {                                               \
                cc_idx r = p * MR + i;                                                      \
                ap[p * k * MR + kk * MR + i] = r < m ? a[r * rs + kk * cs] : (T)0;          \
            }                                                                               \
}                                                                                           \
void cconv_pack_b_##SUF(cc_idx k, cc_idx n, const T *b, cc_idx rs, cc_idx cs, T *bp) {      \
    for (cc_idx q = 0; q < (n + NR - 1) / NR; q++)                                          \
        for (cc_idx kk = 0; kk < k; kk++)                                                   \
            for (cc_idx j = 0; j < NR; j++) {                                               \
                cc_idx cidx = q * NR + j;                                                   \
                bp[q * k * NR + kk * NR + j] = cidx < n ? b[kk * rs + cidx * cs] : (T)0;    \
            }                                                                               \
}                                                                                           \
void cconv_gemm_macro_##SUF(cc_idx m, cc_idx n, cc_idx kc, const T *ap, cc_idx ps_a,        \
                            const T *bp, cc_idx ps_b, T *c, cc_idx ldc, int accumulate) {   \
    for (cc_idx p = 0; p * MR < m; p++)                                                     \
        for (cc_idx q = 0; q * NR < n; q++) {                                               \
            T acc[MR][NR] = {{0}};                                                          \
            const T *A = ap + p * ps_a, *B = bp + q * ps_b;                                 \
            for (cc_idx kk = 0; kk < kc; kk++)                                              \
                for (int i = 0; i < MR; i++)                                                \
                    for (int j = 0; j < NR; j++)                                            \
                        acc[i][j] = FMA(A[kk * MR + i], B[kk * NR + j], acc[i][j]);         \
            for (int i = 0; i < MR && p * MR + i < m; i++)                                  \
                for (int j = 0; j < NR && q * NR + j < n; j++) {                            \
                    T *cp = c + (p * MR + i) * ldc + q * NR + j;                            \
                    *cp = accumulate ? *cp + acc[i][j] : acc[i][j];                         \
                }                                                                           \
        }                                                                                   \
}                                                                                           \
int cconv_gemm_##SUF(cc_idx m, cc_idx n, cc_idx k, const T *a, cc_idx rsa, cc_idx csa,      \
                     const T *b, cc_idx rsb, cc_idx csb, T *c, cc_idx ldc, int nthreads) {  \
    (void)nthreads;                                                                         \
    T *ap = malloc(sizeof(T) * (size_t)((m + MR - 1) / MR * MR * (k ? k : 1)));             \
    T *bp = malloc(sizeof(T) * (size_t)((n + NR - 1) / NR * NR * (k ? k : 1)));             \
    if (!ap || !bp) { free(ap); free(bp); return -1; }                                      \
    cconv_pack_a_##SUF(m, k, a, rsa, csa, ap);                                              \
    cconv_pack_b_##SUF(k, n, b, rsb, csb, bp);                                              \
    cconv_gemm_macro_##SUF(m, n, k, ap, k * MR, bp, k * NR, c, ldc, 0);                     \
    free(ap); free(bp);                                                                     \
    return 0;                                                                               \
}

DEF(float, f32, fmaf)
DEF(double, f64, fma)
