/* Pixel-row micro-kernels (included once, at the end of gemm.c: they reuse its tile
 * register macros S512_* / D512_* / S256_* / D256_* and its ISA state).
 *
 * Contract (gemm.h, cconv_pixrow_ukernel_*): for 1 <= m <= cconv_pixrow_max_*(),
 *   C[i, j] = (accumulate ? C[i, j] : 0) + sum_{kk < kc} x[offs[kk] + i] * B[kk, j]
 * for i < m, j < NR: m consecutive output pixels of one row against one packed NR-column
 * B panel (element (kk, j) at b[kk*NR + j]). x[offs[kk] .. offs[kk] + m - 1] is read for
 * each kk, nothing else of x. C: m rows of NR, row stride ldc, unit column stride.
 * Each element is one FMA chain in kk order, like every GEMM kernel here: the bits equal
 * a packed-kernel product on the same data, whatever m.
 *
 * One kernel per m (the accumulators stay in named registers): with the pixels of a
 * row as the M dimension, a 7- or 14-pixel output row needs no padding columns at all.
 * 14 x 32 float on AVX-512 holds 28 zmm accumulators + 2 B vectors; the broadcast is
 * folded into the FMA as a memory operand.
 *
 * Row pairs (cconv_pixrow2_ukernel_*): the same for 2*m1 pixels, i < m1 at
 * x[offs[kk] + i] and i >= m1 at x[offs[kk] + rs + i - m1] (two output rows rs apart in
 * the padded input): a 7-wide image runs 14-row tiles (7-row tiles ran about 20% slower
 * per FMA: 2 B loads and the offset load per 14 FMAs instead of 28). */

#define PR1(X) X(0)
#define PR2(X) PR1(X) X(1)
#define PR3(X) PR2(X) X(2)
#define PR4(X) PR3(X) X(3)
#define PR5(X) PR4(X) X(4)
#define PR6(X) PR5(X) X(5)
#define PR7(X) PR6(X) X(6)
#define PR8(X) PR7(X) X(7)
#define PR9(X) PR8(X) X(8)
#define PR10(X) PR9(X) X(9)
#define PR11(X) PR10(X) X(10)
#define PR12(X) PR11(X) X(11)
#define PR13(X) PR12(X) X(12)
#define PR14(X) PR13(X) X(13)

typedef void (*pixrow_f32_fn)(cc_idx, const float *, const cc_idx *, const float *, float *,
                              cc_idx, int);
typedef void (*pixrow_f64_fn)(cc_idx, const double *, const cc_idx *, const double *,
                              double *, cc_idx, int);

#define DEFINE_PIXROW(NAME, ATTR, T, M, NR, DECL, LOAD, ZERO, STORE, BLOAD, FMA)           \
    ATTR __attribute__((noinline)) static void NAME(cc_idx kc, const T *restrict x,        \
                                                    const cc_idx *restrict offs,           \
                                                    const T *restrict b, T *restrict c,    \
                                                    cc_idx ldc, int accumulate)            \
    {                                                                                      \
        PR##M(DECL)                                                                        \
        if (accumulate) {                                                                  \
            PR##M(LOAD)                                                                    \
        } else {                                                                           \
            PR##M(ZERO)                                                                    \
        }                                                                                  \
        _Pragma("GCC unroll 2")                                                            \
        for (cc_idx kk = 0; kk < kc; kk++) {                                               \
            const T *a = x + offs[kk];                                                     \
            BLOAD                                                                          \
            PR##M(FMA)                                                                     \
            b += (NR);                                                                     \
        }                                                                                  \
        PR##M(STORE)                                                                       \
    }

#define GEN_PIXROW_MAX 8

#define DEFINE_PIXROW2(NAME, ATTR, T, M1, LO, HI, NR, DECL, LOAD, ZERO, STORE, BLOAD, FMA,  \
                       FMA_B)                                                              \
    ATTR __attribute__((noinline)) static void NAME(cc_idx kc, const T *restrict x,        \
                                                    cc_idx rs, const cc_idx *restrict offs, \
                                                    const T *restrict b, T *restrict c,    \
                                                    cc_idx ldc, int accumulate)            \
    {                                                                                      \
        LO(DECL) HI(DECL)                                                                  \
        if (accumulate) {                                                                  \
            LO(LOAD) HI(LOAD)                                                              \
        } else {                                                                           \
            LO(ZERO) HI(ZERO)                                                              \
        }                                                                                  \
        _Pragma("GCC unroll 2")                                                            \
        for (cc_idx kk = 0; kk < kc; kk++) {                                               \
            const T *a = x + offs[kk];                                                     \
            const T *a2 = a + rs - (M1); /* row i >= M1 reads a2[i] */                     \
            BLOAD                                                                          \
            LO(FMA) HI(FMA_B)                                                              \
            b += (NR);                                                                     \
        }                                                                                  \
        LO(STORE) HI(STORE)                                                                \
    }

/* Portable row-pair kernel, 2*m1 <= GEN_PIXROW_MAX. */
#define DEFINE_PIXROW2_GENERIC(NAME, T, FMAF)                                              \
    static void NAME(cc_idx m1, cc_idx kc, const T *x, cc_idx rs, const cc_idx *offs,      \
                     const T *b, T *c, cc_idx ldc, int accumulate)                         \
    {                                                                                      \
        T t[GEN_PIXROW_MAX][GEN_NR];                                                       \
        for (cc_idx i = 0; i < 2 * m1; i++)                                                \
            for (int j = 0; j < GEN_NR; j++)                                               \
                t[i][j] = accumulate ? c[i * ldc + j] : (T)0;                              \
        for (cc_idx kk = 0; kk < kc; kk++) {                                               \
            const T *a = x + offs[kk];                                                     \
            for (cc_idx i = 0; i < 2 * m1; i++) {                                          \
                const T ai = i < m1 ? a[i] : a[rs + i - m1];                               \
                for (int j = 0; j < GEN_NR; j++)                                           \
                    t[i][j] = FMAF(ai, b[j], t[i][j]);                                     \
            }                                                                              \
            b += GEN_NR;                                                                   \
        }                                                                                  \
        for (cc_idx i = 0; i < 2 * m1; i++)                                                \
            for (int j = 0; j < GEN_NR; j++)                                               \
                c[i * ldc + j] = t[i][j];                                                  \
    }
DEFINE_PIXROW2_GENERIC(sgemm_pixrow2_ukernel_generic, float, fmaf)
DEFINE_PIXROW2_GENERIC(dgemm_pixrow2_ukernel_generic, double, fma)

/* Portable kernel, any m <= GEN_PIXROW_MAX, NR = GEN_NR. */
#define DEFINE_PIXROW_GENERIC(NAME, T, FMAF)                                               \
    static void NAME(cc_idx m, cc_idx kc, const T *x, const cc_idx *offs, const T *b, T *c, \
                     cc_idx ldc, int accumulate)                                           \
    {                                                                                      \
        T t[GEN_PIXROW_MAX][GEN_NR];                                                       \
        for (cc_idx i = 0; i < m; i++)                                                     \
            for (int j = 0; j < GEN_NR; j++)                                               \
                t[i][j] = accumulate ? c[i * ldc + j] : (T)0;                              \
        for (cc_idx kk = 0; kk < kc; kk++) {                                               \
            const T *a = x + offs[kk];                                                     \
            for (cc_idx i = 0; i < m; i++)                                                 \
                for (int j = 0; j < GEN_NR; j++)                                           \
                    t[i][j] = FMAF(a[i], b[j], t[i][j]);                                   \
            b += GEN_NR;                                                                   \
        }                                                                                  \
        for (cc_idx i = 0; i < m; i++)                                                     \
            for (int j = 0; j < GEN_NR; j++)                                               \
                c[i * ldc + j] = t[i][j];                                                  \
    }
DEFINE_PIXROW_GENERIC(sgemm_pixrow_ukernel_generic, float, fmaf)
DEFINE_PIXROW_GENERIC(dgemm_pixrow_ukernel_generic, double, fma)

#if CCONV_X86
#define S512_PR_B const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#define D512_PR_B const __m512d b0 = _mm512_loadu_pd(b), b1 = _mm512_loadu_pd(b + 8);
#define S256_PR_B const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#define D256_PR_B const __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);

/* One kernel of an (ISA, dtype, width) family: P names its register-tile macro set
 * (P##_DECL / _LOAD / _ZERO / _STORE from gemm.c, P##_PR_B / _FMA / _FMA_B here). */
#define PIXROW_OF(NAME, TGT, T, NR, P, M)                                                  \
    DEFINE_PIXROW(NAME, TGT, T, M, NR, P##_DECL, P##_LOAD, P##_ZERO, P##_STORE, P##_PR_B,  \
                  P##_FMA)
#define PIXROW2_OF(NAME, TGT, T, NR, P, M1)                                                \
    DEFINE_PIXROW2(NAME, TGT, T, M1, PR##M1, PRH##M1, NR, P##_DECL, P##_LOAD, P##_ZERO,    \
                   P##_STORE, P##_PR_B, P##_FMA, P##_FMA_B)

#define S512_PIXROW(M)                                                                     \
    PIXROW_OF(sgemm_pixrow_ukernel_##M##x32_avx512, TARGET_AVX512, float, 32, S512, M)
#define D512_PIXROW(M)                                                                     \
    PIXROW_OF(dgemm_pixrow_ukernel_##M##x16_avx512, TARGET_AVX512, double, 16, D512, M)
#define S256_PIXROW(M)                                                                     \
    PIXROW_OF(sgemm_pixrow_ukernel_##M##x16_avx2, TARGET_AVX2, float, 16, S256, M)
#define D256_PIXROW(M)                                                                     \
    PIXROW_OF(dgemm_pixrow_ukernel_##M##x8_avx2, TARGET_AVX2, double, 8, D256, M)

#define PR_M14(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14)
#define PR_M6(X) X(1) X(2) X(3) X(4) X(5) X(6)
PR_M14(S512_PIXROW)
PR_M14(D512_PIXROW)
PR_M6(S256_PIXROW)
PR_M6(D256_PIXROW)

#define PR_S512_PTR(M) sgemm_pixrow_ukernel_##M##x32_avx512,
#define PR_D512_PTR(M) dgemm_pixrow_ukernel_##M##x16_avx512,
#define PR_S256_PTR(M) sgemm_pixrow_ukernel_##M##x16_avx2,
#define PR_D256_PTR(M) dgemm_pixrow_ukernel_##M##x8_avx2,
/* Row-pair kernels: the second row's accumulators are rows M1..2*M1-1 (PRH lists). */
#define PRH1(X) X(1)
#define PRH2(X) X(2) X(3)
#define PRH3(X) X(3) X(4) X(5)
#define PRH4(X) X(4) X(5) X(6) X(7)
#define PRH5(X) X(5) X(6) X(7) X(8) X(9)
#define PRH6(X) X(6) X(7) X(8) X(9) X(10) X(11)
#define PRH7(X) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define S512_FMA_B(i) S512_FMA_FROM(a2, i)
#define D512_FMA_B(i) D512_FMA_FROM(a2, i)
#define S256_FMA_B(i) S256_FMA_FROM(a2, i)
#define D256_FMA_B(i) D256_FMA_FROM(a2, i)
#define S512_PIXROW2(M1)                                                                   \
    PIXROW2_OF(sgemm_pixrow2_ukernel_##M1##x32_avx512, TARGET_AVX512, float, 32, S512, M1)
#define D512_PIXROW2(M1)                                                                   \
    PIXROW2_OF(dgemm_pixrow2_ukernel_##M1##x16_avx512, TARGET_AVX512, double, 16, D512, M1)
#define S256_PIXROW2(M1)                                                                   \
    PIXROW2_OF(sgemm_pixrow2_ukernel_##M1##x16_avx2, TARGET_AVX2, float, 16, S256, M1)
#define D256_PIXROW2(M1)                                                                   \
    PIXROW2_OF(dgemm_pixrow2_ukernel_##M1##x8_avx2, TARGET_AVX2, double, 8, D256, M1)
#define PR_M7(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define PR_M3(X) X(1) X(2) X(3)
PR_M7(S512_PIXROW2)
PR_M7(D512_PIXROW2)

/* Half-width AVX-512 kernels: columns 0..NR/2-1 of the NR-column panel (one vector per
 * row; b's rows stay NR apart), for a last panel of at most NR/2 output channels: the
 * same FMAs per element in the same order (the same bits) for half the work. The
 * accumulators reuse gemm.c's S512H_* / D512H_*. */
#define S512H_PR_B const __m512 b0 = _mm512_loadu_ps(b);
#define D512H_PR_B const __m512d b0 = _mm512_loadu_pd(b);
#define S512H_FMA_FROM(A, i) c##i##_0 = _mm512_fmadd_ps(_mm512_set1_ps((A)[i]), b0, c##i##_0);
#define D512H_FMA_FROM(A, i) c##i##_0 = _mm512_fmadd_pd(_mm512_set1_pd((A)[i]), b0, c##i##_0);
#define S512H_FMA(i) S512H_FMA_FROM(a, i)
#define D512H_FMA(i) D512H_FMA_FROM(a, i)
#define S512H_FMA_B(i) S512H_FMA_FROM(a2, i)
#define D512H_FMA_B(i) D512H_FMA_FROM(a2, i)
#define S512H_PIXROW(M)                                                                    \
    PIXROW_OF(sgemm_pixrow_ukernel_##M##x16of32_avx512, TARGET_AVX512, float, 32, S512H, M)
#define D512H_PIXROW(M)                                                                    \
    PIXROW_OF(dgemm_pixrow_ukernel_##M##x8of16_avx512, TARGET_AVX512, double, 16, D512H, M)
#define S512H_PIXROW2(M1)                                                                  \
    PIXROW2_OF(sgemm_pixrow2_ukernel_##M1##x16of32_avx512, TARGET_AVX512, float, 32, S512H, M1)
#define D512H_PIXROW2(M1)                                                                  \
    PIXROW2_OF(dgemm_pixrow2_ukernel_##M1##x8of16_avx512, TARGET_AVX512, double, 16, D512H, \
               M1)
PR_M14(S512H_PIXROW)
PR_M14(D512H_PIXROW)
PR_M7(S512H_PIXROW2)
PR_M7(D512H_PIXROW2)
PR_M3(S256_PIXROW2)
PR_M3(D256_PIXROW2)

typedef void (*pixrow2_f32_fn)(cc_idx, const float *, cc_idx, const cc_idx *, const float *,
                               float *, cc_idx, int);
typedef void (*pixrow2_f64_fn)(cc_idx, const double *, cc_idx, const cc_idx *,
                               const double *, double *, cc_idx, int);
#define PR2_S512_PTR(M) sgemm_pixrow2_ukernel_##M##x32_avx512,
#define PR2_D512_PTR(M) dgemm_pixrow2_ukernel_##M##x16_avx512,
#define PR2_S256_PTR(M) sgemm_pixrow2_ukernel_##M##x16_avx2,
#define PR2_D256_PTR(M) dgemm_pixrow2_ukernel_##M##x8_avx2,
#define PR2_S512H_PTR(M) sgemm_pixrow2_ukernel_##M##x16of32_avx512,
#define PR2_D512H_PTR(M) dgemm_pixrow2_ukernel_##M##x8of16_avx512,
/* [half][m1]: half-width kernels in row 1 */
static const pixrow2_f32_fn PIXROW2_S512[2][8] = {{NULL, PR_M7(PR2_S512_PTR)},
                                                  {NULL, PR_M7(PR2_S512H_PTR)}};
static const pixrow2_f64_fn PIXROW2_D512[2][8] = {{NULL, PR_M7(PR2_D512_PTR)},
                                                  {NULL, PR_M7(PR2_D512H_PTR)}};
static const pixrow2_f32_fn PIXROW2_S256[4] = {NULL, PR_M3(PR2_S256_PTR)};
static const pixrow2_f64_fn PIXROW2_D256[4] = {NULL, PR_M3(PR2_D256_PTR)};

#define PR_S512H_PTR(M) sgemm_pixrow_ukernel_##M##x16of32_avx512,
#define PR_D512H_PTR(M) dgemm_pixrow_ukernel_##M##x8of16_avx512,
static const pixrow_f32_fn PIXROW_S512[2][15] = {{NULL, PR_M14(PR_S512_PTR)},
                                                 {NULL, PR_M14(PR_S512H_PTR)}};
static const pixrow_f64_fn PIXROW_D512[2][15] = {{NULL, PR_M14(PR_D512_PTR)},
                                                 {NULL, PR_M14(PR_D512H_PTR)}};
static const pixrow_f32_fn PIXROW_S256[7] = {NULL, PR_M6(PR_S256_PTR)};
static const pixrow_f64_fn PIXROW_D256[7] = {NULL, PR_M6(PR_D256_PTR)};
#endif /* CCONV_X86 */

static int pixrow_max(int isa)
{
#if CCONV_X86
    if (isa == CCONV_ISA_AVX512)
        return 14;
    if (isa == CCONV_ISA_AVX2)
        return 6;
#endif
    (void)isa;
    return GEN_PIXROW_MAX;
}

int cconv_pixrow_max_f32(void) { return pixrow_max(cconv_isa_active()); }
int cconv_pixrow_max_f64(void) { return pixrow_max(cconv_isa_active()); }

/* The exported entry points: the active path's kernel (PARAMS / ARGS: the parameter and
 * argument lists; the portable kernels take the row width as their first argument). */
#if CCONV_X86
#define PIXROW_SIMD_CASES(T512, T256, ARGS)                                                \
    case CCONV_ISA_AVX512:                                                                 \
        T512 ARGS;                                                                         \
        return;                                                                            \
    case CCONV_ISA_AVX2:                                                                   \
        T256 ARGS;                                                                         \
        return;
#else
#define PIXROW_SIMD_CASES(T512, T256, ARGS)
#endif
#define DEFINE_PIXROW_DISPATCH(NAME, PARAMS, T512, T256, ARGS, GENERIC, GARGS)             \
    void NAME PARAMS                                                                       \
    {                                                                                      \
        switch (cconv_isa_active()) {                                                      \
            PIXROW_SIMD_CASES(T512, T256, ARGS)                                            \
        default:                                                                           \
            GENERIC GARGS;                                                                 \
            return;                                                                        \
        }                                                                                  \
    }

DEFINE_PIXROW_DISPATCH(cconv_pixrow_ukernel_f32,
                       (cc_idx m, cc_idx n, cc_idx kc, const float *x, const cc_idx *offs,
                        const float *b, float *c, cc_idx ldc, int accumulate),
                       PIXROW_S512[n <= 16][m], PIXROW_S256[m],
                       (kc, x, offs, b, c, ldc, accumulate),
                       sgemm_pixrow_ukernel_generic, (m, kc, x, offs, b, c, ldc, accumulate))
DEFINE_PIXROW_DISPATCH(cconv_pixrow_ukernel_f64,
                       (cc_idx m, cc_idx n, cc_idx kc, const double *x, const cc_idx *offs,
                        const double *b, double *c, cc_idx ldc, int accumulate),
                       PIXROW_D512[n <= 8][m], PIXROW_D256[m],
                       (kc, x, offs, b, c, ldc, accumulate),
                       dgemm_pixrow_ukernel_generic, (m, kc, x, offs, b, c, ldc, accumulate))
DEFINE_PIXROW_DISPATCH(cconv_pixrow2_ukernel_f32,
                       (cc_idx m1, cc_idx n, cc_idx kc, const float *x, cc_idx rs,
                        const cc_idx *offs, const float *b, float *c, cc_idx ldc,
                        int accumulate),
                       PIXROW2_S512[n <= 16][m1], PIXROW2_S256[m1],
                       (kc, x, rs, offs, b, c, ldc, accumulate), sgemm_pixrow2_ukernel_generic,
                       (m1, kc, x, rs, offs, b, c, ldc, accumulate))
DEFINE_PIXROW_DISPATCH(cconv_pixrow2_ukernel_f64,
                       (cc_idx m1, cc_idx n, cc_idx kc, const double *x, cc_idx rs,
                        const cc_idx *offs, const double *b, double *c, cc_idx ldc,
                        int accumulate),
                       PIXROW2_D512[n <= 8][m1], PIXROW2_D256[m1],
                       (kc, x, rs, offs, b, c, ldc, accumulate), dgemm_pixrow2_ukernel_generic,
                       (m1, kc, x, rs, offs, b, c, ldc, accumulate))
