/* See unpack.h. Vector paths: V x V register transposes (simd_transpose.h) of V pixels x
 * V channels, the bias added to each transposed row (one channel's V pixels), one
 * unaligned store per channel; the pixels past the last whole block of V element by
 * element. The scalar loop it replaced ran at about one element per cycle and was 64% of
 * a channels-first 8 -> 64 3x3 layer at 64x64 (batch 8). */
#include "unpack.h"

#define UNPACK_SCALAR(T, p0)                                                             \
    for (cc_idx p = (p0); p < np; p++)                                                   \
        for (cc_idx j = 0; j < nc; j++)                                                  \
            dst[j * ldd + p] = ct[p * ldc + j] + (bias ? bias[j] : (T)0);

static void unpack_f32_gen(const float *restrict ct, cc_idx ldc, cc_idx np, cc_idx nc,
                           const float *restrict bias, float *restrict dst, cc_idx ldd)
{
    UNPACK_SCALAR(float, 0)
}
static void unpack_f64_gen(const double *restrict ct, cc_idx ldc, cc_idx np, cc_idx nc,
                           const double *restrict bias, double *restrict dst, cc_idx ldd)
{
    UNPACK_SCALAR(double, 0)
}

#if defined(__x86_64__) || defined(_M_X64)
#include "simd_transpose.h"
#define TARGET_AVX512 __attribute__((target("avx512f,avx512dq,fma")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))

/* V: lanes; SET1 / ADD / LOAD / STORE / TR: that vector type's operations */
#define DEFINE_UNPACK(NAME, ATTR, T, V, VT, LOAD, STORE, SET1, ADD, TR)                 \
    ATTR static void NAME(const T *restrict ct, cc_idx ldc, cc_idx np, cc_idx nc,        \
                          const T *restrict bias, T *restrict dst, cc_idx ldd)           \
    {                                                                                    \
        const cc_idx pv = np / V * V;                                                    \
        for (cc_idx j0 = 0; j0 < nc; j0 += V) {                                          \
            const int nj = nc - j0 < V ? (int)(nc - j0) : V;                             \
            VT b[V];                                                                     \
            for (int j = 0; j < nj; j++)                                                 \
                b[j] = SET1(bias ? bias[j0 + j] : (T)0);                                 \
            for (cc_idx p = 0; p < pv; p += V) {                                         \
                VT a[V];                                                                 \
                for (int i = 0; i < V; i++)                                              \
                    a[i] = LOAD(ct + (p + i) * ldc + j0);                                \
                TR(a);                                                                   \
                for (int j = 0; j < nj; j++)                                             \
                    STORE(dst + (j0 + j) * ldd + p, ADD(a[j], b[j]));                    \
            }                                                                            \
        }                                                                                \
        UNPACK_SCALAR(T, pv)                                                             \
    }

DEFINE_UNPACK(unpack_f32_avx512, TARGET_AVX512, float, 16, __m512, _mm512_loadu_ps,
              _mm512_storeu_ps, _mm512_set1_ps, _mm512_add_ps, cc_tr16_ps)
DEFINE_UNPACK(unpack_f64_avx512, TARGET_AVX512, double, 8, __m512d, _mm512_loadu_pd,
              _mm512_storeu_pd, _mm512_set1_pd, _mm512_add_pd, cc_tr8_pd)
DEFINE_UNPACK(unpack_f32_avx2, TARGET_AVX2, float, 8, __m256, _mm256_loadu_ps,
              _mm256_storeu_ps, _mm256_set1_ps, _mm256_add_ps, cc_tr8_ps)
DEFINE_UNPACK(unpack_f64_avx2, TARGET_AVX2, double, 4, __m256d, _mm256_loadu_pd,
              _mm256_storeu_pd, _mm256_set1_pd, _mm256_add_pd, cc_tr4_pd)

#endif

void cconv_unpack_tile_nchw_f32(const float *ct, cc_idx ldc, cc_idx np, cc_idx nc,
                                const float *bias, float *dst, cc_idx ldd)
{ CC_ISA_PICK(unpack_f32, (ct, ldc, np, nc, bias, dst, ldd)); }
void cconv_unpack_tile_nchw_f64(const double *ct, cc_idx ldc, cc_idx np, cc_idx nc,
                                const double *bias, double *dst, cc_idx ldd)
{ CC_ISA_PICK(unpack_f64, (ct, ldc, np, nc, bias, dst, ldd)); }
