/* See pwfew.h. */
#include <math.h>
#include <string.h>
#include "pwfew.h"

#define PWFEW_SCALAR(T, FMA, p0)                                                         \
    for (cc_idx p = (p0); p < P; p++)                                                    \
        for (cc_idx o = 0; o < O; o++) {                                                 \
            T acc = 0;                                                                   \
            for (cc_idx c = 0; c < C; c++) acc = FMA(x[p * C + c], w[c * O + o], acc);  \
            out[p * ldo + o] = acc;                                                      \
        }

static void pwfew_f32_gen(const float *restrict x, cc_idx P, cc_idx C, const float *restrict w,
                          cc_idx O, float *restrict out, cc_idx ldo)
{
    PWFEW_SCALAR(float, fmaf, 0)
}
static void pwfew_f64_gen(const double *restrict x, cc_idx P, cc_idx C,
                          const double *restrict w, cc_idx O, double *restrict out, cc_idx ldo)
{
    PWFEW_SCALAR(double, fma, 0)
}

#if defined(__x86_64__) || defined(_M_X64)
#include "simd_transpose.h"
#define TARGET_AVX512 __attribute__((target("avx512f,avx512dq,fma")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))

/* V pixels at a time: per block of V channels, V row loads (a channel block running past
 * C is staged through a zeroed copy so that no load reads past x[P*C)), one transpose,
 * then for each of the block's channels one FMA per output; the pixels past the last
 * whole block of V element by element (the same chains). */
#define DEFINE_PWFEW(NAME, ATTR, T, V, VT, LOAD, STORE, SET1, ZERO, FMA, TR, SFMA)      \
    ATTR static void NAME(const T *restrict x, cc_idx P, cc_idx C, const T *restrict w,  \
                          cc_idx O, T *restrict out, cc_idx ldo)                         \
    {                                                                                    \
        const cc_idx pv = P / V * V;                                                     \
        T stage[V * V] __attribute__((aligned(64)));                                     \
        T res[CCONV_PWFEW_MAX_O * V] __attribute__((aligned(64)));                       \
        for (cc_idx p0 = 0; p0 < pv; p0 += V) {                                          \
            VT acc[CCONV_PWFEW_MAX_O];                                                   \
            for (int o = 0; o < O; o++) acc[o] = ZERO();                                 \
            for (cc_idx c0 = 0; c0 < C; c0 += V) {                                       \
                const int cn = C - c0 < V ? (int)(C - c0) : V;                           \
                VT a[V];                                                                 \
                if (cn == V) {                                                           \
                    for (int i = 0; i < V; i++) a[i] = LOAD(x + (p0 + i) * C + c0);      \
                } else {                                                                 \
                    memset(stage, 0, sizeof stage);                                      \
                    for (int i = 0; i < V; i++)                                          \
                        memcpy(stage + i * V, x + (p0 + i) * C + c0, cn * sizeof(T));    \
                    for (int i = 0; i < V; i++) a[i] = LOAD(stage + i * V);              \
                }                                                                        \
                TR(a); /* a[j]: channel c0 + j of the V pixels */                        \
                for (int j = 0; j < cn; j++) {                                           \
                    const T *wr = w + (c0 + j) * O;                                      \
                    for (int o = 0; o < O; o++) acc[o] = FMA(a[j], SET1(wr[o]), acc[o]); \
                }                                                                        \
            }                                                                            \
            for (int o = 0; o < O; o++) STORE(res + o * V, acc[o]);                      \
            for (int i = 0; i < V; i++)                                                  \
                for (int o = 0; o < O; o++) out[(p0 + i) * ldo + o] = res[o * V + i];    \
        }                                                                                \
        PWFEW_SCALAR(T, SFMA, pv)                                                        \
    }

DEFINE_PWFEW(pwfew_f32_avx512, TARGET_AVX512, float, 16, __m512, _mm512_loadu_ps,
             _mm512_store_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_fmadd_ps, cc_tr16_ps,
             fmaf)
DEFINE_PWFEW(pwfew_f64_avx512, TARGET_AVX512, double, 8, __m512d, _mm512_loadu_pd,
             _mm512_store_pd, _mm512_set1_pd, _mm512_setzero_pd, _mm512_fmadd_pd, cc_tr8_pd,
             fma)
DEFINE_PWFEW(pwfew_f32_avx2, TARGET_AVX2, float, 8, __m256, _mm256_loadu_ps, _mm256_store_ps,
             _mm256_set1_ps, _mm256_setzero_ps, _mm256_fmadd_ps, cc_tr8_ps, fmaf)
DEFINE_PWFEW(pwfew_f64_avx2, TARGET_AVX2, double, 4, __m256d, _mm256_loadu_pd,
             _mm256_store_pd, _mm256_set1_pd, _mm256_setzero_pd, _mm256_fmadd_pd, cc_tr4_pd,
             fma)
#endif

void cconv_pwfew_f32(const float *x, cc_idx P, cc_idx C, const float *w, cc_idx O, float *out,
                     cc_idx ldo)
{ CC_ISA_PICK(pwfew_f32, (x, P, C, w, O, out, ldo)); }
void cconv_pwfew_f64(const double *x, cc_idx P, cc_idx C, const double *w, cc_idx O,
                     double *out, cc_idx ldo)
{ CC_ISA_PICK(pwfew_f64, (x, P, C, w, O, out, ldo)); }
