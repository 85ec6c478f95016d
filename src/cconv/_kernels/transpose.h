/* Layout transposes between channels-first and channels-last: per image, a (rows x cols)
 * matrix to (cols x rows): dst[c * ldd + r] = src[r * lds + c], in 16 x 16 blocks (both sides stay in L1 while a block is
 * moved). The inner loop reads 16 rows and writes one contiguous output row, which
 * compilers vectorise as gathers-free strided loads + one wide store. */
#ifndef CCONV_TRANSPOSE_H
#define CCONV_TRANSPOSE_H
#include <stdint.h>

#define CC_TR_DEFINE(T, SUF)                                                              \
static inline void cconv_transpose_##SUF(const T *restrict src, int64_t lds,              \
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
#endif
