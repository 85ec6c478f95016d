/* cconv Winograd transforms (see winograd.h for the contract).
 *
 * Each transform is written once as an always-inline body over a lane loop; the body
 * is instantiated for the portable build (SSE2 on x86-64), AVX2 and AVX-512 (target
 * attributes, as in gemm.c) and the active path of gemm.c picks one at run time. The
 * arithmetic is plain + and * (no FMA: -ffp-contract=off), so all paths agree bitwise.
 *
 * F(4,3): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
 *                0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *         G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *         A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * F(2,3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *         G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *         A^T = [1 1 1 0; 0 1 -1 -1]
 */
#include <stddef.h>
#include <string.h>
#include "winograd.h"

enum { KL = 16 }; /* lanes per vector block of the kernel transform */

#define WI_INLINE static inline __attribute__((always_inline))
#define TARGET_AVX512 __attribute__((target("avx512f,avx512dq,fma,prefer-vector-width=512")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))

/* ---------------------------------------------------------------- 1-D building blocks */

/* B^T d for F(4,3), 6 -> 6 */
#define IN4(T, s, o)                                                                    \
    do {                                                                                \
        const T s0_ = s[0], s1_ = s[1], s2_ = s[2], s3_ = s[3], s4_ = s[4], s5_ = s[5];       \
        const T p_ = s4_ - (T)4 * s2_, q_ = s3_ - (T)4 * s1_;                                 \
        const T r_ = s4_ - s2_, w_ = (T)2 * (s3_ - s1_);                                     \
        o[0] = (T)4 * s0_ - (T)5 * s2_ + s4_;                                              \
        o[1] = p_ + q_;                                                                   \
        o[2] = p_ - q_;                                                                   \
        o[3] = r_ + w_;                                                                   \
        o[4] = r_ - w_;                                                                   \
        o[5] = (T)4 * s1_ - (T)5 * s3_ + s5_;                                              \
    } while (0)

/* A^T m for F(4,3), 6 -> 4 */
#define OUT4(T, s, o)                                                                   \
    do {                                                                                \
        const T a_ = s[1] + s[2], b_ = s[1] - s[2], c_ = s[3] + s[4], e_ = s[3] - s[4];     \
        o[0] = s[0] + a_ + c_;                                                            \
        o[1] = b_ + (T)2 * e_;                                                            \
        o[2] = a_ + (T)4 * c_;                                                            \
        o[3] = b_ + (T)8 * e_ + s[5];                                                     \
    } while (0)

/* G g for F(4,3), 3 -> 6 (VT: the scalar or vector type computed in, ST its scalar type) */
#define KER4(VT, ST, s, o)                                                              \
    do {                                                                                \
        const VT g0 = s[0], g1 = s[1], g2 = s[2];                                       \
        const VT e0 = g0 * (ST)(1.0 / 24.0) + g2 * (ST)(1.0 / 6.0);                     \
        const VT e1 = g1 * (ST)(1.0 / 12.0);                                            \
        o[0] = g0 * (ST)0.25;                                                           \
        o[1] = (g0 + g1 + g2) * (ST)(-1.0 / 6.0);                                       \
        o[2] = (g0 - g1 + g2) * (ST)(-1.0 / 6.0);                                       \
        o[3] = e0 + e1;                                                                 \
        o[4] = e0 - e1;                                                                 \
        o[5] = g2;                                                                      \
    } while (0)

/* F(2,3) */
#define IN2(T, s, o)                                                                    \
    do {                                                                                \
        o[0] = s[0] - s[2];                                                             \
        o[1] = s[1] + s[2];                                                             \
        o[2] = s[2] - s[1];                                                             \
        o[3] = s[1] - s[3];                                                             \
    } while (0)
#define OUT2(T, s, o)                                                                   \
    do {                                                                                \
        o[0] = s[0] + s[1] + s[2];                                                      \
        o[1] = s[1] - s[2] - s[3];                                                      \
    } while (0)
#define KER2(VT, ST, s, o)                                                              \
    do {                                                                                \
        const VT g0 = s[0], g1 = s[1], g2 = s[2];                                       \
        o[0] = g0;                                                                      \
        o[1] = (g0 + g1 + g2) * (ST)0.5;                                                \
        o[2] = (g0 - g1 + g2) * (ST)0.5;                                                \
        o[3] = g2;                                                                      \
    } while (0)

/* ---------------------------------------------------------------- bodies
 * A = alpha (6 or 4), M = m (4 or 2). IN/OUT/KER: the 1-D blocks above.
 * Lanes go in chunks of LB through a small scratch t (in L1): every step is a 1-D
 * transform applied to LB lanes at once, a loop that gcc vectorises. */

#define DEFINE_VEC(SUF, T, A, M, IN, OUT)                                               \
    WI_INLINE void inv_##SUF(const T *restrict s, cc_idx ss, T *restrict o, cc_idx os,  \
                             cc_idx n)                                                  \
    {                                                                                   \
        for (cc_idx l = 0; l < n; l++) {                                                \
            T c[A], r[A];                                                               \
            _Pragma("GCC unroll 8") for (int k = 0; k < A; k++) c[k] = s[k * ss + l];   \
            IN(T, c, r);                                                                \
            _Pragma("GCC unroll 8") for (int k = 0; k < A; k++) o[k * os + l] = r[k];   \
        }                                                                               \
    }                                                                                   \
    WI_INLINE void outv_##SUF(const T *restrict s, cc_idx ss, T *restrict o, cc_idx os, \
                              cc_idx n)                                                 \
    {                                                                                   \
        for (cc_idx l = 0; l < n; l++) {                                                \
            T c[A], r[M];                                                               \
            _Pragma("GCC unroll 8") for (int k = 0; k < A; k++) c[k] = s[k * ss + l];   \
            OUT(T, c, r);                                                               \
            _Pragma("GCC unroll 8") for (int k = 0; k < M; k++) o[k * os + l] = r[k];   \
        }                                                                               \
    }                                                                                   \
    WI_INLINE void outbv_##SUF(const T *restrict s, cc_idx ss, const T *restrict b,     \
                               T *restrict o, cc_idx os, cc_idx n)                      \
    {                                                                                   \
        for (cc_idx l = 0; l < n; l++) {                                                \
            T c[A], r[M];                                                               \
            _Pragma("GCC unroll 8") for (int k = 0; k < A; k++) c[k] = s[k * ss + l];   \
            OUT(T, c, r);                                                               \
            _Pragma("GCC unroll 8") for (int k = 0; k < M; k++) o[k * os + l] = r[k] + b[l]; \
        }                                                                               \
    }

#define DEFINE_BODIES(SUF, T, A, M, IN, OUT, KER)                                       \
    DEFINE_VEC(SUF, T, A, M, IN, OUT)                                                   \
    WI_INLINE void in2d_##SUF(const T *restrict d, cc_idx rs, cc_idx cs, T *restrict v, \
                              cc_idx ldv, cc_idx L)                                     \
    {                                                                                   \
        enum { LB = 128 / sizeof(T) };                                                  \
        T t[A * A * LB] __attribute__((aligned(64)));                                   \
        for (cc_idx l0 = 0; l0 < L; l0 += LB) {                                         \
            const cc_idx n = L - l0 < LB ? L - l0 : LB;                                 \
            for (int j = 0; j < A; j++) /* columns: t[i][j] = (B^T d)[i][j] */          \
                inv_##SUF(d + j * cs + l0, rs, t + j * LB, A * LB, n);                  \
            for (int i = 0; i < A; i++) /* rows: v[i][j] = (t B)[i][j] */               \
                inv_##SUF(t + i * A * LB, LB, v + i * A * ldv + l0, ldv, n);            \
        }                                                                               \
    }                                                                                   \
    WI_INLINE void in1d_##SUF(const T *restrict d, cc_idx cs, T *restrict v,            \
                              cc_idx ldv, cc_idx L)                                     \
    {                                                                                   \
        inv_##SUF(d, cs, v, ldv, L);                                                    \
    }                                                                                   \
    WI_INLINE void out2d_##SUF(const T *restrict mm, cc_idx ldm, const T *restrict bias, \
                               T *restrict y, cc_idx rs, cc_idx cs, cc_idx L)           \
    {                                                                                   \
        enum { LB = 128 / sizeof(T) };                                                  \
        T t[M * A * LB] __attribute__((aligned(64)));                                   \
        for (cc_idx l0 = 0; l0 < L; l0 += LB) {                                         \
            const cc_idx n = L - l0 < LB ? L - l0 : LB;                                 \
            for (int j = 0; j < A; j++) /* columns: t[i][j] = (A^T m)[i][j] */          \
                outv_##SUF(mm + j * ldm + l0, A * ldm, t + j * LB, A * LB, n);          \
            for (int i = 0; i < M; i++) /* rows: y[i][j] = (t A)[i][j] + bias */        \
                outbv_##SUF(t + i * A * LB, LB, bias + l0, y + i * rs + l0, cs, n);     \
        }                                                                               \
    }                                                                                   \
    WI_INLINE void out1d_##SUF(const T *restrict mm, cc_idx ldm, const T *restrict bias, \
                               T *restrict y, cc_idx cs, cc_idx L)                      \
    {                                                                                   \
        outbv_##SUF(mm, ldm, bias, y, cs, L);                                           \
    }                                                                                   \
    /* G g G^T of KL contiguous lanes at once (GCC vector types: lowered to the widest   \
     * registers the target allows, every temporary in registers: measured 2-3x the     \
     * speed of staging the taps through L1 scratch). */                                \
    WI_INLINE void ker2d_vec_##SUF(const T *restrict g, cc_idx rs, cc_idx cs,           \
                                   T *restrict u, cc_idx ldu)                           \
    {                                                                                   \
        typedef T vt __attribute__((vector_size(KL * sizeof(T))));                      \
        vt a[9], t[A][3], r[A];                                                         \
        for (int k = 0; k < 9; k++)                                                     \
            memcpy(&a[k], g + (k / 3) * rs + (k % 3) * cs, sizeof a[k]);                \
        for (int j = 0; j < 3; j++) {                                                   \
            const vt c3[3] = {a[j], a[3 + j], a[6 + j]};                                \
            KER(vt, T, c3, r);                                                          \
            for (int i = 0; i < A; i++) t[i][j] = r[i];                                 \
        }                                                                               \
        for (int i = 0; i < A; i++) {                                                   \
            KER(vt, T, t[i], r);                                                        \
            for (int j = 0; j < A; j++)                                                 \
                memcpy(u + (i * A + j) * ldu, &r[j], sizeof r[j]);                      \
        }                                                                               \
    }                                                                                   \
    /* Partial or strided lane blocks go through zero-padded KL-lane copies, so every  \
     * lane runs the same vector operations (same bits for any L and stride). */        \
    WI_INLINE void ker2d_##SUF(const T *restrict g, cc_idx rs, cc_idx cs, cc_idx ls,    \
                               T *restrict u, cc_idx ldu, cc_idx lu, cc_idx L)          \
    {                                                                                   \
        for (cc_idx l0 = 0; l0 < L; l0 += KL) {                                         \
            const cc_idx n = L - l0 < KL ? L - l0 : KL;                                 \
            if (n == KL && ls == 1 && lu == 1) {                                        \
                ker2d_vec_##SUF(g + l0, rs, cs, u + l0, ldu);                           \
                continue;                                                               \
            }                                                                           \
            T gb[9 * KL] = {0}, ub[A * A * KL];                                         \
            for (int k = 0; k < 9; k++)                                                 \
                for (cc_idx l = 0; l < n; l++)                                          \
                    gb[k * KL + l] = g[(k / 3) * rs + (k % 3) * cs + (l0 + l) * ls];    \
            ker2d_vec_##SUF(gb, 3 * KL, KL, ub, KL);                                    \
            for (int t = 0; t < A * A; t++)                                             \
                for (cc_idx l = 0; l < n; l++) u[t * ldu + (l0 + l) * lu] = ub[t * KL + l]; \
        }                                                                               \
    }                                                                                   \
    WI_INLINE void ker1d_##SUF(const T *g, cc_idx cs, cc_idx ls, T *u, cc_idx ldu,      \
                            cc_idx lu, cc_idx L)                                        \
    {                                                                                   \
        for (cc_idx l = 0; l < L; l++) {                                                \
            T col[3], o[A];                                                             \
            for (int j = 0; j < 3; j++) col[j] = g[j * cs + l * ls];                    \
            KER(T, T, col, o);                                                          \
            for (int j = 0; j < A; j++) u[j * ldu + l * lu] = o[j];                     \
        }                                                                               \
    }

DEFINE_BODIES(f4_f32, float, 6, 4, IN4, OUT4, KER4)
DEFINE_BODIES(f4_f64, double, 6, 4, IN4, OUT4, KER4)
DEFINE_BODIES(f2_f32, float, 4, 2, IN2, OUT2, KER2)
DEFINE_BODIES(f2_f64, double, 4, 2, IN2, OUT2, KER2)

/* ---------------------------------------------------------------- ISA instances */

#define DEFINE_ISA(ISA, ATTR, SUF, T)                                                   \
    ATTR static void in2d_##SUF##_##ISA(const T *d, cc_idx rs, cc_idx cs, T *v,         \
                                        cc_idx ldv, cc_idx L)                           \
    { in2d_##SUF(d, rs, cs, v, ldv, L); }                                               \
    ATTR static void in1d_##SUF##_##ISA(const T *d, cc_idx cs, T *v, cc_idx ldv,        \
                                        cc_idx L)                                       \
    { in1d_##SUF(d, cs, v, ldv, L); }                                                   \
    ATTR static void out2d_##SUF##_##ISA(const T *mm, cc_idx ldm, const T *bias, T *y,  \
                                         cc_idx rs, cc_idx cs, cc_idx L)                \
    { out2d_##SUF(mm, ldm, bias, y, rs, cs, L); }                                       \
    ATTR static void out1d_##SUF##_##ISA(const T *mm, cc_idx ldm, const T *bias, T *y,  \
                                         cc_idx cs, cc_idx L)                           \
    { out1d_##SUF(mm, ldm, bias, y, cs, L); }                                       \
    ATTR static void ker2d_##SUF##_##ISA(const T *g, cc_idx rs, cc_idx cs, cc_idx ls,   \
                                         T *u, cc_idx ldu, cc_idx lu, cc_idx L)         \
    { ker2d_##SUF(g, rs, cs, ls, u, ldu, lu, L); }                                      \
    ATTR static void ker1d_##SUF##_##ISA(const T *g, cc_idx cs, cc_idx ls, T *u,        \
                                         cc_idx ldu, cc_idx lu, cc_idx L)               \
    { ker1d_##SUF(g, cs, ls, u, ldu, lu, L); }

#define DEFINE_ALL_ISA(ISA, ATTR)                                                       \
    DEFINE_ISA(ISA, ATTR, f4_f32, float)                                                \
    DEFINE_ISA(ISA, ATTR, f4_f64, double)                                               \
    DEFINE_ISA(ISA, ATTR, f2_f32, float)                                                \
    DEFINE_ISA(ISA, ATTR, f2_f64, double)

#define NOATTR
DEFINE_ALL_ISA(gen, NOATTR)
#if defined(__x86_64__) || defined(_M_X64)
DEFINE_ALL_ISA(avx2, TARGET_AVX2)
DEFINE_ALL_ISA(avx512, TARGET_AVX512)
#endif

/* ---------------------------------------------------------------- lane staging
 * dst[c*ldd + r] = src[r*lds + c] (r < rows, c < cols): channels-first weight taps
 * turned lanes-innermost for the kernel transform (and the layout transposes of the
 * modules that embed this file): simd_transpose.h's register blocks, the edges element by
 * element; a copy, so every path gives the same bits. */
#define LANES_SCALAR(T, r0, r1, c0, c1)                                                 \
    for (cc_idx r = (r0); r < (r1); r++)                                                \
        for (cc_idx c = (c0); c < (c1); c++) dst[c * ldd + r] = src[r * lds + c]
static void lanes_f32_gen(const float *restrict src, cc_idx lds, cc_idx rows, cc_idx cols,
                          float *restrict dst, cc_idx ldd)
{
    LANES_SCALAR(float, 0, rows, 0, cols);
}
static void lanes_f64_gen(const double *restrict src, cc_idx lds, cc_idx rows, cc_idx cols,
                          double *restrict dst, cc_idx ldd)
{
    LANES_SCALAR(double, 0, rows, 0, cols);
}
#if defined(__x86_64__) || defined(_M_X64)
#include "simd_transpose.h"
CC_DEFINE_TRANSPOSE_BLOCKS(lanes_f32_avx512, TARGET_AVX512, float, 16, __m512,
                           _mm512_loadu_ps, _mm512_storeu_ps, cc_tr16_ps)
CC_DEFINE_TRANSPOSE_BLOCKS(lanes_f64_avx512, TARGET_AVX512, double, 8, __m512d,
                           _mm512_loadu_pd, _mm512_storeu_pd, cc_tr8_pd)
CC_DEFINE_TRANSPOSE_BLOCKS(lanes_f32_avx2, TARGET_AVX2, float, 8, __m256, _mm256_loadu_ps,
                           _mm256_storeu_ps, cc_tr8_ps)
CC_DEFINE_TRANSPOSE_BLOCKS(lanes_f64_avx2, TARGET_AVX2, double, 4, __m256d,
                           _mm256_loadu_pd, _mm256_storeu_pd, cc_tr4_pd)
#endif

void cconv_wino_lanes_f32(const float *src, cc_idx lds, cc_idx rows, cc_idx cols, float *dst,
                          cc_idx ldd)
{ CC_ISA_PICK(lanes_f32, (src, lds, rows, cols, dst, ldd)); }
void cconv_wino_lanes_f64(const double *src, cc_idx lds, cc_idx rows, cc_idx cols,
                          double *dst, cc_idx ldd)
{ CC_ISA_PICK(lanes_f64, (src, lds, rows, cols, dst, ldd)); }

/* ---------------------------------------------------------------- public entry points */

#define DEFINE_API(FN, SUF, T, TS)                                                      \
    void cconv_winograd_##FN##x3_input_transform_##TS(const T *d, cc_idx rs, cc_idx cs, \
                                                      T *v, cc_idx ldv, cc_idx L)       \
    { CC_ISA_PICK(in2d_##SUF, (d, rs, cs, v, ldv, L)); }                                       \
    void cconv_winograd_##FN##x3_output_transform_##TS(const T *mm, cc_idx ldm,         \
                                                       const T *bias, T *y, cc_idx rs,  \
                                                       cc_idx cs, cc_idx L)             \
    { CC_ISA_PICK(out2d_##SUF, (mm, ldm, bias, y, rs, cs, L)); }                               \
    void cconv_winograd_##FN##x3_kernel_transform_##TS(const T *g, cc_idx rs, cc_idx cs, \
                                                       cc_idx ls, T *u, cc_idx ldu,     \
                                                       cc_idx lu, cc_idx L)             \
    { CC_ISA_PICK(ker2d_##SUF, (g, rs, cs, ls, u, ldu, lu, L)); }                              \
    static void ker1d_any_##SUF(const T *g, cc_idx cs, cc_idx ls, T *u, cc_idx ldu,     \
                                cc_idx lu, cc_idx L)                                    \
    { CC_ISA_PICK(ker1d_##SUF, (g, cs, ls, u, ldu, lu, L)); }                                  \
    static void in1d_any_##SUF(const T *d, cc_idx cs, T *v, cc_idx ldv, cc_idx L)       \
    { CC_ISA_PICK(in1d_##SUF, (d, cs, v, ldv, L)); }                                           \
    static void out1d_any_##SUF(const T *mm, cc_idx ldm, const T *bias, T *y,           \
                                cc_idx cs, cc_idx L)                                    \
    { CC_ISA_PICK(out1d_##SUF, (mm, ldm, bias, y, cs, L)); }

DEFINE_API(f4, f4_f32, float, f32)
DEFINE_API(f4, f4_f64, double, f64)
DEFINE_API(f2, f2_f32, float, f32)
DEFINE_API(f2, f2_f64, double, f64)

#define DEFINE_DISPATCH(TS, T)                                                          \
    void cconv_wino_input_##TS(int m, int nd, const T *d, cc_idx rs, cc_idx cs, T *v,   \
                               cc_idx ldv, cc_idx L)                                    \
    {                                                                                   \
        if (nd == 1) {                                                                  \
            if (m == 4) in1d_any_f4_##TS(d, cs, v, ldv, L);                             \
            else in1d_any_f2_##TS(d, cs, v, ldv, L);                                    \
        } else if (m == 4) {                                                            \
            cconv_winograd_f4x3_input_transform_##TS(d, rs, cs, v, ldv, L);             \
        } else {                                                                        \
            cconv_winograd_f2x3_input_transform_##TS(d, rs, cs, v, ldv, L);             \
        }                                                                               \
    }                                                                                   \
    void cconv_wino_output_##TS(int m, int nd, const T *mm, cc_idx ldm, const T *bias,  \
                                T *y, cc_idx rs, cc_idx cs, cc_idx L)                   \
    {                                                                                   \
        if (nd == 1) {                                                                  \
            if (m == 4) out1d_any_f4_##TS(mm, ldm, bias, y, cs, L);                     \
            else out1d_any_f2_##TS(mm, ldm, bias, y, cs, L);                            \
        } else if (m == 4) {                                                            \
            cconv_winograd_f4x3_output_transform_##TS(mm, ldm, bias, y, rs, cs, L);     \
        } else {                                                                        \
            cconv_winograd_f2x3_output_transform_##TS(mm, ldm, bias, y, rs, cs, L);     \
        }                                                                               \
    }                                                                                   \
    void cconv_wino_kernel_##TS(int m, int nd, const T *g, cc_idx rs, cc_idx cs,        \
                                cc_idx ls, T *u, cc_idx ldu, cc_idx lu, cc_idx L)       \
    {                                                                                   \
        if (nd == 1) {                                                                  \
            if (m == 4) ker1d_any_f4_##TS(g, cs, ls, u, ldu, lu, L);                    \
            else ker1d_any_f2_##TS(g, cs, ls, u, ldu, lu, L);                           \
        } else if (m == 4) {                                                            \
            cconv_winograd_f4x3_kernel_transform_##TS(g, rs, cs, ls, u, ldu, lu, L);    \
        } else {                                                                        \
            cconv_winograd_f2x3_kernel_transform_##TS(g, rs, cs, ls, u, ldu, lu, L);    \
        }                                                                               \
    }

DEFINE_DISPATCH(f32, float)
DEFINE_DISPATCH(f64, double)
