/* cconv depthwise kernels: instantiations of depthwise_impl.h per ISA path and dtype,
 * and the runtime dispatch (cconv_isa_active() from gemm.c, compiled into the same
 * module). See depthwise.h for the layouts and the arithmetic contract.
 *
 * Every path uses fused multiply-add (fmaf / fma in portable C, FMA instructions in
 * the SIMD paths) in the same order, so all paths give bitwise identical results.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>

#include "depthwise.h"
#include "dw_prefetch.h"

#if defined(__x86_64__) || defined(_M_X64)
#define CCONV_DW_X86 1
#include <immintrin.h>
#else
#define CCONV_DW_X86 0
#endif

#define CC_DW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CC_DW_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Widest vector of any path, in float32 lanes, times the widest column tile (4
 * vectors): scratch rows are sized for it whatever path runs. */
#define DW_MAX_COLS 64

/* Phase q of a zero-padded scratch row split into sw stride phases of PL elements:
 * padded column q + sw*t (phase element t) is input column q + sw*t - pw, so elements
 * [*lo, *hi) hold input and the rest padding. */
static inline void cc_dw_phase_cols(const cc_dw_geom *g, cc_idx q, cc_idx PL, cc_idx *lo,
                                    cc_idx *hi)
{
    const cc_idx sw = g->sw, pw = g->pw, W = g->W;
    cc_idx l = pw > q ? (pw - q + sw - 1) / sw : 0;
    cc_idx h = W - 1 + pw - q >= 0 ? (W - 1 + pw - q) / sw + 1 : 0;
    l = CC_DW_MIN(l, PL);
    *lo = l;
    *hi = CC_DW_MIN(CC_DW_MAX(h, l), PL);
}

/* Elements per phase of a scratch row (NCHW). */
static inline cc_idx dw_phase_len(const cc_dw_geom *g)
{
    const cc_idx cols = (g->OW + DW_MAX_COLS - 1) / DW_MAX_COLS * DW_MAX_COLS;
    return cols + ((g->KW - 1) * g->dw) / g->sw + 1;
}

cc_idx cconv_dw_nchw_scratch(const cc_dw_geom *g, cc_idx rows)
{
    const cc_idx nrows = (rows - 1) * g->sh + (g->KH - 1) * g->dh + 1;
    return g->KD * nrows * g->sw * dw_phase_len(g);
}

/* Grouped kernel (gconv_impl.h): pixels per tile row, the same on every path; 7, 14,
 * 28, 56, 112 (the ResNet widths) leave no partial tile. */
#define GN_Q 7

/* Elements per phase of a grouped-kernel scratch row: whole GN_Q tiles plus the
 * kernel's reach. */
static inline cc_idx gn_phase_len(const cc_dw_geom *g)
{
    const cc_idx cols = (g->OW + GN_Q - 1) / GN_Q * GN_Q;
    return cols + ((g->KW - 1) * g->dw) / g->sw + 1;
}

cc_idx cconv_gconv_scratch(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx ngroups,
                           cc_idx rows, int cf)
{
    const cc_idx nrows = (rows - 1) * g->sh + (g->KH - 1) * g->dh + 1;
    const cc_idx slab = g->KD * nrows * g->sw * gn_phase_len(g);
    /* + one group's channels-first weights, or 16 lanes of a group pair's (gconv_pair.h) */
    (void)cf;
    return ngroups * Cg * slab + CC_DW_MAX(Og, 16) * Cg * g->KD * g->KH * g->KW;
}

#if CCONV_DW_X86
#include "simd_transpose.h"
#endif

/* ---------------------------------------------------------------- portable C */
#define DW_TARGET
#define DW_NCHW_V 4
#define GC_ROWS 4
#define GN_R1 2
#define GN_R2 1

/* one lane: the scalar type itself (the double block reuses the memory macros) */
#define VL 1
#define T float
#define VEC float
#define SFX f32_generic
#define V_LOAD(p) (*(p))
#define V_LOADM(p, n) (*(p))
#define V_STORE(p, v) (*(p) = (v))
#define V_STREAM(p, v) (*(p) = (v))
#define V_SFENCE() ((void)0)
#define V_STOREM(p, v, n) (*(p) = (v))
#define V_SET1(s) (s)
#define V_ZERO() 0.0f
#define V_FMA(a, b, c) fmaf((a), (b), (c))
#define V_BCAST(p) (*(p))
#define V_TRANSPOSE(a) ((void)(a))
#define V_EVEN2(a, b) (a)
#define V_KEEP(v) ((void)0)
#include "depthwise_impl.h"
#include "gconv_impl.h"
#undef T
#undef VEC
#undef SFX
#undef V_ZERO
#undef V_FMA

#define T double
#define VEC double
#define SFX f64_generic
#define V_ZERO() 0.0
#define V_FMA(a, b, c) fma((a), (b), (c))
#include "depthwise_impl.h"
#include "gconv_impl.h"
#include "dw_vec_undef.h"
#undef DW_TARGET
#undef DW_NCHW_V
#undef GC_ROWS
#undef GN_R1
#undef GN_R2

#if CCONV_DW_X86
/* ---------------------------------------------------------------- AVX2 + FMA */
static const int32_t dw_mask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int64_t dw_mask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

#define DW_TARGET __attribute__((target("avx2,fma")))
#define DW_NCHW_V 3 /* 12 of the 16 ymm registers hold accumulators */
#define GC_ROWS 2   /* grouped tile: 2 rows x 4 channels = 8 ymm accumulators */
#define GN_R1 2     /* grouped channels-last: 2 x 7 pixels x 1 vector = 14 accumulators */
#define GN_R2 1

#define SFX f32_avx2
#include "dw_vec_ymm.h"
#include "depthwise_impl.h"
#include "gconv_impl.h"
#include "dw_vec_undef.h"

#define DW_YMM_F64
#define SFX f64_avx2
#include "dw_vec_ymm.h"
#include "depthwise_impl.h"
#include "gconv_impl.h"
#include "dw_vec_undef.h"
#undef DW_YMM_F64
#undef DW_TARGET
#undef DW_NCHW_V
#undef GC_ROWS
#undef GN_R1
#undef GN_R2

/* ---------------------------------------------------------------- AVX-512 */
/* Bit l set when 0 <= base + l < W, for l < 16 (the direct NCHW tiles' lane masks). */
static inline uint32_t dw_lanes16(cc_idx base, cc_idx W)
{
    const cc_idx lo = base < 0 ? -base : 0, hi = W - base;
    if (hi <= lo || lo >= 16)
        return 0;
    const uint32_t upto = hi >= 16 ? 0xFFFFu : ((1u << hi) - 1u);
    return upto & ~((1u << lo) - 1u);
}

#define DW_TARGET __attribute__((target("avx512f,avx512dq,fma")))
#define DW_NCHW_V 4 /* 16 of the 32 zmm registers hold accumulators */
#define GC_ROWS 4   /* grouped tile: 4 rows x 4 channels = 16 zmm accumulators */

#define VL 16
#define T float
#define VEC __m512
#define SFX f32_avx512
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_LOADM(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1u), (p))
#define V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define V_STREAM(p, v) _mm512_stream_ps((p), (v))
#define V_SFENCE() _mm_sfence()
#define V_STOREM(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#define V_SET1(s) _mm512_set1_ps(s)
#define V_ZERO() _mm512_setzero_ps()
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_KEEP(v) __asm__("" : "+v"(v))
#define V_EVEN2(a, b) \
    _mm512_permutex2var_ps((a), _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0), (b))
#define V_ODD2(a, b) \
    _mm512_permutex2var_ps((a), _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1), (b))
/* lanes q .. VL-1 of lo, then lanes 0 .. q-1 of hi */
#define V_ALIGN(hi, lo, q) \
    _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), (q)))
/* lanes l with 0 <= base + l < W; zero-masked load (masked-off lanes read nothing) */
#define V_MASKT __mmask16
#define V_LANES(base, W) dw_lanes16((base), (W))
#define V_LOADZ(m, p) _mm512_maskz_loadu_ps((m), (p))
#include "depthwise_impl.h"
#include "dw_vec_undef.h"

#define VL 8
#define T double
#define VEC __m512d
#define SFX f64_avx512
#define V_LOAD(p) _mm512_loadu_pd(p)
#define V_LOADM(p, n) _mm512_maskz_loadu_pd((__mmask8)((1u << (n)) - 1u), (p))
#define V_STORE(p, v) _mm512_storeu_pd((p), (v))
#define V_STREAM(p, v) _mm512_stream_pd((p), (v))
#define V_SFENCE() _mm_sfence()
#define V_STOREM(p, v, n) _mm512_mask_storeu_pd((p), (__mmask8)((1u << (n)) - 1u), (v))
#define V_SET1(s) _mm512_set1_pd(s)
#define V_ZERO() _mm512_setzero_pd()
#define V_FMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define V_KEEP(v) __asm__("" : "+v"(v))
#define V_EVEN2(a, b) _mm512_permutex2var_pd((a), _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), (b))
#define V_ODD2(a, b) _mm512_permutex2var_pd((a), _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1), (b))
#define V_ALIGN(hi, lo, q) \
    _mm512_castsi512_pd(_mm512_alignr_epi64(_mm512_castpd_si512(hi), _mm512_castpd_si512(lo), (q)))
#define V_MASKT __mmask8
#define V_LANES(base, W) ((__mmask8)dw_lanes16((base), (W)))
#define V_LOADZ(m, p) _mm512_maskz_loadu_pd((m), (p))
#include "depthwise_impl.h"
#include "dw_vec_undef.h"
#undef DW_TARGET
#undef GC_ROWS

/* Grouped kernel on AVX-512 machines: 256-bit vectors (a group of 8 output channels
 * fills one; on double-pumped AVX-512 cores a zmm FMA does no more work per cycle) with
 * the 32 registers of AVX-512VL for 4 x 7 pixel tiles. */
#define DW_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,fma")))
#define GN_R1 4 /* 4 x 7 pixels x 1 vector = 28 ymm accumulators */
#define GN_R2 2

#define SFX f32_avx512
#include "dw_vec_ymm.h"
#undef V_LOADM /* AVX-512VL mask registers: no mask vector to hold */
#undef V_STOREM
#define V_LOADM(p, n) _mm256_maskz_loadu_ps((__mmask8)((1u << (n)) - 1u), (p))
#define V_STOREM(p, v, n) _mm256_mask_storeu_ps((p), (__mmask8)((1u << (n)) - 1u), (v))
#include "gconv_pair.h"
#define GN_PAIR 1
#include "gconv_impl.h"
#undef GN_PAIR
#include "dw_vec_undef.h"

#define DW_YMM_F64
#define SFX f64_avx512
#include "dw_vec_ymm.h"
#undef V_LOADM
#undef V_STOREM
#define V_LOADM(p, n) _mm256_maskz_loadu_pd((__mmask8)((1u << (n)) - 1u), (p))
#define V_STOREM(p, v, n) _mm256_mask_storeu_pd((p), (__mmask8)((1u << (n)) - 1u), (v))
#include "gconv_impl.h"
#include "dw_vec_undef.h"
#undef DW_YMM_F64
#undef DW_TARGET
#undef GN_R1
#undef GN_R2
#endif /* CCONV_DW_X86 */

/* ---------------------------------------------------------------- dispatch */

void cconv_dw_nchw_f32(const cc_dw_geom *g, const float *x, const float *w, const float *bias,
                       float *out, cc_idx od, cc_idx oh0, cc_idx oh1, float *scratch)
{
    switch (cconv_isa_active()) {
#if CCONV_DW_X86
    case CCONV_ISA_AVX512:
        dw_nchw_f32_avx512(g, x, w, bias, out, od, oh0, oh1, scratch);
        return;
    case CCONV_ISA_AVX2:
        dw_nchw_f32_avx2(g, x, w, bias, out, od, oh0, oh1, scratch);
        return;
#endif
    default:
        dw_nchw_f32_generic(g, x, w, bias, out, od, oh0, oh1, scratch);
    }
}

void cconv_dw_nchw_f64(const cc_dw_geom *g, const double *x, const double *w,
                       const double *bias, double *out, cc_idx od, cc_idx oh0, cc_idx oh1,
                       double *scratch)
{
    switch (cconv_isa_active()) {
#if CCONV_DW_X86
    case CCONV_ISA_AVX512:
        dw_nchw_f64_avx512(g, x, w, bias, out, od, oh0, oh1, scratch);
        return;
    case CCONV_ISA_AVX2:
        dw_nchw_f64_avx2(g, x, w, bias, out, od, oh0, oh1, scratch);
        return;
#endif
    default:
        dw_nchw_f64_generic(g, x, w, bias, out, od, oh0, oh1, scratch);
    }
}

void cconv_dw_nhwc_prefetch_row(const cc_dw_geom *g, const void *x, const void *out,
                                cc_idx esize, cc_idx od, cc_idx oh, cc_idx c0, cc_idx c1)
{
    const cc_idx C = g->C, span = (g->KH - 1) * g->dh + 1;
    /* the input rows row oh reads that row oh - 1 did not */
    cc_idx ia, ib;
    dwp_new_rows(oh, oh + 1, 0, g->sh, g->ph, span, g->H, &ia, &ib);
    dwp_fetch_plane_rows((const char *)x + c0 * esize, esize, g->D, g->H, g->W, C, c1 - c0,
                         g->KD, od * g->sd - g->pd, g->dd, ia, ib);
    dwp_fetch_rows((const char *)out + (od * g->OH * g->OW * C + c0) * esize, esize, g->OW, C,
                   c1 - c0, oh, oh + 1, 1);
}

void cconv_dw_nhwc_f32(const cc_dw_geom *g, const float *x, const float *w, const float *bias,
                       float *out, cc_idx od, cc_idx oh, cc_idx c0, cc_idx c1, int prefetch)
{
    switch (cconv_isa_active()) {
#if CCONV_DW_X86
    case CCONV_ISA_AVX512:
        dw_nhwc_f32_avx512(g, x, w, bias, out, od, oh, c0, c1, prefetch);
        return;
    case CCONV_ISA_AVX2:
        dw_nhwc_f32_avx2(g, x, w, bias, out, od, oh, c0, c1, prefetch);
        return;
#endif
    default:
        dw_nhwc_f32_generic(g, x, w, bias, out, od, oh, c0, c1, prefetch);
    }
}

void cconv_dw_nhwc_f64(const cc_dw_geom *g, const double *x, const double *w,
                       const double *bias, double *out, cc_idx od, cc_idx oh, cc_idx c0,
                       cc_idx c1, int prefetch)
{
    switch (cconv_isa_active()) {
#if CCONV_DW_X86
    case CCONV_ISA_AVX512:
        dw_nhwc_f64_avx512(g, x, w, bias, out, od, oh, c0, c1, prefetch);
        return;
    case CCONV_ISA_AVX2:
        dw_nhwc_f64_avx2(g, x, w, bias, out, od, oh, c0, c1, prefetch);
        return;
#endif
    default:
        dw_nhwc_f64_generic(g, x, w, bias, out, od, oh, c0, c1, prefetch);
    }
}

/* The grouped kernel's dispatch, once per dtype. */
#if CCONV_DW_X86
#define GC_X86_CASES(DT)                                                                   \
    case CCONV_ISA_AVX512:                                                                 \
        gconv_nchw_##DT##_avx512(g, Cg, Og, x, w, bias, out, od, oh0, oh1, scratch);       \
        return;                                                                            \
    case CCONV_ISA_AVX2:                                                                   \
        gconv_nchw_##DT##_avx2(g, Cg, Og, x, w, bias, out, od, oh0, oh1, scratch);         \
        return;
#else
#define GC_X86_CASES(DT)
#endif
#define GC_DISPATCH(DT, T)                                                                 \
    void cconv_gconv_nchw_##DT(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, const T *x,      \
                               const T *w, const T *bias, T *out, cc_idx od, cc_idx oh0,   \
                               cc_idx oh1, T *scratch)                                     \
    {                                                                                      \
        switch (cconv_isa_active()) {                                                      \
        GC_X86_CASES(DT)                                                                   \
        default:                                                                           \
            gconv_nchw_##DT##_generic(g, Cg, Og, x, w, bias, out, od, oh0, oh1, scratch);  \
        }                                                                                  \
    }
GC_DISPATCH(f32, float)
GC_DISPATCH(f64, double)

/* The grouped kernel's dispatch, once per dtype. */
#if CCONV_DW_X86
#define GN_X86_CASES(DT)                                                                   \
    case CCONV_ISA_AVX512:                                                                 \
        gconv_##DT##_avx512(g, Cg, Og, g0, g1, x, w, bias, out, od, oh0, oh1, scratch, cf); \
        return;                                                                            \
    case CCONV_ISA_AVX2:                                                                   \
        gconv_##DT##_avx2(g, Cg, Og, g0, g1, x, w, bias, out, od, oh0, oh1, scratch, cf);  \
        return;
#else
#define GN_X86_CASES(DT)
#endif
#define GN_DISPATCH(DT, T)                                                                 \
    void cconv_gconv_##DT(const cc_dw_geom *g, cc_idx Cg, cc_idx Og, cc_idx g0, cc_idx g1, \
                          const T *x, const T *w, const T *bias, T *out, cc_idx od,        \
                          cc_idx oh0, cc_idx oh1, T *scratch, int cf)                      \
    {                                                                                      \
        switch (cconv_isa_active()) {                                                      \
        GN_X86_CASES(DT)                                                                   \
        default:                                                                           \
            gconv_##DT##_generic(g, Cg, Og, g0, g1, x, w, bias, out, od, oh0, oh1, scratch, \
                                 cf);                                                      \
        }                                                                                  \
    }
GN_DISPATCH(f32, float)
GN_DISPATCH(f64, double)


/* The channels-last packed rows' entry points, once per dtype: none on the portable path
 * (one-lane vectors keep the strided tiles), so scratch and block report 0 there. */
#if CCONV_DW_X86
#define DWP_X86_CASES(DT, T)                                                               \
    case CCONV_ISA_AVX512:                                                                 \
        return op == 0 ? dwp_scratch_##DT##_avx512(g, nc) : 2 * (64 / (cc_idx)sizeof(T));  \
    case CCONV_ISA_AVX2:                                                                   \
        return op == 0 ? dwp_scratch_##DT##_avx2(g, nc) : 2 * (32 / (cc_idx)sizeof(T));
#define DWP_X86_RUN(DT)                                                                    \
    case CCONV_ISA_AVX512:                                                                 \
        dw_nhwc_packed_##DT##_avx512(g, x, w, bias, out, c0, c1, oh0, oh1, scratch, pf);   \
        return;                                                                            \
    case CCONV_ISA_AVX2:                                                                   \
        dw_nhwc_packed_##DT##_avx2(g, x, w, bias, out, c0, c1, oh0, oh1, scratch, pf);     \
        return;
#else
#define DWP_X86_CASES(DT, T)
#define DWP_X86_RUN(DT)
#endif
#define DWP_DISPATCH(DT, T)                                                                \
    /* op 0: scratch elements per thread; 1: channels per block */                         \
    static cc_idx dwp_query_##DT(int op, const cc_dw_geom *g, cc_idx nc)                   \
    {                                                                                      \
        (void)g;                                                                           \
        (void)nc;                                                                          \
        switch (cconv_isa_active()) {                                                      \
        DWP_X86_CASES(DT, T)                                                               \
        default:                                                                           \
            return 0;                                                                      \
        }                                                                                  \
    }                                                                                      \
    cc_idx cconv_dw_nhwc_packed_scratch_##DT(const cc_dw_geom *g, cc_idx nc)               \
    {                                                                                      \
        return dwp_query_##DT(0, g, nc);                                                   \
    }                                                                                      \
    cc_idx cconv_dw_nhwc_packed_block_##DT(void) { return dwp_query_##DT(1, 0, 0); }       \
    void cconv_dw_nhwc_packed_##DT(const cc_dw_geom *g, const T *x, const T *w,            \
                                   const T *bias, T *out, cc_idx c0, cc_idx c1, cc_idx oh0, \
                                   cc_idx oh1, T *scratch, int pf)                         \
    {                                                                                      \
        switch (cconv_isa_active()) {                                                      \
        DWP_X86_RUN(DT)                                                                    \
        default:                                                                           \
            return;                                                                        \
        }                                                                                  \
    }
DWP_DISPATCH(f32, float)
DWP_DISPATCH(f64, double)
