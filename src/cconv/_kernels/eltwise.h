/* Element-wise loops written so the compiler vectorises them (restrict pointers, a
 * select the compiler turns into compare + mask: exact for NaN and Inf). */
#ifndef CCONV_ELTWISE_H
#define CCONV_ELTWISE_H
#include <stdint.h>

/* dx[i] = y[i] > 0 ? g[i] : 0 */
static inline void cconv_relu_backward_f32(const float *restrict g, const float *restrict y,
                                           float *restrict dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i]; /* loaded unconditionally so the select needs no branch */
        dx[i] = y[i] > 0.0f ? gi : 0.0f;
    }
}
static inline void cconv_relu_backward_f64(const double *restrict g, const double *restrict y,
                                           double *restrict dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i];
        dx[i] = y[i] > 0.0 ? gi : 0.0;
    }
}

/* 2x2 max pooling, stride 2, no padding, one (H, W) plane -> (OH, OW) with 2*OH <= H,
 * 2*OW <= W. Taps in the order (0,0), (0,1), (1,0), (1,1); a later tap wins if it is
 * greater or NaN (the general kernel's rule: first maximum, last NaN). arg: the
 * winning input position h*W + w. Branch-free selects. */
#define CC_POOL_DEFINE(T, SUF)                                                            \
static inline void cconv_maxpool2x2_plane_##SUF(const T *restrict x, int64_t W,          \
                                                 T *restrict y, int32_t *restrict arg,    \
                                                 int64_t OH, int64_t OW) {                \
    for (int64_t oh = 0; oh < OH; oh++) {                                                 \
        const T *r0 = x + 2 * oh * W, *r1 = r0 + W;                                       \
        T *yo = y + oh * OW;                                                              \
        int32_t *ao = arg + oh * OW;                                                      \
        const int32_t base = (int32_t)(2 * oh * W);                                       \
        for (int64_t ow = 0; ow < OW; ow++) {                                             \
            T best = r0[2 * ow], v;                                                       \
            int32_t k = 0, m;                                                             \
            v = r0[2 * ow + 1]; m = (v > best) | (v != v);                                \
            best = m ? v : best; k = m ? 1 : k;                                           \
            v = r1[2 * ow]; m = (v > best) | (v != v);                                    \
            best = m ? v : best; k = m ? (int32_t)W : k;                                  \
            v = r1[2 * ow + 1]; m = (v > best) | (v != v);                                \
            best = m ? v : best; k = m ? (int32_t)W + 1 : k;                              \
            yo[ow] = best;                                                                \
            ao[ow] = base + (int32_t)(2 * ow) + k;                                        \
        }                                                                                 \
    }                                                                                     \
}
CC_POOL_DEFINE(float, f32)
CC_POOL_DEFINE(double, f64)
#undef CC_POOL_DEFINE
/* 1 when none of x[0:n] is NaN or Inf (an exponent field of all ones): an integer max
 * over the magnitude bits, which the compiler vectorises (memcpy: no aliasing games). */
#define CC_ALL_FINITE_DEFINE(T, U, SUF, MAG, INF)                                          \
static inline int cconv_all_finite_##SUF(const T *restrict x, int64_t n) {                \
    U m = 0;                                                                              \
    for (int64_t i = 0; i < n; i++) {                                                     \
        U u;                                                                              \
        __builtin_memcpy(&u, x + i, sizeof u);                                            \
        u &= MAG;                                                                         \
        m = u > m ? u : m;                                                                \
    }                                                                                     \
    return m < INF;                                                                       \
}
CC_ALL_FINITE_DEFINE(float, uint32_t, f32, 0x7fffffffu, 0x7f800000u)
CC_ALL_FINITE_DEFINE(double, uint64_t, f64, 0x7fffffffffffffffull, 0x7ff0000000000000ull)
#undef CC_ALL_FINITE_DEFINE
#endif
