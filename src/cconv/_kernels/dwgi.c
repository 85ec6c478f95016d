/* dwgi: the loops of dwgi.h compiled per ISA path (target attributes) and dispatched at
 * run time on cconv_isa_active() (gemm.c, compiled into the same module). Channels in
 * blocks of one 64-byte vector of lanes, each lane an fma chain over the pixel's taps. */
#include <math.h>
#include <stdint.h>

#include "dwgi.h"

#if defined(__x86_64__) || defined(_M_X64)
#define CCONV_GI_X86 1
#include <immintrin.h>
#else
#define CCONV_GI_X86 0
#endif

#define GI_MAXTAPS 512 /* per pixel; the driver keeps prod(ceil(K / s)) below it */

/* o[l] = the fma chain over the nt taps of lane c + l, l < rem (rem <= 64 bytes of
 * lanes): plain C, always inlined, so a constant rem (a full vector) vectorises; the
 * AVX-512 path takes its partial vector with masked loads instead (gi_tail_*_avx512). */
#define GI_TAIL_C(T, SUF, ATTR, ISA, FMA)                                                  \
    ATTR static inline __attribute__((always_inline)) void gi_tail_##SUF##_##ISA##_c(          \
        const T *const *wp, const T *const *yp, int nt, cc_idx c, int rem, T *o)           \
    {                                                                                      \
        T acc[64 / sizeof(T)];                                                             \
        for (int l = 0; l < rem; l++)                                                      \
            acc[l] = 0;                                                                    \
        for (int t = 0; t < nt; t++) {                                                     \
            const T *restrict a_ = wp[t] + c, *restrict b_ = yp[t] + c;                    \
            for (int l = 0; l < rem; l++)                                                  \
                acc[l] = FMA(a_[l], b_[l], acc[l]);                                        \
        }                                                                                  \
        for (int l = 0; l < rem; l++)                                                      \
            o[l] = acc[l];                                                                 \
    }

#define GI_BODY(T, SUF, ATTR, ISA, TAIL, CAN_STREAM, STREAM, FENCE)                        \
    ATTR static void gi_row_##SUF##_##ISA(const cc_dwgi_geom *g, const T *dy, const T *w,   \
                                          T *dx, cc_idx n, cc_idx id, cc_idx ih,            \
                                          const T *zero)                                    \
    {                                                                                      \
        enum { L = 64 / sizeof(T) };                                                       \
        const cc_idx C = g->C;                                                             \
        const T *wp[GI_MAXTAPS], *yp[GI_MAXTAPS];                                          \
        T *o = dx + ((n * g->D + id) * g->H + ih) * g->W * C;                              \
        const int stream = CAN_STREAM && g->stream && (uintptr_t)o % 64 == 0 && C % L == 0; \
        /* the row's (kd, kh) taps: weight plane and grad_out row (NULL: outside) */      \
        const T *wrow[GI_MAXTAPS], *yrow[GI_MAXTAPS];                                      \
        int nr = 0;                                                                        \
        for (cc_idx a = 0; a < g->cnt_d[id]; a++) {                                        \
            const cc_idx kd = g->k_d[id * g->Td + a], od = g->o_d[id * g->Td + a];         \
            for (cc_idx b = 0; b < g->cnt_h[ih]; b++, nr++) {                              \
                const cc_idx kh = g->k_h[ih * g->Th + b], oh = g->o_h[ih * g->Th + b];     \
                wrow[nr] = w + (kd * g->KH + kh) * g->KW * C;                              \
                yrow[nr] = od < 0 || oh < 0 ? 0 : dy + ((n * g->OD + od) * g->OH + oh)     \
                                                       * g->OW * C;                        \
            }                                                                              \
        }                                                                                  \
        for (cc_idx iw = 0; iw < g->W; iw++, o += C) {                                     \
            int nt = 0;                                                                    \
            const cc_idx *kw_ = g->k_w + iw * g->Tw, *ow_ = g->o_w + iw * g->Tw;           \
            const cc_idx ne = g->cnt_w[iw];                                                \
            for (int q = 0; q < nr; q++)                                                   \
                for (cc_idx e = 0; e < ne; e++, nt++) {                                    \
                    wp[nt] = wrow[q] + kw_[e] * C;                                         \
                    yp[nt] = yrow[q] == 0 || ow_[e] < 0 ? zero : yrow[q] + ow_[e] * C;     \
                }                                                                          \
            cc_idx c = 0;                                                                  \
            if (stream)                                                                    \
                for (; c + L <= C; c += L)                                                 \
                    STREAM(wp, yp, nt, c, o + c);                                          \
            for (; c + L <= C; c += L)                                                     \
                gi_tail_##SUF##_##ISA##_c(wp, yp, nt, c, L, o + c);                        \
            if (c < C) /* the last, partial vector: same chains, fewer lanes */           \
                TAIL(wp, yp, nt, c, (int)(C - c), o + c);                                  \
        }                                                                                  \
        if (stream)                                                                        \
            FENCE; /* the streaming stores are weakly ordered: done before the join */    \
    }

#define GI_NOATTR
GI_TAIL_C(float, f32, GI_NOATTR, generic, fmaf)
GI_TAIL_C(double, f64, GI_NOATTR, generic, fma)
/* paths without streaming stores */
#define GI_NO_STREAM(wp, yp, nt, c, o) ((void)0)
GI_BODY(float, f32, GI_NOATTR, generic, gi_tail_f32_generic_c, 0, GI_NO_STREAM, (void)0)
GI_BODY(double, f64, GI_NOATTR, generic, gi_tail_f64_generic_c, 0, GI_NO_STREAM, (void)0)
#if CCONV_GI_X86
#define GI_AVX2 __attribute__((target("avx2,fma")))
#define GI_AVX512 __attribute__((target("avx512f,fma")))
GI_TAIL_C(float, f32, GI_AVX2, avx2, __builtin_fmaf)
GI_TAIL_C(double, f64, GI_AVX2, avx2, __builtin_fma)
GI_TAIL_C(float, f32, GI_AVX512, avx512, __builtin_fmaf)
GI_TAIL_C(double, f64, GI_AVX512, avx512, __builtin_fma)
#define GI_TAIL_AVX512(T, SUF, VT, MT, X)                                                   \
    GI_AVX512 static inline void gi_tail_##SUF##_avx512(const T *const *wp,                 \
                                                        const T *const *yp, int nt,         \
                                                        cc_idx c, int rem, T *o)            \
    {                                                                                      \
        const MT k = (MT)((1u << rem) - 1u);                                               \
        VT acc = _mm512_setzero_##X();                                                     \
        for (int t = 0; t < nt; t++)                                                       \
            acc = _mm512_fmadd_##X(_mm512_maskz_loadu_##X(k, wp[t] + c),                   \
                                   _mm512_maskz_loadu_##X(k, yp[t] + c), acc);             \
        _mm512_mask_storeu_##X(o, k, acc);                                                 \
    }
GI_TAIL_AVX512(float, f32, __m512, __mmask16, ps)
GI_TAIL_AVX512(double, f64, __m512d, __mmask8, pd)
/* A full vector of lanes c.. (64-byte aligned o) by the same fma chains, stored streaming. */
#define GI_STREAM_AVX512(T, SUF, VT, X)                                                     \
    GI_AVX512 static inline void gi_stream_##SUF##_avx512(const T *const *wp,               \
                                                          const T *const *yp, int nt,       \
                                                          cc_idx c, T *o)                   \
    {                                                                                      \
        VT acc = _mm512_setzero_##X();                                                     \
        for (int t = 0; t < nt; t++)                                                       \
            acc = _mm512_fmadd_##X(_mm512_loadu_##X(wp[t] + c), _mm512_loadu_##X(yp[t] + c), \
                                   acc);                                                   \
        _mm512_stream_##X(o, acc);                                                         \
    }
GI_STREAM_AVX512(float, f32, __m512, ps)
GI_STREAM_AVX512(double, f64, __m512d, pd)
GI_BODY(float, f32, GI_AVX2, avx2, gi_tail_f32_avx2_c, 0, GI_NO_STREAM, (void)0)
GI_BODY(double, f64, GI_AVX2, avx2, gi_tail_f64_avx2_c, 0, GI_NO_STREAM, (void)0)
GI_BODY(float, f32, GI_AVX512, avx512, gi_tail_f32_avx512, 1, gi_stream_f32_avx512,
        _mm_sfence())
GI_BODY(double, f64, GI_AVX512, avx512, gi_tail_f64_avx512, 1, gi_stream_f64_avx512,
        _mm_sfence())
#define GI_PICK(FN, ARGS)                                                                  \
    switch (cconv_isa_active()) {                                                          \
    case CCONV_ISA_AVX512: FN##_avx512 ARGS; return;                                       \
    case CCONV_ISA_AVX2: FN##_avx2 ARGS; return;                                           \
    default: FN##_generic ARGS; return;                                                    \
    }
#else
#define GI_PICK(FN, ARGS) FN##_generic ARGS;
#endif

void cconv_dwgi_nhwc_row_f32(const cc_dwgi_geom *g, const float *dy, const float *w,
                             float *dx, cc_idx n, cc_idx id, cc_idx ih, const float *zero)
{
    GI_PICK(gi_row_f32, (g, dy, w, dx, n, id, ih, zero))
}

void cconv_dwgi_nhwc_row_f64(const cc_dwgi_geom *g, const double *dy, const double *w,
                             double *dx, cc_idx n, cc_idx id, cc_idx ih, const double *zero)
{
    GI_PICK(gi_row_f64, (g, dy, w, dx, n, id, ih, zero))
}
