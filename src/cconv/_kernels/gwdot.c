/* gwdot: instantiations of gwdot_impl.h per ISA path and dtype, and the runtime
 * dispatch (cconv_isa_active() from gemm.c, compiled into the same module).
 * See gwdot.h for the contract. Every path computes 64-byte logical vectors (16 float32
 * or 8 float64 lanes: one zmm, two ymm, or an array in portable C) with the same
 * fused multiply-adds and the same lane reduction, so all paths agree bitwise.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gwdot.h"
#include "dwgw.h"
#include "dw_prefetch.h"

/* dwgw (dwgw.h) shares the logical vectors: dwgw_impl.h is included before each
 * gwdot_impl.h, with DWGW_TILES listing the tap-tile sizes 1 .. DWGW_TGMAX */
#define DWGW_T4(X) X(1) X(2) X(3) X(4)
#define DWGW_T5(X) DWGW_T4(X) X(5)
#define DWGW_T25(X)                                                                        \
    DWGW_T5(X) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18)  \
    X(19) X(20) X(21) X(22) X(23) X(24) X(25)

#if defined(__x86_64__) || defined(_M_X64)
#define CCONV_GWD_X86 1
#include <immintrin.h>
#else
#define CCONV_GWD_X86 0
#endif

#define GWD_R(RR)                                                                          \
    GWD_CASE(RR, 1) GWD_CASE(RR, 2) GWD_CASE(RR, 3) GWD_CASE(RR, 4) GWD_CASE(RR, 5)         \
    GWD_CASE(RR, 6)
#define GWD_R9(RR) GWD_R(RR) GWD_CASE(RR, 7) GWD_CASE(RR, 8) GWD_CASE(RR, 9)

/* ---------------------------------------------------------------- portable C */
#define GWD_TARGET
#define GWD_RA 2
#define GWD_NXA 4
#define GWD_RB 2
#define GWD_NXB 4
#define GWD_RMAX 2
#define GWD_NXMAX 4
#define GWD_SWITCH_CASES                                                                   \
    GWD_CASE(1, 1) GWD_CASE(1, 2) GWD_CASE(1, 3) GWD_CASE(1, 4)                            \
    GWD_CASE(2, 1) GWD_CASE(2, 2) GWD_CASE(2, 3) GWD_CASE(2, 4)
#define DWGW_TGMAX 4
#define DWGW_TILES DWGW_T4

#define GWD_GENERIC(TT, NL, SUF, FMAF)                                                     \
    typedef struct { TT v[NL]; } lv_##SUF;                                                 \
    static inline lv_##SUF lv_zero_##SUF(void) {                                           \
        lv_##SUF r;                                                                        \
        for (int l = 0; l < NL; l++) r.v[l] = (TT)0;                                       \
        return r;                                                                          \
    }                                                                                      \
    static inline lv_##SUF lv_loadm_##SUF(const TT *p, int n) {                            \
        lv_##SUF r;                                                                        \
        for (int l = 0; l < NL; l++) r.v[l] = l < n ? p[l] : (TT)0;                        \
        return r;                                                                          \
    }                                                                                      \
    static inline lv_##SUF lv_fma_##SUF(lv_##SUF a, lv_##SUF b, lv_##SUF c) {              \
        for (int l = 0; l < NL; l++) c.v[l] = FMAF(a.v[l], b.v[l], c.v[l]);                \
        return c;                                                                          \
    }                                                                                      \
    static inline TT lv_hsum_##SUF(lv_##SUF a) {                                           \
        for (int h = NL / 2; h >= 1; h /= 2)                                               \
            for (int l = 0; l < h; l++) a.v[l] += a.v[l + h];                              \
        return a.v[0];                                                                     \
    }

GWD_GENERIC(float, 16, f32g, fmaf)
GWD_GENERIC(double, 8, f64g, fma)

#define T float
#define LV lv_f32g
#define LANES 16
#define SFX f32_generic
#define LV_ZERO() lv_zero_f32g()
#define LV_LOAD(p) lv_loadm_f32g((p), 16)
#define LV_STORE(p, vv) memcpy((p), (vv).v, sizeof(float) * 16)
#define LV_LOADM(p, n) lv_loadm_f32g((p), (n))
#define LV_FMA(a, b, c) lv_fma_f32g((a), (b), (c))
#define LV_HSUM(v) lv_hsum_f32g(v)
#include "dwgw_impl.h"
#include "gwdot_impl.h"

#define T double
#define LV lv_f64g
#define LANES 8
#define SFX f64_generic
#define LV_ZERO() lv_zero_f64g()
#define LV_LOAD(p) lv_loadm_f64g((p), 8)
#define LV_STORE(p, vv) memcpy((p), (vv).v, sizeof(double) * 8)
#define LV_LOADM(p, n) lv_loadm_f64g((p), (n))
#define LV_FMA(a, b, c) lv_fma_f64g((a), (b), (c))
#define LV_HSUM(v) lv_hsum_f64g(v)
#include "dwgw_impl.h"
#include "gwdot_impl.h"

#undef GWD_TARGET
#undef GWD_RA
#undef GWD_NXA
#undef GWD_RB
#undef GWD_NXB
#undef GWD_RMAX
#undef GWD_NXMAX
#undef GWD_SWITCH_CASES
#undef DWGW_TGMAX
#undef DWGW_TILES

#if CCONV_GWD_X86
/* 256-bit halving reductions (lanes l += l + h, h = 4, 2, 1 for float; 2, 1 for double),
 * shared by the AVX2 and AVX-512 paths. */
__attribute__((target("avx2,fma"))) static inline float gwd_hsum256_ps(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

__attribute__((target("avx2,fma"))) static inline double gwd_hsum256_pd(__m256d v)
{
    __m128d a = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    a = _mm_add_sd(a, _mm_unpackhi_pd(a, a));
    return _mm_cvtsd_f64(a);
}

/* ---------------------------------------------------------------- AVX2 + FMA */
static const int32_t gwd_mask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int64_t gwd_mask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

#define GWD_TARGET __attribute__((target("avx2,fma")))
/* a logical vector is two ymm: 1 x 6 and 2 x 3 tiles keep 12 in registers */
#define GWD_RA 1
#define GWD_NXA 6
#define GWD_RB 2
#define GWD_NXB 3
#define GWD_RMAX 2
#define GWD_NXMAX 6
#define GWD_SWITCH_CASES GWD_R(1) GWD_CASE(2, 1) GWD_CASE(2, 2) GWD_CASE(2, 3)
/* 5 taps = 10 ymm accumulators, beside two ymm of dY and two of X */
#define DWGW_TGMAX 5
#define DWGW_TILES DWGW_T5

/* One logical vector = two ymm (a: lanes 0 .. H-1, b: H .. 2H-1); the suffixes ps / pd
 * and mask tables make the float32 and float64 versions. Masked loads read nothing past
 * lane n (n in 1 .. 2H); lanes >= n are +0. */
#define GWD_AVX2_LV(TT, VT, SUF, IS, H, MASK)                                              \
    typedef struct { VT a, b; } lv_##SUF;                                                  \
    GWD_TARGET static inline lv_##SUF lv_zero_##SUF(void)                                  \
    {                                                                                      \
        lv_##SUF r = {_mm256_setzero_##IS(), _mm256_setzero_##IS()};                       \
        return r;                                                                          \
    }                                                                                      \
    GWD_TARGET static inline lv_##SUF lv_load_##SUF(const TT *p)                           \
    {                                                                                      \
        lv_##SUF r = {_mm256_loadu_##IS(p), _mm256_loadu_##IS(p + H)};                      \
        return r;                                                                          \
    }                                                                                      \
    GWD_TARGET static inline lv_##SUF lv_loadm_##SUF(const TT *p, int n)                   \
    {                                                                                      \
        lv_##SUF r;                                                                        \
        int na = n < H ? n : H, nb = n > H ? n - H : 0;                                    \
        r.a = _mm256_maskload_##IS(p, _mm256_loadu_si256((const __m256i *)(MASK + H - na))); \
        r.b = _mm256_maskload_##IS(p + H,                                                  \
                                   _mm256_loadu_si256((const __m256i *)(MASK + H - nb)));  \
        return r;                                                                          \
    }                                                                                      \
    GWD_TARGET static inline lv_##SUF lv_fma_##SUF(lv_##SUF x, lv_##SUF y, lv_##SUF c)      \
    {                                                                                      \
        c.a = _mm256_fmadd_##IS(x.a, y.a, c.a);                                            \
        c.b = _mm256_fmadd_##IS(x.b, y.b, c.b);                                            \
        return c;                                                                          \
    }                                                                                      \
    GWD_TARGET static inline TT lv_hsum_##SUF(lv_##SUF v)                                  \
    {                                                                                      \
        return gwd_hsum256_##IS(_mm256_add_##IS(v.a, v.b));                                \
    }

GWD_AVX2_LV(float, __m256, f32a2, ps, 8, gwd_mask32)
GWD_AVX2_LV(double, __m256d, f64a2, pd, 4, gwd_mask64)
#undef GWD_AVX2_LV

#define T float
#define LV lv_f32a2
#define LANES 16
#define SFX f32_avx2
#define LV_ZERO() lv_zero_f32a2()
#define LV_LOAD(p) lv_load_f32a2(p)
#define LV_STORE(p, v) (_mm256_storeu_ps((p), (v).a), _mm256_storeu_ps((p) + 8, (v).b))
#define LV_LOADM(p, n) lv_loadm_f32a2((p), (n))
#define LV_FMA(a, b, c) lv_fma_f32a2((a), (b), (c))
#define LV_HSUM(v) lv_hsum_f32a2(v)
#include "dwgw_impl.h"
#include "gwdot_impl.h"

#define T double
#define LV lv_f64a2
#define LANES 8
#define SFX f64_avx2
#define LV_ZERO() lv_zero_f64a2()
#define LV_LOAD(p) lv_load_f64a2(p)
#define LV_STORE(p, v) (_mm256_storeu_pd((p), (v).a), _mm256_storeu_pd((p) + 4, (v).b))
#define LV_LOADM(p, n) lv_loadm_f64a2((p), (n))
#define LV_FMA(a, b, c) lv_fma_f64a2((a), (b), (c))
#define LV_HSUM(v) lv_hsum_f64a2(v)
#include "dwgw_impl.h"
#include "gwdot_impl.h"

#undef GWD_TARGET
#undef GWD_RA
#undef GWD_NXA
#undef GWD_RB
#undef GWD_NXB
#undef GWD_RMAX
#undef GWD_NXMAX
#undef GWD_SWITCH_CASES
#undef DWGW_TGMAX
#undef DWGW_TILES

/* ---------------------------------------------------------------- AVX-512 */
#define GWD_TARGET __attribute__((target("avx512f,avx512dq,fma")))
/* 3 x 9 (27 accumulators: a 3x3 channel per chunk) and 4 x 6 (24) of the 32 zmm */
#define GWD_RA 3
#define GWD_NXA 9
#define GWD_RB 4
#define GWD_NXB 6
#define GWD_RMAX 4
#define GWD_NXMAX 9
#define GWD_SWITCH_CASES GWD_R9(1) GWD_R9(2) GWD_R9(3) GWD_R(4)
/* 25 zmm accumulators (a 5x5 kernel in one pass), one of dY, one of X */
#define DWGW_TGMAX 25
#define DWGW_TILES DWGW_T25

GWD_TARGET static inline float gwd_hsum512_ps(__m512 v)
{
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return gwd_hsum256_ps(_mm256_add_ps(lo, hi));
}

GWD_TARGET static inline double gwd_hsum512_pd(__m512d v)
{
    return gwd_hsum256_pd(_mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1)));
}

#define T float
#define LV __m512
#define LANES 16
#define SFX f32_avx512
#define LV_ZERO() _mm512_setzero_ps()
#define LV_LOAD(p) _mm512_loadu_ps(p)
#define LV_STORE(p, v) _mm512_storeu_ps((p), (v))
#define LV_LOADM(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1u), (p))
#define LV_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define LV_HSUM(v) gwd_hsum512_ps(v)
#define DWGW_SLIDE 1 /* 9 accumulators + 6 window vectors fit the 32 zmm registers */
#include "dwgw_impl.h"
#include "gwdot_impl.h"

#define T double
#define LV __m512d
#define LANES 8
#define SFX f64_avx512
#define LV_ZERO() _mm512_setzero_pd()
#define LV_LOAD(p) _mm512_loadu_pd(p)
#define LV_STORE(p, v) _mm512_storeu_pd((p), (v))
#define LV_LOADM(p, n) _mm512_maskz_loadu_pd((__mmask8)((1u << (n)) - 1u), (p))
#define LV_FMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define LV_HSUM(v) gwd_hsum512_pd(v)
#define DWGW_SLIDE 1
#include "dwgw_impl.h"
#include "gwdot_impl.h"
#undef GWD_TARGET
#undef DWGW_TGMAX
#undef DWGW_TILES
#endif /* CCONV_GWD_X86 */

/* ---------------------------------------------------------------- dispatch */

#if CCONV_GWD_X86
#define GWD_DEFINE_DISPATCH(T, SUF)                                                      \
    void cconv_gwd_nchw_##SUF(const cc_gwd_rows *r, const T *const *dys,                 \
                              const T *const *xim, cc_idx nb, cc_idx m,                  \
                              const cc_idx *koff, cc_idx kc, T *dw, cc_idx ldw)          \
    {                                                                                    \
        switch (cconv_isa_active()) {                                                    \
        case CCONV_ISA_AVX512:                                                           \
            gwd_nchw_##SUF##_avx512(r, dys, xim, nb, m, koff, kc, dw, ldw);              \
            return;                                                                      \
        case CCONV_ISA_AVX2:                                                             \
            gwd_nchw_##SUF##_avx2(r, dys, xim, nb, m, koff, kc, dw, ldw);                \
            return;                                                                      \
        default:                                                                         \
            gwd_nchw_##SUF##_generic(r, dys, xim, nb, m, koff, kc, dw, ldw);             \
        }                                                                                \
    }
#else
#define GWD_DEFINE_DISPATCH(T, SUF)                                                      \
    void cconv_gwd_nchw_##SUF(const cc_gwd_rows *r, const T *const *dys,                 \
                              const T *const *xim, cc_idx nb, cc_idx m,                  \
                              const cc_idx *koff, cc_idx kc, T *dw, cc_idx ldw)          \
    {                                                                                    \
        gwd_nchw_##SUF##_generic(r, dys, xim, nb, m, koff, kc, dw, ldw);                 \
    }
#endif
GWD_DEFINE_DISPATCH(float, f32)
GWD_DEFINE_DISPATCH(double, f64)
#undef GWD_DEFINE_DISPATCH

#if CCONV_GWD_X86
#define DWGW_DEFINE_DISPATCH(T, SUF)                                                     \
    int cconv_dwgw_nhwc_##SUF(const cc_dwgw_geom *g, const T *x, const T *dy, cc_idx r0, \
                              cc_idx r1, T *part, double *bias)                          \
    {                                                                                    \
        switch (cconv_isa_active()) {                                                    \
        case CCONV_ISA_AVX512:                                                           \
            return dwgw_rows_##SUF##_avx512(g, x, dy, r0, r1, part, bias);               \
        case CCONV_ISA_AVX2: return dwgw_rows_##SUF##_avx2(g, x, dy, r0, r1, part, bias);\
        default: return dwgw_rows_##SUF##_generic(g, x, dy, r0, r1, part, bias);         \
        }                                                                                \
    }
#else
#define DWGW_DEFINE_DISPATCH(T, SUF)                                                     \
    int cconv_dwgw_nhwc_##SUF(const cc_dwgw_geom *g, const T *x, const T *dy, cc_idx r0, \
                              cc_idx r1, T *part, double *bias)                          \
    {                                                                                    \
        return dwgw_rows_##SUF##_generic(g, x, dy, r0, r1, part, bias);                  \
    }
#endif
DWGW_DEFINE_DISPATCH(float, f32)
DWGW_DEFINE_DISPATCH(double, f64)
#undef DWGW_DEFINE_DISPATCH
