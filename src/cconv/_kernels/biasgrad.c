/* biasgrad: the loops of biasgrad.h compiled per ISA path (target attributes) and
 * dispatched at run time on cconv_isa_active() (gemm.c, compiled into the same module).
 * The loop bodies are plain C that GCC vectorises: each lane or channel is its own
 * double sum, so vectorising never reorders an addition and every path agrees bitwise.
 */
#include "biasgrad.h"

#if defined(__x86_64__) || defined(_M_X64)
#define CCONV_BG_X86 1
#else
#define CCONV_BG_X86 0
#endif

#define BG_L CCONV_BIASGRAD_LANES

/* the contract's halving reduction of the lanes */
static inline double bg_lanes(double *v)
{
    for (int h = BG_L / 2; h >= 1; h /= 2)
        for (int l = 0; l < h; l++)
            v[l] += v[l + h];
    return v[0];
}

#define BG_BODIES(T, SUF, ATTR, ISA)                                                     \
    ATTR static double bg_rows_##SUF##_##ISA(const T *a, cc_idx nimg, cc_idx stride,     \
                                             cc_idx n)                                   \
    {                                                                                    \
        double acc[BG_L] = {0};                                                          \
        for (cc_idx b = 0; b < nimg; b++) {                                              \
            const T *row = a + b * stride;                                               \
            cc_idx i = 0;                                                                \
            for (; i + BG_L <= n; i += BG_L)                                             \
                for (int l = 0; l < BG_L; l++)                                           \
                    acc[l] += (double)row[i + l];                                        \
            for (int l = 0; i + l < n; l++)                                              \
                acc[l] += (double)row[i + l];                                            \
        }                                                                                \
        return bg_lanes(acc);                                                            \
    }                                                                                    \
    ATTR static void bg_cols_##SUF##_##ISA(const T *a, cc_idx nr, cc_idx c, cc_idx lda,  \
                                           double *restrict acc)                         \
    {                                                                                    \
        for (cc_idx r = 0; r < nr; r++) {                                                \
            const T *restrict row = a + r * lda;                                         \
            for (cc_idx j = 0; j < c; j++)                                               \
                acc[j] += (double)row[j];                                                \
        }                                                                                \
    }

#define BG_NOATTR
BG_BODIES(float, f32, BG_NOATTR, generic)
BG_BODIES(double, f64, BG_NOATTR, generic)
#if CCONV_BG_X86
#define BG_AVX2 __attribute__((target("avx2")))
#define BG_AVX512 __attribute__((target("avx512f")))
BG_BODIES(float, f32, BG_AVX2, avx2)
BG_BODIES(double, f64, BG_AVX2, avx2)
BG_BODIES(float, f32, BG_AVX512, avx512)
BG_BODIES(double, f64, BG_AVX512, avx512)
#define BG_PICK(FN, ARGS)                                                                \
    switch (cconv_isa_active()) {                                                        \
    case CCONV_ISA_AVX512: return FN##_avx512 ARGS;                                      \
    case CCONV_ISA_AVX2: return FN##_avx2 ARGS;                                          \
    default: return FN##_generic ARGS;                                                   \
    }
#else
#define BG_PICK(FN, ARGS) return FN##_generic ARGS;
#endif

double cconv_biasgrad_rows_f32(const float *a, cc_idx nimg, cc_idx stride, cc_idx n)
{
    BG_PICK(bg_rows_f32, (a, nimg, stride, n))
}

double cconv_biasgrad_rows_f64(const double *a, cc_idx nimg, cc_idx stride, cc_idx n)
{
    BG_PICK(bg_rows_f64, (a, nimg, stride, n))
}

void cconv_biasgrad_cols_f32(const float *a, cc_idx nr, cc_idx c, cc_idx lda, double *acc)
{
    BG_PICK(bg_cols_f32, (a, nr, c, lda, acc))
}

void cconv_biasgrad_cols_f64(const double *a, cc_idx nr, cc_idx c, cc_idx lda, double *acc)
{
    BG_PICK(bg_cols_f64, (a, nr, c, lda, acc))
}
