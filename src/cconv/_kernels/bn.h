/* Batch-norm row kernels. The training forward keeps its input, not the normalised
 * xhat (one activation-sized array less per layer, and its stores: they were most of a
 * DRAM-bound forward); the backward kernels recompute xhat = (x - m) * ic in T, rounded
 * as the forward rounded it, so the results are the same bits. Sums run in float64 over 8 independent lanes (then a fixed
 * pairwise fold), so the compiler vectorises them and the result depends only on the
 * row length, never on threads. Channels-first rows: one (n, c) plane of B elements.
 * Channels-last rows: one pixel of C channels, accumulated into per-channel partials. */
#ifndef CCONV_BN_H
#define CCONV_BN_H
#include <stdint.h>

#define CC_FOLD8(s) ((((s)[0] + (s)[1]) + ((s)[2] + (s)[3])) + (((s)[4] + (s)[5]) + ((s)[6] + (s)[7])))

#define CC_BN_DEFINE(T, SUF)                                                              \
/* sum x[i] */                                                                            \
static inline double cconv_bn_sum_##SUF(const T *restrict x, int64_t n) {                 \
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t = 0;                                        \
    int64_t i = 0;                                                                        \
    for (; i + 8 <= n; i += 8)                                                            \
        for (int l = 0; l < 8; l++) s[l] += (double)x[i + l];                             \
    for (; i < n; i++) t += (double)x[i];                                                 \
    return CC_FOLD8(s) + t;                                                               \
}                                                                                         \
/* sum (x[i] - m)^2 */                                                                    \
static inline double cconv_bn_sqdev_##SUF(const T *restrict x, int64_t n, double m) {     \
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t = 0, d;                                     \
    int64_t i = 0;                                                                        \
    for (; i + 8 <= n; i += 8)                                                            \
        for (int l = 0; l < 8; l++) {                                                     \
            double e = (double)x[i + l] - m;                                              \
            s[l] += e * e;                                                                \
        }                                                                                 \
    for (; i < n; i++) { d = (double)x[i] - m; t += d * d; }                              \
    return CC_FOLD8(s) + t;                                                               \
}                                                                                         \
/* out[0] += sum g[i], out[1] += sum g[i] * xhat[i], xhat = (x - m) * ic recomputed in T  \
 * exactly as cconv_bn_norm rounds it (the forward keeps x, not xhat) */                  \
static inline void cconv_bn_dot_##SUF(const T *restrict g, const T *restrict x,          \
                                      int64_t n, T m, T ic, double *restrict out) {       \
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, p[8] = {0, 0, 0, 0, 0, 0, 0, 0};              \
    double ts = 0, tp = 0;                                                                \
    int64_t i = 0;                                                                        \
    for (; i + 8 <= n; i += 8)                                                            \
        for (int l = 0; l < 8; l++) {                                                     \
            double gv = (double)g[i + l];                                                 \
            T h = (x[i + l] - m) * ic;                                                    \
            s[l] += gv;                                                                   \
            p[l] += gv * (double)h;                                                       \
        }                                                                                 \
    for (; i < n; i++) {                                                                  \
        T h = (x[i] - m) * ic;                                                            \
        ts += (double)g[i];                                                               \
        tp += (double)g[i] * (double)h;                                                   \
    }                                                                                     \
    out[0] += CC_FOLD8(s) + ts;                                                           \
    out[1] += CC_FOLD8(p) + tp;                                                           \
}                                                                                         \
/* y = xhat * gc + bc, xhat = (x - m) * ic (rounded to T; not stored) */                  \
static inline void cconv_bn_norm_##SUF(const T *restrict x, int64_t n, T m, T ic, T gc,   \
                                       T bc, T *restrict y) {                             \
    for (int64_t i = 0; i < n; i++) {                                                     \
        T v = (x[i] - m) * ic;                                                            \
        y[i] = v * gc + bc;                                                               \
    }                                                                                     \
}                                                                                         \
/* dx = (g - xhat * dg - db) * sc, xhat recomputed as in cconv_bn_norm */                 \
static inline void cconv_bn_dx_##SUF(const T *restrict g, const T *restrict x, int64_t n, \
                                     T m, T ic, T dg, T db, T sc, T *restrict dx) {       \
    for (int64_t i = 0; i < n; i++) {                                                     \
        T v = (x[i] - m) * ic;                                                            \
        dx[i] = (g[i] - v * dg - db) * sc;                                                \
    }                                                                                     \
}                                                                                         \
/* channels-last: part[c] += x[c] over `rows` pixels of C channels */                     \
static inline void cconv_bn_sum_cl_##SUF(const T *restrict x, int64_t rows, int64_t C,    \
                                         double *restrict part) {                         \
    for (int64_t r = 0; r < rows; r++, x += C)                                            \
        for (int64_t c = 0; c < C; c++) part[c] += (double)x[c];                          \
}                                                                                         \
static inline void cconv_bn_sqdev_cl_##SUF(const T *restrict x, int64_t rows, int64_t C,  \
                                           const double *restrict m,                      \
                                           double *restrict part) {                       \
    for (int64_t r = 0; r < rows; r++, x += C)                                            \
        for (int64_t c = 0; c < C; c++) {                                                 \
            double e = (double)x[c] - m[c];                                               \
            part[c] += e * e;                                                             \
        }                                                                                 \
}                                                                                         \
static inline void cconv_bn_dot_cl_##SUF(const T *restrict g, const T *restrict x,        \
                                         int64_t rows, int64_t C, const T *restrict m,    \
                                         const T *restrict ic, double *restrict ps,       \
                                         double *restrict pp) {                           \
    for (int64_t r = 0; r < rows; r++, g += C, x += C)                                    \
        for (int64_t c = 0; c < C; c++) {                                                 \
            double gv = (double)g[c];                                                     \
            T h = (x[c] - m[c]) * ic[c];                                                  \
            ps[c] += gv;                                                                  \
            pp[c] += gv * (double)h;                                                      \
        }                                                                                 \
}                                                                                         \
/* channels-last normalisation; m, ic, gc, bc per channel */                              \
static inline void cconv_bn_norm_cl_##SUF(const T *restrict x, int64_t rows, int64_t C,   \
                                          const T *restrict m, const T *restrict ic,      \
                                          const T *restrict gc, const T *restrict bc,     \
                                          T *restrict y) {                                \
    for (int64_t r = 0; r < rows; r++, x += C, y += C)                                    \
        for (int64_t c = 0; c < C; c++) {                                                 \
            T v = (x[c] - m[c]) * ic[c];                                                  \
            y[c] = v * gc[c] + bc[c];                                                     \
        }                                                                                 \
}                                                                                         \
static inline void cconv_bn_dx_cl_##SUF(const T *restrict g, const T *restrict x,         \
                                        int64_t rows, int64_t C, const T *restrict m,     \
                                        const T *restrict ic, const T *restrict dg,       \
                                        const T *restrict db, const T *restrict sc,       \
                                        T *restrict dx) {                                 \
    for (int64_t r = 0; r < rows; r++, g += C, x += C, dx += C)                           \
        for (int64_t c = 0; c < C; c++) {                                                 \
            T v = (x[c] - m[c]) * ic[c];                                                  \
            dx[c] = (g[c] - v * dg[c] - db[c]) * sc[c];                                   \
        }                                                                                 \
}
#define CC_BN_AFFINE_DEFINE(T, SUF)                                                       \
/* eval mode: y = x * a + b (a = gamma / sqrt(var + eps), b = beta - mean * a) */          \
static inline void cconv_bn_affine_##SUF(const T *restrict x, int64_t n, T a, T b,        \
                                         T *restrict y) {                                 \
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * a + b;                                  \
}                                                                                         \
static inline void cconv_bn_affine_cl_##SUF(const T *restrict x, int64_t rows, int64_t C, \
                                            const T *restrict a, const T *restrict b,     \
                                            T *restrict y) {                              \
    for (int64_t r = 0; r < rows; r++, x += C, y += C)                                    \
        for (int64_t c = 0; c < C; c++) y[c] = x[c] * a[c] + b[c];                        \
}
CC_BN_AFFINE_DEFINE(float, f32)
CC_BN_AFFINE_DEFINE(double, f64)
#undef CC_BN_AFFINE_DEFINE
CC_BN_DEFINE(float, f32)
CC_BN_DEFINE(double, f64)
#undef CC_BN_DEFINE
#undef CC_FOLD8
#endif
