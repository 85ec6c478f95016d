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
#endif
