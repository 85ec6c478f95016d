/* Few-channel direct channels-last convolution (contract in direct_fewc.h): one body
 * (direct_fewc_impl.h) instantiated for AVX-512, AVX2+FMA and portable C, picked at
 * run time by cconv_isa_active() from gemm.c (compiled into the same module). */
#include <math.h>
#include "direct_fewc.h"

#if defined(__x86_64__) || defined(_M_X64)
#define CCONV_X86 1
#include <immintrin.h>
#endif

/* portable C: one lane, fma() from libm (the same rounding as the FMA instructions) */
#define NAME fewc_row_gen_f32
#define ATTR
#define T float
#define V float
#define L 1
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VSET1(x) (x)
#define VFMA(a, b, c) fmaf(a, b, c)
#include "direct_fewc_impl.h"

#define NAME fewc_row_gen_f64
#define ATTR
#define T double
#define V double
#define L 1
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VSET1(x) (x)
#define VFMA(a, b, c) fma(a, b, c)
#include "direct_fewc_impl.h"

#if CCONV_X86
#define NAME fewc_row_avx512_f32
#define ATTR __attribute__((target("avx512f,fma")))
#define T float
#define V __m512
#define L 16
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#include "direct_fewc_impl.h"

#define NAME fewc_row_avx512_f64
#define ATTR __attribute__((target("avx512f,fma")))
#define T double
#define V __m512d
#define L 8
#define VLOAD(p) _mm512_loadu_pd(p)
#define VSTORE(p, v) _mm512_storeu_pd(p, v)
#define VSET1(x) _mm512_set1_pd(x)
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#include "direct_fewc_impl.h"

#define NAME fewc_row_avx2_f32
#define ATTR __attribute__((target("avx2,fma")))
#define T float
#define V __m256
#define L 8
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#include "direct_fewc_impl.h"

#define NAME fewc_row_avx2_f64
#define ATTR __attribute__((target("avx2,fma")))
#define T double
#define V __m256d
#define L 4
#define VLOAD(p) _mm256_loadu_pd(p)
#define VSTORE(p, v) _mm256_storeu_pd(p, v)
#define VSET1(x) _mm256_set1_pd(x)
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#include "direct_fewc_impl.h"
#endif

/* The public entry points: lanes of the active path, and the row kernel it runs. */
#if CCONV_X86
#define FEWC_PICK(AVX512, AVX2, GEN)                                                     \
    switch (cconv_isa_active()) {                                                        \
    case CCONV_ISA_AVX512: AVX512; break;                                                \
    case CCONV_ISA_AVX2: AVX2; break;                                                    \
    default: GEN; break;                                                                 \
    }
#else
#define FEWC_PICK(AVX512, AVX2, GEN) GEN;
#endif

#define FEWC_DEFINE_API(T, SUF, L512, L2)                                                \
    int cconv_fewc_lanes_##SUF(void)                                                     \
    {                                                                                    \
        int lanes = 1;                                                                   \
        FEWC_PICK(lanes = (L512), lanes = (L2), lanes = 1)                               \
        return lanes;                                                                    \
    }                                                                                    \
    void cconv_fewc_row_##SUF(const T *xr, const cc_idx *toff, cc_idx K, cc_idx xcs,     \
                              const T *w, cc_idx OP, const T *bias, T *out, cc_idx O,    \
                              cc_idx OW)                                                 \
    {                                                                                    \
        FEWC_PICK(fewc_row_avx512_##SUF(xr, toff, K, xcs, w, OP, bias, out, O, OW),      \
                  fewc_row_avx2_##SUF(xr, toff, K, xcs, w, OP, bias, out, O, OW),        \
                  fewc_row_gen_##SUF(xr, toff, K, xcs, w, OP, bias, out, O, OW))         \
    }

FEWC_DEFINE_API(float, f32, 16, 8)
FEWC_DEFINE_API(double, f64, 8, 4)
