/* Channels-last grad_weight micro-kernels (included once, at the end of gemm.c, after
 * pixrow_impl.h: they reuse its tile register macros and B-vector loads).
 *
 * Contract (gemm.h, cconv_gwrows_ukernel_*): with MR x NR the active GEMM tile,
 *   C[i, j] = (accumulate ? C[i, j] : 0)
 *             + sum_{s < nseg} sum_{kk < seg[s].len} x[seg[s].x + kk*xs + i] * B[seg[s].p + kk, j]
 * for i < MR, j < NR: MR input channels of a channels-last input read in place (a run of
 * pixels xs elements apart per segment: one output row's valid pixels for one tap) against
 * one NR-column B panel of grad_out (element (p, j) at b[p*ldb + j]: a packed panel,
 * ldb = NR, or grad_out's own rows, ldb = its channel count). All MR
 * channels x[.. + 0 .. MR-1] are read for every kk; nothing else of x. C: the full MR x NR
 * tile, row stride ldc, unit column stride (edges go through the caller's local tile);
 * n (1..NR) of its columns are needed: on AVX-512, n <= NR/2 computes NR/2 columns only.
 * Each element is one FMA chain over the segments in order, kk in order within each:
 * the same chain as a packed product over the pixels with the skipped ones left out. */

#define DEFINE_GWROWS(NAME, ATTR, T, NR, REP, DECL, LOAD, ZERO, STORE, BLOAD, FMA)         \
    ATTR __attribute__((noinline)) static void NAME(                                       \
        cc_idx nseg, const cc_gwseg *restrict seg, const T *restrict x, cc_idx xs,         \
        const T *restrict bp, cc_idx ldb, T *restrict c, cc_idx ldc, int accumulate)       \
    {                                                                                      \
        REP(DECL)                                                                          \
        if (accumulate) {                                                                  \
            REP(LOAD)                                                                      \
        } else {                                                                           \
            REP(ZERO)                                                                      \
        }                                                                                  \
        for (cc_idx s = 0; s < nseg; s++) {                                                \
            const T *a = x + seg[s].x;                                                     \
            const T *b = bp + seg[s].p * ldb;                                              \
            const cc_idx len = seg[s].len;                                                 \
            _Pragma("GCC unroll 4")                                                        \
            for (cc_idx kk = 0; kk < len; kk++) {                                          \
                BLOAD                                                                      \
                REP(FMA)                                                                   \
                a += xs;                                                                   \
                b += ldb;                                                                  \
            }                                                                              \
        }                                                                                  \
        REP(STORE)                                                                         \
    }

#define DEFINE_GWROWS_GENERIC(NAME, T, FMAF)                                               \
    static void NAME(cc_idx nseg, const cc_gwseg *seg, const T *x, cc_idx xs, const T *bp, \
                     cc_idx ldb, T *c, cc_idx ldc, int accumulate)                         \
    {                                                                                      \
        T t[GEN_MR][GEN_NR];                                                               \
        for (int i = 0; i < GEN_MR; i++)                                                   \
            for (int j = 0; j < GEN_NR; j++)                                               \
                t[i][j] = accumulate ? c[i * ldc + j] : (T)0;                              \
        for (cc_idx s = 0; s < nseg; s++) {                                                \
            const T *a = x + seg[s].x;                                                     \
            const T *b = bp + seg[s].p * ldb;                                              \
            for (cc_idx kk = 0; kk < seg[s].len; kk++) {                                   \
                for (int i = 0; i < GEN_MR; i++)                                           \
                    for (int j = 0; j < GEN_NR; j++)                                       \
                        t[i][j] = FMAF(a[i], b[j], t[i][j]);                               \
                a += xs;                                                                   \
                b += ldb;                                                                  \
            }                                                                              \
        }                                                                                  \
        for (int i = 0; i < GEN_MR; i++)                                                   \
            for (int j = 0; j < GEN_NR; j++)                                               \
                c[i * ldc + j] = t[i][j];                                                  \
    }
DEFINE_GWROWS_GENERIC(sgemm_gwrows_ukernel_4x8_generic, float, fmaf)
DEFINE_GWROWS_GENERIC(dgemm_gwrows_ukernel_4x8_generic, double, fma)

#if CCONV_X86
/* The AVX-512 kernels of ROWS rows (REP: PR8 / PR4): float32 and float64, full width
 * and half width (columns 0..NR/2-1 of the panel, b's rows NR apart: a last panel of
 * at most NR/2 output channels, the same chains for half the work; pixrow_impl.h). */
#define DEFINE_GWROWS_AVX512(ROWS, REP)                                                    \
    DEFINE_GWROWS(sgemm_gwrows_ukernel_##ROWS##x32_avx512, TARGET_AVX512, float, 32, REP,  \
                  S512_DECL, S512_LOAD, S512_ZERO, S512_STORE, S512_PR_B, S512_FMA)        \
    DEFINE_GWROWS(dgemm_gwrows_ukernel_##ROWS##x16_avx512, TARGET_AVX512, double, 16, REP, \
                  D512_DECL, D512_LOAD, D512_ZERO, D512_STORE, D512_PR_B, D512_FMA)        \
    DEFINE_GWROWS(sgemm_gwrows_ukernel_##ROWS##x16of32_avx512, TARGET_AVX512, float, 32,   \
                  REP, S512H_DECL, S512H_LOAD, S512H_ZERO, S512H_STORE, S512H_PR_B,        \
                  S512H_FMA)                                                               \
    DEFINE_GWROWS(dgemm_gwrows_ukernel_##ROWS##x8of16_avx512, TARGET_AVX512, double, 16,   \
                  REP, D512H_DECL, D512H_LOAD, D512H_ZERO, D512H_STORE, D512H_PR_B,        \
                  D512H_FMA)
/* 8 channels (not the GEMM's 12): channel counts are multiples of 8 far more often
 * than of 12, and a partial block is packed and computed at full width. */
DEFINE_GWROWS_AVX512(8, PR8)
/* Four rows (channels 0..3 only, x[.. + 0 .. 3] read): a last row panel of at most 4
 * (tap, channel) pairs in _gw_cols (1 -> 512 channels, 3 taps: 3 of 8 rows busy), the
 * same chains for half the work. */
DEFINE_GWROWS_AVX512(4, PR4)
#undef DEFINE_GWROWS_AVX512
DEFINE_GWROWS(sgemm_gwrows_ukernel_6x16_avx2, TARGET_AVX2, float, 16, REP6, S256_DECL,
              S256_LOAD, S256_ZERO, S256_STORE, S256_PR_B, S256_FMA)
DEFINE_GWROWS(dgemm_gwrows_ukernel_6x8_avx2, TARGET_AVX2, double, 8, REP6, D256_DECL,
              D256_LOAD, D256_ZERO, D256_STORE, D256_PR_B, D256_FMA)
#endif

static int gwrows_mr(int isa)
{
#if CCONV_X86
    if (isa == CCONV_ISA_AVX512)
        return 8;
    if (isa == CCONV_ISA_AVX2)
        return 6;
#endif
    (void)isa;
    return GEN_MR;
}

int cconv_gwrows_mr_f32(void) { return gwrows_mr(cconv_isa_active()); }
int cconv_gwrows_mr_f64(void) { return gwrows_mr(cconv_isa_active()); }

/* One dispatcher: n <= HALF columns take the half-width AVX-512 kernel. */
#define DEFINE_GWROWS_DISPATCH(NAME, T, HALF, K512H, K512, K256, KGEN)                     \
    DEFINE_PIXROW_DISPATCH(NAME,                                                           \
                           (cc_idx n, cc_idx nseg, const cc_gwseg *seg, const T *x,        \
                            cc_idx xs, const T *b, cc_idx ldb, T *c, cc_idx ldc,           \
                            int accumulate),                                               \
                           (n <= HALF ? K512H : K512), K256,                               \
                           (nseg, seg, x, xs, b, ldb, c, ldc, accumulate), KGEN,           \
                           (nseg, seg, x, xs, b, ldb, c, ldc, accumulate))
DEFINE_GWROWS_DISPATCH(cconv_gwrows_ukernel_f32, float, 16, sgemm_gwrows_ukernel_8x16of32_avx512,
                       sgemm_gwrows_ukernel_8x32_avx512, sgemm_gwrows_ukernel_6x16_avx2,
                       sgemm_gwrows_ukernel_4x8_generic)
DEFINE_GWROWS_DISPATCH(cconv_gwrows_ukernel_f64, double, 8, dgemm_gwrows_ukernel_8x8of16_avx512,
                       dgemm_gwrows_ukernel_8x16_avx512, dgemm_gwrows_ukernel_6x8_avx2,
                       dgemm_gwrows_ukernel_4x8_generic)
/* Rows 0..3 of the tile at least (AVX-512: exactly those; the other paths run their
 * whole MR rows, as cconv_gwrows_ukernel_*). */
DEFINE_GWROWS_DISPATCH(cconv_gwrows4_ukernel_f32, float, 16, sgemm_gwrows_ukernel_4x16of32_avx512,
                       sgemm_gwrows_ukernel_4x32_avx512, sgemm_gwrows_ukernel_6x16_avx2,
                       sgemm_gwrows_ukernel_4x8_generic)
DEFINE_GWROWS_DISPATCH(cconv_gwrows4_ukernel_f64, double, 8, dgemm_gwrows_ukernel_4x8of16_avx512,
                       dgemm_gwrows_ukernel_4x16_avx512, dgemm_gwrows_ukernel_6x8_avx2,
                       dgemm_gwrows_ukernel_4x8_generic)
#undef DEFINE_GWROWS_DISPATCH
