/* Layout transposes between channels-first and channels-last: per image, a (rows x cols)
 * matrix to (cols x rows): dst[c * ldd + r] = src[r * lds + c], in 16 x 16 blocks (both sides stay in L1 while a block is
 * moved). The inner loop reads 16 rows and writes one contiguous output row, which
 * compilers vectorise as gathers-free strided loads + one wide store. */
#ifndef CCONV_TRANSPOSE_H
#define CCONV_TRANSPOSE_H
#include <stdint.h>

#define CC_TR_DEFINE(T, SUF)                                                              \
static __attribute__((noinline)) void cconv_transpose_##SUF(const T *restrict src,    \
                                         int64_t lds,                                     \
                                         int64_t rows, int64_t cols, T *restrict dst,     \
                                         int64_t ldd) {                                   \
    enum { BS = 16 };                                                                     \
    for (int64_t c0 = 0; c0 < cols; c0 += BS) {                                           \
        const int64_t c1 = c0 + BS < cols ? c0 + BS : cols;                               \
        for (int64_t r0 = 0; r0 < rows; r0 += BS) {                                       \
            const int64_t r1 = r0 + BS < rows ? r0 + BS : rows;                           \
            if (rows <= cols) /* measured: read rows when the rows are long */            \
                for (int64_t r = r0; r < r1; r++) {                                       \
                    const T *restrict s = src + r * lds;                                  \
                    for (int64_t c = c0; c < c1; c++) dst[c * ldd + r] = s[c];            \
                }                                                                         \
            else                                                                          \
                for (int64_t c = c0; c < c1; c++) {                                       \
                    T *restrict d = dst + c * ldd;                                        \
                    for (int64_t r = r0; r < r1; r++) d[r] = src[r * lds + c];            \
                }                                                                         \
        }                                                                                 \
    }                                                                                     \
}
CC_TR_DEFINE(float, f32)
CC_TR_DEFINE(double, f64)
#undef CC_TR_DEFINE

/* The same transpose through AVX-512 registers (simd_transpose.h's V x V blocks walked
 * along the long rows; matrices narrower than a block take the loop above). Chosen at run time by
 * cconv_transpose_auto_* (cconv_transpose_simd: 1 on AVX-512 machines, 0 forces the
 * loop above; set once at module import, before any call). A copy, so the same values
 * on every path. */
static int cconv_transpose_simd = 0;

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#include "simd_transpose.h"
#define CC_TR_AVX512 __attribute__((target("avx512f")))
CC_DEFINE_TRANSPOSE_BLOCKS(cconv_transpose_avx512_f32, CC_TR_AVX512, float, 16, __m512,
                           _mm512_loadu_ps, _mm512_storeu_ps, cc_tr16_ps)
CC_DEFINE_TRANSPOSE_BLOCKS(cconv_transpose_avx512_f64, CC_TR_AVX512, double, 8, __m512d,
                           _mm512_loadu_pd, _mm512_storeu_pd, cc_tr8_pd)
#undef CC_TR_AVX512
#define CC_TR_HAVE_SIMD 1

/* 1 when the CPU (and the OS) support AVX-512F. */
static inline int cconv_transpose_simd_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}
#else
static inline int cconv_transpose_simd_supported(void) { return 0; }
#endif

#define CC_TR_AUTO(T, SUF, V)                                                             \
static inline void cconv_transpose_auto_##SUF(const T *restrict src, int64_t lds,         \
                                              int64_t rows, int64_t cols,                 \
                                              T *restrict dst, int64_t ldd) {             \
    CC_TR_SIMD_CALL(SUF, V)                                                               \
    cconv_transpose_##SUF(src, lds, rows, cols, dst, ldd);                                \
}
#ifdef CC_TR_HAVE_SIMD
#define CC_TR_SIMD_CALL(SUF, V)                                                           \
    if (cconv_transpose_simd && rows >= V && cols >= V) {                                 \
        cconv_transpose_avx512_##SUF(src, lds, rows, cols, dst, ldd);                     \
        return;                                                                           \
    }
#else
#define CC_TR_SIMD_CALL(SUF, V)
#endif
CC_TR_AUTO(float, f32, 16)
CC_TR_AUTO(double, f64, 8)
#undef CC_TR_AUTO
#undef CC_TR_SIMD_CALL

/* 1 when the AVX-512 blocks are in use. */
static inline int cconv_transpose_simd_active(void) { return cconv_transpose_simd; }

/* Select the transpose path: 1 = AVX-512 blocks where supported, 0 = the portable loop.
 * Returns the path now in use. */
static inline int cconv_transpose_select(int simd) {
    cconv_transpose_simd = simd && cconv_transpose_simd_supported();
    return cconv_transpose_simd;
}
#endif
