/* cconv GEMM core: packers, micro-kernels, macro-kernels and the blocked driver.
 *
 * Accumulation order (the reproducibility contract of gemm.h): every C element is ONE
 * running fused-multiply-add sum over k in increasing order. When accumulating, the
 * sum starts from the current C value (acc = C; acc = fma(a, b, acc) ...), otherwise
 * from 0. The blocked driver accumulates its K blocks into C in increasing order, so a
 * full GEMM result equals a single running FMA sum over all of k: it does not depend
 * on the ISA path, the thread count, or even on the KC/MC/NC blocking.
 *
 * ISA paths: AVX-512 (avx512f+avx512dq+fma), AVX2 (avx2+fma) and portable C. The x86
 * kernels are compiled with per-function target attributes so one build runs on any
 * x86-64 CPU; the active path is chosen at run time (cconv_isa_select).
 */
#define _POSIX_C_SOURCE 200112L /* posix_memalign under -std=c11 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "gemm.h"

#if defined(__x86_64__) || defined(_M_X64)
#define CCONV_X86 1
#include <immintrin.h>
#else
#define CCONV_X86 0
#endif

#define CC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CC_ALIGN 64

/* ------------------------------------------------------------------------------------
 * ISA detection and selection
 * ---------------------------------------------------------------------------------- */

static int g_isa_active = -1; /* -1: not chosen yet (lazily set to the best path) */

static int isa_supported(int isa)
{
    switch (isa) {
    case CCONV_ISA_GENERIC:
        return 1;
#if CCONV_X86
    case CCONV_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CCONV_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("fma");
#endif
    default:
        return 0;
    }
}

int cconv_isa_best(void)
{
    if (isa_supported(CCONV_ISA_AVX512))
        return CCONV_ISA_AVX512;
    if (isa_supported(CCONV_ISA_AVX2))
        return CCONV_ISA_AVX2;
    return CCONV_ISA_GENERIC;
}

int cconv_isa_active(void)
{
    int isa = __atomic_load_n(&g_isa_active, __ATOMIC_RELAXED);
    if (isa < 0) {
        isa = cconv_isa_best();
        __atomic_store_n(&g_isa_active, isa, __ATOMIC_RELAXED);
    }
    return isa;
}

int cconv_isa_select(int isa)
{
    if (!isa_supported(isa))
        return -1;
    __atomic_store_n(&g_isa_active, isa, __ATOMIC_RELAXED);
    return 0;
}

const char *cconv_isa_name(int isa)
{
    switch (isa) {
    case CCONV_ISA_GENERIC: return "generic";
    case CCONV_ISA_AVX2: return "avx2";
    case CCONV_ISA_AVX512: return "avx512";
    default: return NULL;
    }
}

/* ------------------------------------------------------------------------------------
 * Blocking parameters per path.
 * MC: rows of A packed per block (A block mc x KC stays in L2, 1 MB per core).
 * NC: columns of B packed per block (B block KC x nc stays in L3).
 * MC is a multiple of MR and NC a multiple of NR.
 * ---------------------------------------------------------------------------------- */

typedef struct {
    int mr, nr, mc, nc;
} blocking;

/* Overridable at compile time for tuning runs (-DCCONV_MC_F32_AVX512=...). */
#ifndef CCONV_MC_F32_AVX512
#define CCONV_MC_F32_AVX512 192
#endif
#ifndef CCONV_NC_F32_AVX512
#define CCONV_NC_F32_AVX512 4096
#endif
#ifndef CCONV_MC_F64_AVX512
#define CCONV_MC_F64_AVX512 96
#endif
#ifndef CCONV_NC_F64_AVX512
#define CCONV_NC_F64_AVX512 4096
#endif
#ifndef CCONV_MC_F32_AVX2
#define CCONV_MC_F32_AVX2 144
#endif
#ifndef CCONV_MC_F64_AVX2
#define CCONV_MC_F64_AVX2 96
#endif

static const blocking BLK_F32[3] = {
    [CCONV_ISA_GENERIC] = {4, 8, 128, 2048},
    [CCONV_ISA_AVX2] = {6, 16, CCONV_MC_F32_AVX2, 4096},
    [CCONV_ISA_AVX512] = {12, 32, CCONV_MC_F32_AVX512, CCONV_NC_F32_AVX512},
};
static const blocking BLK_F64[3] = {
    [CCONV_ISA_GENERIC] = {4, 8, 96, 2048},
    [CCONV_ISA_AVX2] = {6, 8, CCONV_MC_F64_AVX2, 4096},
    [CCONV_ISA_AVX512] = {12, 16, CCONV_MC_F64_AVX512, CCONV_NC_F64_AVX512},
};

int cconv_mr_f32(void) { return BLK_F32[cconv_isa_active()].mr; }
int cconv_nr_f32(void) { return BLK_F32[cconv_isa_active()].nr; }
int cconv_mr_f64(void) { return BLK_F64[cconv_isa_active()].mr; }
int cconv_nr_f64(void) { return BLK_F64[cconv_isa_active()].nr; }

/* ------------------------------------------------------------------------------------
 * Packing (gemm.h layout; edges zero-padded to full MR / NR panels).
 * Written once for both dtypes through a macro; the unit-stride fast paths let the
 * compiler vectorise the copies.
 * ---------------------------------------------------------------------------------- */

/* One full MR-row panel of a row-major A (unit column stride): k outer so the writes are
 * contiguous and the MR row streams are read in parallel; MR is a compile-time constant
 * in each instance so the inner copy is fully unrolled. */
#define DEFINE_PACK_A_ROWMAJOR_PANEL(NAME, T, MR)                                          \
    static void NAME(cc_idx k, const T *restrict a, cc_idx rs, T *restrict dst)            \
    {                                                                                      \
        for (cc_idx kk = 0; kk < k; kk++)                                                  \
            for (int i = 0; i < (MR); i++)                                                 \
                dst[kk * (MR) + i] = a[i * rs + kk];                                       \
    }

/* Pack m x k of A into MR panels. Fast paths: row-major full panels (above), column-
 * major panels (one memcpy per k). Everything else, and the zero-padded edge panel,
 * goes through the general strided loop. */
#define DEFINE_PACK_A(NAME, T, PANEL4, PANEL6, PANEL12, WIDE)                              \
    static void NAME(cc_idx mr, cc_idx m, cc_idx k, const T *a, cc_idx rs, cc_idx cs, T *ap) \
    {                                                                                      \
        for (cc_idx i0 = 0; i0 < m; i0 += mr) {                                            \
            const cc_idx mb = CC_MIN(mr, m - i0);                                          \
            const T *ai = a + i0 * rs;                                                     \
            T *dst = ap + i0 * k; /* panel i0/mr starts at (i0/mr)*mr*k */                 \
            if (mb == mr && cs == 1 && mr == 12) {                                         \
                PANEL12(k, ai, rs, dst);                                                   \
            } else if (mb == mr && cs == 1 && mr == 6) {                                   \
                PANEL6(k, ai, rs, dst);                                                    \
            } else if (mb == mr && cs == 1 && mr == 4) {                                   \
                PANEL4(k, ai, rs, dst);                                                    \
            } else if (mb == mr && cs == 1 && PACK_A_WIDE_OK(mr, T)) {                     \
                WIDE((int)mr, k, ai, rs, dst);                                             \
            } else if (mb == mr && rs == 1 && mr == 12) {                                  \
                /* constant size: inlined moves, not a libc call per 12 elements (a     \
                 * tenth of a channels-last grad_weight) */                               \
                for (cc_idx kk = 0; kk < k; kk++)                                          \
                    memcpy(dst + kk * 12, ai + kk * cs, 12 * sizeof(T));                   \
            } else if (mb == mr && rs == 1) {                                              \
                for (cc_idx kk = 0; kk < k; kk++)                                          \
                    memcpy(dst + kk * mr, ai + kk * cs, (size_t)mr * sizeof(T));           \
            } else {                                                                       \
                for (cc_idx kk = 0; kk < k; kk++) {                                        \
                    T *d = dst + kk * mr;                                                  \
                    cc_idx i = 0;                                                          \
                    for (; i < mb; i++)                                                    \
                        d[i] = ai[i * rs + kk * cs];                                       \
                    for (; i < mr; i++)                                                    \
                        d[i] = (T)0;                                                       \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

/* Pack k x n of B into NR panels. Row-major B (unit column stride): k outer, so each
 * source row is read once, sequentially, and split into the panels. Column-major B:
 * each column is read contiguously. Otherwise a general strided loop. */
#define DEFINE_PACK_B(NAME, T)                                                             \
    static void NAME(cc_idx nr, cc_idx k, cc_idx n, const T *b, cc_idx rs, cc_idx cs, T *bp) \
    {                                                                                      \
        const cc_idx n_full = n / nr * nr;                                                 \
        if (cs == 1) {                                                                     \
            for (cc_idx kk = 0; kk < k; kk++) {                                            \
                const T *src = b + kk * rs;                                                \
                T *d = bp + kk * nr;                                                       \
                for (cc_idx j0 = 0; j0 < n_full; j0 += nr)                                 \
                    memcpy(d + j0 * k, src + j0, (size_t)nr * sizeof(T));                  \
                if (n_full < n) {                                                          \
                    T *e = d + n_full * k;                                                 \
                    cc_idx j = 0;                                                          \
                    for (; j < n - n_full; j++)                                            \
                        e[j] = src[n_full + j];                                            \
                    for (; j < nr; j++)                                                    \
                        e[j] = (T)0;                                                       \
                }                                                                          \
            }                                                                              \
            return;                                                                        \
        }                                                                                  \
        for (cc_idx j0 = 0; j0 < n; j0 += nr) {                                            \
            const cc_idx nb = CC_MIN(nr, n - j0);                                          \
            const T *bj = b + j0 * cs;                                                     \
            T *dst = bp + j0 * k; /* panel j0/nr starts at (j0/nr)*nr*k */                 \
            if (rs == 1) {                                                                 \
                for (cc_idx j = 0; j < nb; j++) {                                          \
                    const T *col = bj + j * cs;                                            \
                    for (cc_idx kk = 0; kk < k; kk++)                                      \
                        dst[kk * nr + j] = col[kk];                                        \
                }                                                                          \
                for (cc_idx j = nb; j < nr; j++)                                           \
                    for (cc_idx kk = 0; kk < k; kk++)                                      \
                        dst[kk * nr + j] = (T)0;                                           \
            } else {                                                                       \
                for (cc_idx kk = 0; kk < k; kk++) {                                        \
                    T *d = dst + kk * nr;                                                  \
                    cc_idx j = 0;                                                          \
                    for (; j < nb; j++)                                                    \
                        d[j] = bj[kk * rs + j * cs];                                       \
                    for (; j < nr; j++)                                                    \
                        d[j] = (T)0;                                                       \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

DEFINE_PACK_A_ROWMAJOR_PANEL(pack_a_rowmajor_panel4_f32, float, 4)
DEFINE_PACK_A_ROWMAJOR_PANEL(pack_a_rowmajor_panel6_scalar_f32, float, 6)
DEFINE_PACK_A_ROWMAJOR_PANEL(pack_a_rowmajor_panel12_scalar_f32, float, 12)
DEFINE_PACK_A_ROWMAJOR_PANEL(pack_a_rowmajor_panel4_f64, double, 4)
DEFINE_PACK_A_ROWMAJOR_PANEL(pack_a_rowmajor_panel6_scalar_f64, double, 6)
DEFINE_PACK_A_ROWMAJOR_PANEL(pack_a_rowmajor_panel12_scalar_f64, double, 12)

#if CCONV_X86
#include "simd_transpose.h"

/* The row-major panels of the AVX2 / AVX-512 tiles (MR = 6 / 12) by register
 * transposes: blocks of 8 (float) / 4 (double) k of every row, the last row block
 * zero-filled in registers and stored narrower. One-shot channels-first weights are
 * packed this way on every call (scalar: 0.65 ms for 512 x 4608 floats on 2 threads). */
static inline __attribute__((always_inline, target("avx2,fma"))) void
pack_a_rowmajor_simd_f32(const int MR, cc_idx k, const float *restrict a, cc_idx rs,
                         float *restrict dst)
{
    cc_idx kk = 0;
    for (; kk + 8 <= k; kk += 8)
        for (int i0 = 0; i0 < MR; i0 += 8) {
            const int nb = MR - i0 < 8 ? MR - i0 : 8;
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < nb ? _mm256_loadu_ps(a + (i0 + i) * rs + kk) : _mm256_setzero_ps();
            cc_tr8_ps(r);
            for (int j = 0; j < 8; j++) {
                float *d = dst + (kk + j) * MR + i0;
                if (nb == 8) {
                    _mm256_storeu_ps(d, r[j]);
                } else {
                    _mm_storeu_ps(d, _mm256_castps256_ps128(r[j]));
                    if (nb == 6)
                        _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(r[j], 1));
                }
            }
        }
    for (; kk < k; kk++)
        for (int i = 0; i < MR; i++)
            dst[kk * MR + i] = a[i * rs + kk];
}

static inline __attribute__((always_inline, target("avx2,fma"))) void
pack_a_rowmajor_simd_f64(const int MR, cc_idx k, const double *restrict a, cc_idx rs,
                         double *restrict dst)
{
    cc_idx kk = 0;
    for (; kk + 4 <= k; kk += 4)
        for (int i0 = 0; i0 < MR; i0 += 4) {
            const int nb = MR - i0 < 4 ? MR - i0 : 4;
            __m256d r[4];
            for (int i = 0; i < 4; i++)
                r[i] = i < nb ? _mm256_loadu_pd(a + (i0 + i) * rs + kk) : _mm256_setzero_pd();
            cc_tr4_pd(r);
            for (int j = 0; j < 4; j++) {
                double *d = dst + (kk + j) * MR + i0;
                if (nb == 4)
                    _mm256_storeu_pd(d, r[j]);
                else
                    _mm_storeu_pd(d, _mm256_castpd256_pd128(r[j]));
            }
        }
    for (; kk < k; kk++)
        for (int i = 0; i < MR; i++)
            dst[kk * MR + i] = a[i * rs + kk];
}

__attribute__((target("avx2,fma"))) static void
pack_a_rowmajor_panel6_avx2_f32(cc_idx k, const float *a, cc_idx rs, float *dst)
{
    pack_a_rowmajor_simd_f32(6, k, a, rs, dst);
}
__attribute__((target("avx2,fma"))) static void
pack_a_rowmajor_panel12_avx2_f32(cc_idx k, const float *a, cc_idx rs, float *dst)
{
    pack_a_rowmajor_simd_f32(12, k, a, rs, dst);
}
__attribute__((target("avx2,fma"))) static void
pack_a_rowmajor_panel6_avx2_f64(cc_idx k, const double *a, cc_idx rs, double *dst)
{
    pack_a_rowmajor_simd_f64(6, k, a, rs, dst);
}
__attribute__((target("avx2,fma"))) static void
pack_a_rowmajor_panel12_avx2_f64(cc_idx k, const double *a, cc_idx rs, double *dst)
{
    pack_a_rowmajor_simd_f64(12, k, a, rs, dst);
}
/* Any panel width that is a whole number of vectors (the transposed B panels of a
 * pointwise grad_weight, NR wide). */
__attribute__((target("avx2,fma"))) static void
pack_a_rowmajor_wide_avx2_f32(int mr, cc_idx k, const float *a, cc_idx rs, float *dst)
{
    pack_a_rowmajor_simd_f32(mr, k, a, rs, dst);
}
__attribute__((target("avx2,fma"))) static void
pack_a_rowmajor_wide_avx2_f64(int mr, cc_idx k, const double *a, cc_idx rs, double *dst)
{
    pack_a_rowmajor_simd_f64(mr, k, a, rs, dst);
}
/* AVX-512: whole zmm transposes (16 floats / 8 doubles per block), about 1.8x the
 * AVX2 blocks' rate (32-row float panels of a 512 x 4608 weight: 9.0 against 5.0 Gfloat/s
 * from L2). */
#define DEFINE_PACK_WIDE_AVX512(NAME, T, VEC, W, LOAD, STORE, TR)                          \
    __attribute__((target("avx512f,avx512dq,fma"))) static void NAME(int mr, cc_idx k,   \
                                                                     const T *restrict a, \
                                                                     cc_idx rs,           \
                                                                     T *restrict dst)     \
    {                                                                                      \
        cc_idx kk = 0;                                                                     \
        for (; kk + (W) <= k; kk += (W))                                                   \
            for (int i0 = 0; i0 < mr; i0 += (W)) {                                         \
                VEC r[(W)];                                                                \
                for (int i = 0; i < (W); i++)                                              \
                    r[i] = LOAD(a + (i0 + i) * rs + kk);                                   \
                TR(r);                                                                     \
                for (int j = 0; j < (W); j++)                                              \
                    STORE(dst + (kk + j) * mr + i0, r[j]);                                 \
            }                                                                              \
        for (; kk < k; kk++)                                                               \
            for (int i = 0; i < mr; i++)                                                   \
                dst[kk * mr + i] = a[i * rs + kk];                                         \
    }
DEFINE_PACK_WIDE_AVX512(pack_a_rowmajor_wide_avx512_f32, float, __m512, 16, _mm512_loadu_ps,
                        _mm512_storeu_ps, cc_tr16_ps)
DEFINE_PACK_WIDE_AVX512(pack_a_rowmajor_wide_avx512_f64, double, __m512d, 8, _mm512_loadu_pd,
                        _mm512_storeu_pd, cc_tr8_pd)
static void pack_a_rowmajor_wide_f32(int mr, cc_idx k, const float *a, cc_idx rs, float *dst)
{
    if (cconv_isa_active() == CCONV_ISA_AVX512 && mr % 16 == 0)
        pack_a_rowmajor_wide_avx512_f32(mr, k, a, rs, dst);
    else
        pack_a_rowmajor_wide_avx2_f32(mr, k, a, rs, dst);
}
static void pack_a_rowmajor_wide_f64(int mr, cc_idx k, const double *a, cc_idx rs,
                                     double *dst)
{
    if (cconv_isa_active() == CCONV_ISA_AVX512 && mr % 8 == 0)
        pack_a_rowmajor_wide_avx512_f64(mr, k, a, rs, dst);
    else
        pack_a_rowmajor_wide_avx2_f64(mr, k, a, rs, dst);
}
#define PACK_A_SIMD(name, T)                                                               \
    if (cconv_isa_active() != CCONV_ISA_GENERIC) {                                         \
        name(k, a, rs, dst);                                                               \
        return;                                                                            \
    }
#define PACK_A_WIDE_OK(mr, T) \
    (cconv_isa_active() != CCONV_ISA_GENERIC && (mr) % (32 / (int)sizeof(T)) == 0)
#define PACK_A_WIDE_f32 pack_a_rowmajor_wide_f32
#define PACK_A_WIDE_f64 pack_a_rowmajor_wide_f64
#else
#define PACK_A_SIMD(name, T)
#define PACK_A_WIDE_OK(mr, T) 0
#define PACK_A_WIDE_f32(mr, k, a, rs, dst) ((void)0)
#define PACK_A_WIDE_f64(mr, k, a, rs, dst) ((void)0)
#endif

/* MR = 6 / 12 panels exist only on the SIMD paths, but keep the scalar fallback. */
#define DEFINE_PACK_A_PANEL_DISPATCH(NAME, T, SIMD, SCALAR)                                \
    static void NAME(cc_idx k, const T *a, cc_idx rs, T *dst)                              \
    {                                                                                      \
        PACK_A_SIMD(SIMD, T)                                                               \
        SCALAR(k, a, rs, dst);                                                             \
    }
DEFINE_PACK_A_PANEL_DISPATCH(pack_a_rowmajor_panel6_f32, float, pack_a_rowmajor_panel6_avx2_f32,
                             pack_a_rowmajor_panel6_scalar_f32)
DEFINE_PACK_A_PANEL_DISPATCH(pack_a_rowmajor_panel12_f32, float,
                             pack_a_rowmajor_panel12_avx2_f32, pack_a_rowmajor_panel12_scalar_f32)
DEFINE_PACK_A_PANEL_DISPATCH(pack_a_rowmajor_panel6_f64, double, pack_a_rowmajor_panel6_avx2_f64,
                             pack_a_rowmajor_panel6_scalar_f64)
DEFINE_PACK_A_PANEL_DISPATCH(pack_a_rowmajor_panel12_f64, double,
                             pack_a_rowmajor_panel12_avx2_f64, pack_a_rowmajor_panel12_scalar_f64)

DEFINE_PACK_A(pack_a_panels_f32, float, pack_a_rowmajor_panel4_f32,
              pack_a_rowmajor_panel6_f32, pack_a_rowmajor_panel12_f32, PACK_A_WIDE_f32)
DEFINE_PACK_A(pack_a_panels_f64, double, pack_a_rowmajor_panel4_f64,
              pack_a_rowmajor_panel6_f64, pack_a_rowmajor_panel12_f64, PACK_A_WIDE_f64)
DEFINE_PACK_B(pack_b_panels_f32, float)
DEFINE_PACK_B(pack_b_panels_f64, double)

void cconv_pack_a_f32(cc_idx m, cc_idx k, const float *a, cc_idx rs, cc_idx cs, float *ap)
{
    pack_a_panels_f32(cconv_mr_f32(), m, k, a, rs, cs, ap);
}
void cconv_pack_a_f64(cc_idx m, cc_idx k, const double *a, cc_idx rs, cc_idx cs, double *ap)
{
    pack_a_panels_f64(cconv_mr_f64(), m, k, a, rs, cs, ap);
}
#if CCONV_X86
#define T float
#define SUF f32
#define VEC __m256
#define VL 8
#define S_LOAD(p) _mm256_loadu_ps(p)
#define S_STORE(p, v) _mm256_storeu_ps((p), (v))
#define S_ZERO() _mm256_setzero_ps()
#define S_MASKLOAD(p, m) _mm256_maskload_ps((p), (m))
#define S_ADD(a, b) _mm256_add_ps((a), (b))
#define S_SET1(s) _mm256_set1_ps(s)
#define S_TR(a) cc_tr8_ps(a)
#define S_EVEN2(a, b) cc_even2_ps((a), (b))
#define S_ODD2(a, b) cc_odd2_ps((a), (b))
/* [v0 v1 v4 v5 | v2 v3 v6 v7] interleaved with z: [v0 z v1 z v2 z v3 z], [v4 z .. v7 z] */
#define S_SPREAD(v, z, lo, hi)                                                             \
    do {                                                                                   \
        const __m256 p_ = _mm256_castpd_ps(                                                \
            _mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));          \
        (lo) = _mm256_unpacklo_ps(p_, (z));                                                \
        (hi) = _mm256_unpackhi_ps(p_, (z));                                                \
    } while (0)
#define S_IOTA() _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
#define S_ISET1(i) _mm256_set1_epi32((int)(i))
#define S_IADD(a, b) _mm256_add_epi32((a), (b))
#define S_IGT(a, b) _mm256_cmpgt_epi32((a), (b))
#include "strided_impl.h"
#include "strided_undef.h"

#define T double
#define SUF f64
#define VEC __m256d
#define VL 4
#define S_LOAD(p) _mm256_loadu_pd(p)
#define S_STORE(p, v) _mm256_storeu_pd((p), (v))
#define S_ZERO() _mm256_setzero_pd()
#define S_MASKLOAD(p, m) _mm256_maskload_pd((p), (m))
#define S_ADD(a, b) _mm256_add_pd((a), (b))
#define S_SET1(s) _mm256_set1_pd(s)
#define S_TR(a) cc_tr4_pd(a)
#define S_EVEN2(a, b) cc_even2_pd((a), (b))
#define S_ODD2(a, b) cc_odd2_pd((a), (b))
/* [v0 v2 v1 v3] interleaved with z: [v0 z v1 z], [v2 z v3 z] */
#define S_SPREAD(v, z, lo, hi)                                                             \
    do {                                                                                   \
        const __m256d p_ = _mm256_permute4x64_pd((v), _MM_SHUFFLE(3, 1, 2, 0));            \
        (lo) = _mm256_unpacklo_pd(p_, (z));                                                \
        (hi) = _mm256_unpackhi_pd(p_, (z));                                                \
    } while (0)
#define S_IOTA() _mm256_setr_epi64x(0, 1, 2, 3)
#define S_ISET1(i) _mm256_set1_epi64x((long long)(i))
#define S_IADD(a, b) _mm256_add_epi64((a), (b))
#define S_IGT(a, b) _mm256_cmpgt_epi64((a), (b))
#include "strided_impl.h"
#include "strided_undef.h"

#define STRIDED_SIMD(call)                                                                 \
    if (cconv_isa_active() != CCONV_ISA_GENERIC)                                           \
        call;
#else
#define STRIDED_SIMD(call)
#endif

/* The portable loops (and each SIMD version's tail). */
#define DEFINE_STRIDED(SUF, T)                                                             \
    void cconv_gather_rows_t_##SUF(const T *const *src, const cc_idx *lo, const cc_idx *hi, \
                                   cc_idx n, cc_idx sw, T *dst, cc_idx ld)                 \
    {                                                                                      \
        if (sw == 1 || sw == 2) {                                                          \
            STRIDED_SIMD({ gather_rows_t_avx2_##SUF(src, lo, hi, n, sw, dst, ld); return; }) \
        }                                                                                  \
        for (cc_idx i = 0; i < n; i++)                                                     \
            for (int j = 0; j < CCONV_GATHER_W_##SUF; j++)                                 \
                dst[i * ld + j] = src[j] && i >= lo[j] && i < hi[j] ? src[j][i * sw] : (T)0; \
    }                                                                                      \
    void cconv_copy_strided_##SUF(T *dst, const T *src, cc_idx ss, cc_idx n)               \
    {                                                                                      \
        cc_idx j = 0;                                                                      \
        STRIDED_SIMD(j = copy_strided_avx2_##SUF(dst, src, ss, n))                         \
        for (; j < n; j++)                                                                 \
            dst[j] = src[j * ss];                                                          \
    }                                                                                      \
    void cconv_split2_##SUF(T *d0, T *d1, const T *src, cc_idx n)                         \
    {                                                                                      \
        cc_idx j = 0;                                                                      \
        STRIDED_SIMD(j = split2_avx2_##SUF(d0, d1, src, n))                                \
        for (; j < n; j++) {                                                               \
            d0[j] = src[2 * j];                                                            \
            d1[j] = src[2 * j + 1];                                                        \
        }                                                                                  \
    }                                                                                      \
    void cconv_add_strided_##SUF(T *dst, cc_idx ds, const T *src, cc_idx n)                \
    {                                                                                      \
        cc_idx j = 0;                                                                      \
        STRIDED_SIMD(j = add_strided_avx2_##SUF(dst, ds, src, n))                          \
        for (; j < n; j++)                                                                 \
            dst[j * ds] = dst[j * ds] + src[j];                                            \
    }
DEFINE_STRIDED(f32, float)
DEFINE_STRIDED(f64, double)

void cconv_pack_rows_to_panels_f32(int w, cc_idx m, cc_idx k, const float *a, cc_idx rs,
                                   float *ap)
{
    pack_a_panels_f32(w, m, k, a, rs, 1, ap);
}
void cconv_pack_rows_to_panels_f64(int w, cc_idx m, cc_idx k, const double *a, cc_idx rs,
                                   double *ap)
{
    pack_a_panels_f64(w, m, k, a, rs, 1, ap);
}
void cconv_pack_b_f32(cc_idx k, cc_idx n, const float *b, cc_idx rs, cc_idx cs, float *bp)
{
    pack_b_panels_f32(cconv_nr_f32(), k, n, b, rs, cs, bp);
}
void cconv_pack_b_f64(cc_idx k, cc_idx n, const double *b, cc_idx rs, cc_idx cs, double *bp)
{
    pack_b_panels_f64(cconv_nr_f64(), k, n, b, rs, cs, bp);
}

/* Rows [k0, k1) of a K x n matrix B with unit column stride (element (kk, j) at
 * b[kk*rs + j]) into the NR panels of its whole-K packing (panel q at bp + q*NR*K,
 * element (kk, j) at panel + kk*NR + j%NR, zero beyond n). Row-major order: B is read
 * sequentially (a 9 MB channels-last weight packed panel by panel read 2 KB strides and
 * ran 2-4x slower, depending on whether its pages were huge); the row copies have
 * constant sizes so they inline. */
#define DEFINE_PACK_B_ROWS(NAME, T, NR_FN)                                                 \
    void NAME(cc_idx k0, cc_idx k1, cc_idx n, const T *b, cc_idx rs, T *bp, cc_idx K)      \
    {                                                                                      \
        const cc_idx nr = NR_FN(), n_full = n / nr * nr;                                   \
        for (cc_idx kk = k0; kk < k1; kk++) {                                              \
            const T *src = b + kk * rs;                                                    \
            T *d = bp + kk * nr;                                                           \
            cc_idx j0 = 0;                                                                 \
            if (nr * sizeof(T) == 128)                                                     \
                for (; j0 < n_full; j0 += nr)                                              \
                    memcpy(d + j0 * K, src + j0, 128);                                     \
            else if (nr * sizeof(T) == 64)                                                 \
                for (; j0 < n_full; j0 += nr)                                              \
                    memcpy(d + j0 * K, src + j0, 64);                                      \
            else if (nr * sizeof(T) == 32)                                                 \
                for (; j0 < n_full; j0 += nr)                                              \
                    memcpy(d + j0 * K, src + j0, 32);                                      \
            for (; j0 < n_full; j0 += nr)                                                  \
                memcpy(d + j0 * K, src + j0, (size_t)nr * sizeof(T));                     \
            if (n_full < n) {                                                              \
                T *e = d + n_full * K;                                                     \
                cc_idx j = 0;                                                              \
                for (; j < n - n_full; j++)                                                \
                    e[j] = src[n_full + j];                                                \
                for (; j < nr; j++)                                                        \
                    e[j] = (T)0;                                                           \
            }                                                                              \
        }                                                                                  \
    }
DEFINE_PACK_B_ROWS(cconv_pack_b_rows_to_panels_f32, float, cconv_nr_f32)
DEFINE_PACK_B_ROWS(cconv_pack_b_rows_to_panels_f64, double, cconv_nr_f64)

/* ------------------------------------------------------------------------------------
 * Micro-kernels.
 *
 * Common contract (kc >= 0, a: one packed A panel, b: one packed B panel):
 *   C[0:MR, 0:NR] = (accumulate ? C : 0) + sum_k A[:, k] * B[k, :]
 * computed per element as acc = (accumulate ? C : 0); for k = 0..kc-1:
 * acc = fma(A[i,k], B[k,j], acc); C = acc. C has row stride ldc, unit column stride;
 * the full MR x NR tile is read/written (edge tiles go through a local buffer).
 * a and b need no particular alignment.
 * ---------------------------------------------------------------------------------- */

#define REP4(X) X(0) X(1) X(2) X(3)
#define REP6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define REP8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define REP4_U(X, u) X(0, u) X(1, u) X(2, u) X(3, u)
#define REP8_U(X, u) REP4_U(X, u) X(4, u) X(5, u) X(6, u) X(7, u)
#define REP12_U(X, u) REP8_U(X, u) X(8, u) X(9, u) X(10, u) X(11, u)

/* Portable kernels: fmaf/fma are single-rounding fused operations, so they produce the
 * same bits as the SIMD FMA instructions. Fixed-size loops: the compiler unrolls them. */
#define GEN_MR 4
#define GEN_NR 8

/* sgemm_ukernel_4x8_generic: contract above, MR=4, NR=8, float. */
static void sgemm_ukernel_4x8_generic(cc_idx kc, const float *restrict a,
                                      const float *restrict b, float *restrict c, cc_idx ldc,
                                      int accumulate)
{
    float t[GEN_MR][GEN_NR];
    for (int i = 0; i < GEN_MR; i++)
        for (int j = 0; j < GEN_NR; j++)
            t[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
    for (cc_idx kk = 0; kk < kc; kk++) {
        for (int i = 0; i < GEN_MR; i++)
            for (int j = 0; j < GEN_NR; j++)
                t[i][j] = fmaf(a[i], b[j], t[i][j]);
        a += GEN_MR;
        b += GEN_NR;
    }
    for (int i = 0; i < GEN_MR; i++)
        for (int j = 0; j < GEN_NR; j++)
            c[i * ldc + j] = t[i][j];
}

/* dgemm_ukernel_4x8_generic: contract above, MR=4, NR=8, double. */
static void dgemm_ukernel_4x8_generic(cc_idx kc, const double *restrict a,
                                      const double *restrict b, double *restrict c,
                                      cc_idx ldc, int accumulate)
{
    double t[GEN_MR][GEN_NR];
    for (int i = 0; i < GEN_MR; i++)
        for (int j = 0; j < GEN_NR; j++)
            t[i][j] = accumulate ? c[i * ldc + j] : 0.0;
    for (cc_idx kk = 0; kk < kc; kk++) {
        for (int i = 0; i < GEN_MR; i++)
            for (int j = 0; j < GEN_NR; j++)
                t[i][j] = fma(a[i], b[j], t[i][j]);
        a += GEN_MR;
        b += GEN_NR;
    }
    for (int i = 0; i < GEN_MR; i++)
        for (int j = 0; j < GEN_NR; j++)
            c[i * ldc + j] = t[i][j];
}

#if CCONV_X86

#define TARGET_AVX512 __attribute__((target("avx512f,avx512dq,fma")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))

/* Each kernel keeps its MR x NR accumulators in named registers (c<row>_<vec>) and
 * broadcasts one A value per row per k step. The row macros below expand the tile
 * without loops in the MR/NR directions. */

/* sgemm_ukernel_12x32_avx512: contract above, MR=12, NR=32 (two zmm per row),
 * 24 zmm accumulators + 2 B vectors + 1 broadcast. */
#define S512_DECL(i) __m512 c##i##_0, c##i##_1;
#define S512_LOAD(i)                                                                       \
    c##i##_0 = _mm512_loadu_ps(c + (i) * ldc);                                             \
    c##i##_1 = _mm512_loadu_ps(c + (i) * ldc + 16);
#define S512_ZERO(i) c##i##_0 = _mm512_setzero_ps(); c##i##_1 = _mm512_setzero_ps();
/* c[i] += A[i] * (b0, b1), A the packed A panel (a) or another row pointer
 * (pixrow_impl.h) */
#define S512_FMA_FROM(A, i)                                                                \
    {                                                                                      \
        const __m512 ai = _mm512_set1_ps((A)[i]);                                          \
        c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0);                                      \
        c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1);                                      \
    }
#define S512_FMA(i) S512_FMA_FROM(a, i)
#define S512_STORE(i)                                                                      \
    _mm512_storeu_ps(c + (i) * ldc, c##i##_0);                                             \
    _mm512_storeu_ps(c + (i) * ldc + 16, c##i##_1);
#define S512_PREFETCH_C(i) _mm_prefetch((const char *)(c + (i) * ldc), _MM_HINT_T0); \
    _mm_prefetch((const char *)(c + (i) * ldc + 16), _MM_HINT_T0);

TARGET_AVX512 static inline void sgemm_ukernel_12x32_avx512(cc_idx kc, const float *restrict a,
                                                            const float *restrict b,
                                                            float *restrict c, cc_idx ldc,
                                                            int accumulate)
{
    REP12(S512_DECL)
    if (accumulate) {
        REP12(S512_LOAD)
    } else {
        REP12(S512_ZERO)
    }
#pragma GCC unroll 4
    for (cc_idx kk = 0; kk < kc; kk++) {
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 b1 = _mm512_loadu_ps(b + 16);
        REP12(S512_FMA)
        a += 12;
        b += 32;
    }
    REP12(S512_STORE)
}

/* dgemm_ukernel_12x16_avx512: contract above, MR=12, NR=16 (two zmm per row). */
#define D512_DECL(i) __m512d c##i##_0, c##i##_1;
#define D512_LOAD(i)                                                                       \
    c##i##_0 = _mm512_loadu_pd(c + (i) * ldc);                                             \
    c##i##_1 = _mm512_loadu_pd(c + (i) * ldc + 8);
#define D512_ZERO(i) c##i##_0 = _mm512_setzero_pd(); c##i##_1 = _mm512_setzero_pd();
#define D512_FMA_FROM(A, i)                                                                \
    {                                                                                      \
        const __m512d ai = _mm512_set1_pd((A)[i]);                                         \
        c##i##_0 = _mm512_fmadd_pd(ai, b0, c##i##_0);                                      \
        c##i##_1 = _mm512_fmadd_pd(ai, b1, c##i##_1);                                      \
    }
#define D512_FMA(i) D512_FMA_FROM(a, i)
#define D512_STORE(i)                                                                      \
    _mm512_storeu_pd(c + (i) * ldc, c##i##_0);                                             \
    _mm512_storeu_pd(c + (i) * ldc + 8, c##i##_1);

TARGET_AVX512 static inline void dgemm_ukernel_12x16_avx512(cc_idx kc, const double *restrict a,
                                                            const double *restrict b,
                                                            double *restrict c, cc_idx ldc,
                                                            int accumulate)
{
    REP12(D512_DECL)
    if (accumulate) {
        REP12(D512_LOAD)
    } else {
        REP12(D512_ZERO)
    }
#pragma GCC unroll 4
    for (cc_idx kk = 0; kk < kc; kk++) {
        const __m512d b0 = _mm512_loadu_pd(b);
        const __m512d b1 = _mm512_loadu_pd(b + 8);
        REP12(D512_FMA)
        a += 12;
        b += 16;
    }
    REP12(D512_STORE)
}

/* sgemm_ukernel_6x16_avx2: contract above, MR=6, NR=16 (two ymm per row),
 * 12 ymm accumulators + 2 B vectors + 1 broadcast fit in 16 registers. */
#define S256_DECL(i) __m256 c##i##_0, c##i##_1;
#define S256_LOAD(i)                                                                       \
    c##i##_0 = _mm256_loadu_ps(c + (i) * ldc);                                             \
    c##i##_1 = _mm256_loadu_ps(c + (i) * ldc + 8);
#define S256_ZERO(i) c##i##_0 = _mm256_setzero_ps(); c##i##_1 = _mm256_setzero_ps();
#define S256_FMA_FROM(A, i)                                                                \
    {                                                                                      \
        const __m256 ai = _mm256_broadcast_ss((A) + (i));                                  \
        c##i##_0 = _mm256_fmadd_ps(ai, b0, c##i##_0);                                      \
        c##i##_1 = _mm256_fmadd_ps(ai, b1, c##i##_1);                                      \
    }
#define S256_FMA(i) S256_FMA_FROM(a, i)
#define S256_STORE(i)                                                                      \
    _mm256_storeu_ps(c + (i) * ldc, c##i##_0);                                             \
    _mm256_storeu_ps(c + (i) * ldc + 8, c##i##_1);

TARGET_AVX2 static inline void sgemm_ukernel_6x16_avx2(cc_idx kc, const float *restrict a,
                                                       const float *restrict b,
                                                       float *restrict c, cc_idx ldc,
                                                       int accumulate)
{
    REP6(S256_DECL)
    if (accumulate) {
        REP6(S256_LOAD)
    } else {
        REP6(S256_ZERO)
    }
#pragma GCC unroll 4
    for (cc_idx kk = 0; kk < kc; kk++) {
        const __m256 b0 = _mm256_loadu_ps(b);
        const __m256 b1 = _mm256_loadu_ps(b + 8);
        REP6(S256_FMA)
        a += 6;
        b += 16;
    }
    REP6(S256_STORE)
}

/* dgemm_ukernel_6x8_avx2: contract above, MR=6, NR=8 (two ymm per row). */
#define D256_DECL(i) __m256d c##i##_0, c##i##_1;
#define D256_LOAD(i)                                                                       \
    c##i##_0 = _mm256_loadu_pd(c + (i) * ldc);                                             \
    c##i##_1 = _mm256_loadu_pd(c + (i) * ldc + 4);
#define D256_ZERO(i) c##i##_0 = _mm256_setzero_pd(); c##i##_1 = _mm256_setzero_pd();
#define D256_FMA_FROM(A, i)                                                                \
    {                                                                                      \
        const __m256d ai = _mm256_broadcast_sd((A) + (i));                                 \
        c##i##_0 = _mm256_fmadd_pd(ai, b0, c##i##_0);                                      \
        c##i##_1 = _mm256_fmadd_pd(ai, b1, c##i##_1);                                      \
    }
#define D256_FMA(i) D256_FMA_FROM(a, i)
#define D256_STORE(i)                                                                      \
    _mm256_storeu_pd(c + (i) * ldc, c##i##_0);                                             \
    _mm256_storeu_pd(c + (i) * ldc + 4, c##i##_1);

TARGET_AVX2 static inline void dgemm_ukernel_6x8_avx2(cc_idx kc, const double *restrict a,
                                                      const double *restrict b,
                                                      double *restrict c, cc_idx ldc,
                                                      int accumulate)
{
    REP6(D256_DECL)
    if (accumulate) {
        REP6(D256_LOAD)
    } else {
        REP6(D256_ZERO)
    }
#pragma GCC unroll 4
    for (cc_idx kk = 0; kk < kc; kk++) {
        const __m256d b0 = _mm256_loadu_pd(b);
        const __m256d b1 = _mm256_loadu_pd(b + 4);
        REP6(D256_FMA)
        a += 6;
        b += 8;
    }
    REP6(D256_STORE)
}

#endif /* CCONV_X86 */

/* ------------------------------------------------------------------------------------
 * Macro-kernels: loop over the NR panels of B (outer: the B micro-panel stays in L1)
 * and the MR panels of A (inner: streamed from L2). Interior tiles write C directly;
 * edge tiles run the full kernel on an aligned local tile and copy the valid part.
 * One instance per (ISA, dtype), so the micro-kernel is inlined with its target.
 * ---------------------------------------------------------------------------------- */

/* Prefetch the C tile of the next micro-kernel call: C is usually far out of cache, and
 * the kernel loads it before its first FMA, so an unprefetched tile stalls every call. */
static inline void prefetch_c_tile(const void *c, cc_idx row_stride_bytes, cc_idx rows,
                                   cc_idx row_bytes)
{
    for (cc_idx i = 0; i < rows; i++) {
        const char *row = (const char *)c + i * row_stride_bytes;
        for (cc_idx off = 0; off < row_bytes; off += 64)
            __builtin_prefetch(row + off, 1, 3);
        __builtin_prefetch(row + row_bytes - 1, 1, 3); /* unaligned rows span one more line */
    }
}

#define DEFINE_MACRO_KERNEL(NAME, ATTR, T, MR, NR, UKERNEL)                                \
    ATTR static void NAME(cc_idx m, cc_idx n, cc_idx kc, const T *ap, cc_idx ps_a,         \
                          const T *bp, cc_idx ps_b, T *c, cc_idx ldc, int accumulate)      \
    {                                                                                      \
        for (cc_idx j0 = 0; j0 < n; j0 += (NR)) {                                          \
            const cc_idx nb = CC_MIN((cc_idx)(NR), n - j0);                                \
            const T *b = bp + (j0 / (NR)) * ps_b;                                          \
            for (cc_idx i0 = 0; i0 < m; i0 += (MR)) {                                      \
                const cc_idx mb = CC_MIN((cc_idx)(MR), m - i0);                            \
                const T *a = ap + (i0 / (MR)) * ps_a;                                      \
                T *cij = c + i0 * ldc + j0;                                                \
                if (i0 + (MR) < m)                                                         \
                    prefetch_c_tile(cij + (MR) * ldc, ldc * (cc_idx)sizeof(T),             \
                                    CC_MIN((cc_idx)(MR), m - i0 - (MR)), nb * (cc_idx)sizeof(T)); \
                else if (j0 + (NR) < n)                                                    \
                    prefetch_c_tile(c + j0 + (NR), ldc * (cc_idx)sizeof(T), CC_MIN((cc_idx)(MR), m), \
                                    CC_MIN((cc_idx)(NR), n - j0 - (NR)) * (cc_idx)sizeof(T)); \
                if (mb == (MR) && nb == (NR)) {                                            \
                    UKERNEL(kc, a, b, cij, ldc, accumulate);                               \
                } else {                                                                   \
                    T tile[(MR) * (NR)] __attribute__((aligned(CC_ALIGN)));                \
                    if (accumulate)                                                        \
                        for (cc_idx i = 0; i < mb; i++)                                    \
                            for (cc_idx j = 0; j < nb; j++)                                \
                                tile[i * (NR) + j] = cij[i * ldc + j];                     \
                    UKERNEL(kc, a, b, tile, (NR), accumulate);                             \
                    for (cc_idx i = 0; i < mb; i++)                                        \
                        for (cc_idx j = 0; j < nb; j++)                                    \
                            cij[i * ldc + j] = tile[i * (NR) + j];                         \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

DEFINE_MACRO_KERNEL(sgemm_macro_generic, , float, GEN_MR, GEN_NR, sgemm_ukernel_4x8_generic)
DEFINE_MACRO_KERNEL(dgemm_macro_generic, , double, GEN_MR, GEN_NR, dgemm_ukernel_4x8_generic)
#if CCONV_X86
DEFINE_MACRO_KERNEL(sgemm_macro_avx512, TARGET_AVX512, float, 12, 32, sgemm_ukernel_12x32_avx512)
DEFINE_MACRO_KERNEL(dgemm_macro_avx512, TARGET_AVX512, double, 12, 16, dgemm_ukernel_12x16_avx512)
DEFINE_MACRO_KERNEL(sgemm_macro_avx2, TARGET_AVX2, float, 6, 16, sgemm_ukernel_6x16_avx2)
DEFINE_MACRO_KERNEL(dgemm_macro_avx2, TARGET_AVX2, double, 6, 8, dgemm_ukernel_6x8_avx2)
#endif

typedef void (*macro_f32_fn)(cc_idx, cc_idx, cc_idx, const float *, cc_idx, const float *,
                             cc_idx, float *, cc_idx, int);
typedef void (*macro_f64_fn)(cc_idx, cc_idx, cc_idx, const double *, cc_idx, const double *,
                             cc_idx, double *, cc_idx, int);

static macro_f32_fn macro_f32_for(int isa)
{
#if CCONV_X86
    if (isa == CCONV_ISA_AVX512)
        return sgemm_macro_avx512;
    if (isa == CCONV_ISA_AVX2)
        return sgemm_macro_avx2;
#endif
    (void)isa;
    return sgemm_macro_generic;
}

static macro_f64_fn macro_f64_for(int isa)
{
#if CCONV_X86
    if (isa == CCONV_ISA_AVX512)
        return dgemm_macro_avx512;
    if (isa == CCONV_ISA_AVX2)
        return dgemm_macro_avx2;
#endif
    (void)isa;
    return dgemm_macro_generic;
}

void cconv_gemm_macro_f32(cc_idx m, cc_idx n, cc_idx kc, const float *ap, cc_idx ps_a,
                          const float *bp, cc_idx ps_b, float *c, cc_idx ldc, int accumulate)
{
    macro_f32_for(cconv_isa_active())(m, n, kc, ap, ps_a, bp, ps_b, c, ldc, accumulate);
}

void cconv_gemm_macro_f64(cc_idx m, cc_idx n, cc_idx kc, const double *ap, cc_idx ps_a,
                          const double *bp, cc_idx ps_b, double *c, cc_idx ldc, int accumulate)
{
    macro_f64_for(cconv_isa_active())(m, n, kc, ap, ps_a, bp, ps_b, c, ldc, accumulate);
}

/* ------------------------------------------------------------------------------------
 * Indirect micro-kernels ("igemm", XNNPACK style): A is given as MR row pointers
 * instead of a packed panel, so channels-last convolution can feed input rows without
 * packing them.
 *
 * Common contract (kc >= 0; ntaps >= 1 groups of MR row pointers, group t at
 * a_rows + t*ts, all valid; b: one packed B panel, element (k, j) at b[k*NR + j], its
 * ntaps*kc rows read in order, tap t's at rows t*kc ..):
 *   C[0:MR, 0:NR] = (accumulate ? C : 0) + sum_t sum_k a_rows[t*ts + i][k] * B[t*kc + k, j]
 * computed per element exactly like the packed micro-kernels (acc = accumulate ? C : 0;
 * for t, then k = 0..kc-1: acc = fma(a, B, acc); C = acc), so the result is bitwise the
 * packed kernels' result on the same data, and bitwise ntaps one-tap calls that
 * accumulate. The taps keep the accumulators in registers: a channels-last layer with
 * few channels per tap (16 -> 16 3x3x3) spent more on one call per tap, with its C
 * loads and stores, than on the FMAs. Row i of tap t is read at a_rows[t*ts + i][0..kc-1]
 * only. The full MR x NR tile of C is read/written (row stride ldc,
 * unit column stride); partial tiles go through the igemm_tile_* wrappers below.
 * No alignment requirements.
 *
 * The k loop indexes every row pointer with the loop counter (a_i[kk]: one base register
 * per row, one shared index register, unrolled steps become displacements) and advances
 * only the B pointer: 12 row bases + index + B = 14 general registers for MR = 12, which
 * x86-64 holds without spilling inside the loop.
 * ---------------------------------------------------------------------------------- */

/* sgemm_iukernel_4x8_generic: igemm contract above, MR=4, NR=8, float (fmaf). */
static void sgemm_iukernel_4x8_generic(cc_idx kc, cc_idx ntaps,
                                       const float *const *restrict a_rows, cc_idx ts,
                                       const float *restrict b, float *restrict c,
                                       cc_idx ldc, int accumulate)
{
    float t[GEN_MR][GEN_NR];
    for (int i = 0; i < GEN_MR; i++)
        for (int j = 0; j < GEN_NR; j++)
            t[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
    for (cc_idx tap = 0; tap < ntaps; tap++, a_rows += ts) {
        for (cc_idx kk = 0; kk < kc; kk++) {
            for (int i = 0; i < GEN_MR; i++) {
                const float ai = a_rows[i][kk];
                for (int j = 0; j < GEN_NR; j++)
                    t[i][j] = fmaf(ai, b[j], t[i][j]);
            }
            b += GEN_NR;
        }
    }
    for (int i = 0; i < GEN_MR; i++)
        for (int j = 0; j < GEN_NR; j++)
            c[i * ldc + j] = t[i][j];
}

/* dgemm_iukernel_4x8_generic: igemm contract above, MR=4, NR=8, double (fma). */
static void dgemm_iukernel_4x8_generic(cc_idx kc, cc_idx ntaps,
                                       const double *const *restrict a_rows, cc_idx ts,
                                       const double *restrict b, double *restrict c,
                                       cc_idx ldc, int accumulate)
{
    double t[GEN_MR][GEN_NR];
    for (int i = 0; i < GEN_MR; i++)
        for (int j = 0; j < GEN_NR; j++)
            t[i][j] = accumulate ? c[i * ldc + j] : 0.0;
    for (cc_idx tap = 0; tap < ntaps; tap++, a_rows += ts) {
        for (cc_idx kk = 0; kk < kc; kk++) {
            for (int i = 0; i < GEN_MR; i++) {
                const double ai = a_rows[i][kk];
                for (int j = 0; j < GEN_NR; j++)
                    t[i][j] = fma(ai, b[j], t[i][j]);
            }
            b += GEN_NR;
        }
    }
    for (int i = 0; i < GEN_MR; i++)
        for (int j = 0; j < GEN_NR; j++)
            c[i * ldc + j] = t[i][j];
}

#if CCONV_X86

/* All x86 igemm kernels share one loop shape. Before the loop each row pointer is moved
 * to the end of its kc-element run (a_i = a_rows[i] + kc) and the shared index kk runs
 * from -kc up to 0, so the loop needs no bound register: the MR row bases, one index and
 * the B pointer (14 general registers for MR = 12). Unrolled 4x by the compiler, like the
 * packed kernels. STEP(u) does the FMAs for k = kk + u with the B row at b + u*NR.
 * Register note (GCC 12, AVX-512, MR = 12): the compiler turns kk into a byte offset plus
 * a separate trip counter, which leaves one row base and the counter outside the 15
 * usable registers: 5 stack accesses + 3 GPR<->xmm moves per 4 k steps (no zmm spills), vs
 * 96 FMAs and 56 loads. Measured at the packed kernel's speed, so it is left to the
 * compiler. A hand-unrolled body (kk += 4, a_i[kk + u]) keeps every pointer in registers
 * but makes GCC rotate the zmm accumulators (extra moves and one zmm spill) and spills
 * ymm accumulators on AVX2, so it is not used. The AVX-512 kernels are not inlined into
 * the tile wrapper: its aligned local tile needs a frame pointer, one register fewer. */
#define IUKERNEL_K_LOOP(NR, STEP)                                                          \
    {                                                                                      \
        _Pragma("GCC unroll 4")                                                            \
        for (cc_idx kk = -kc; kk < 0; kk++) {                                              \
            STEP(0)                                                                        \
            b += (NR);                                                                     \
        }                                                                                  \
    }

/* Row pointer i of the tile, moved to the end of its run (see IUKERNEL_K_LOOP). */
#define IROW_F32(i) const float *restrict a##i = a_rows[i] + kc;
#define IROW_F64(i) const double *restrict a##i = a_rows[i] + kc;

/* The taps around IUKERNEL_K_LOOP: each loads its MR row pointers (IROW) and runs the
 * k loop, which leaves b at the next tap's rows. */
#define IUKERNEL_TAPS(MRX, IROW, NR, STEP)                                                 \
    for (cc_idx tap = 0; tap < ntaps; tap++, a_rows += ts) {                               \
        MRX(IROW)                                                                          \
        IUKERNEL_K_LOOP(NR, STEP)                                                          \
    }

/* sgemm_iukernel_x32_avx512_12 (and _8, _4): igemm contract above, MR=12, NR=32 (two
 * zmm per row), 24 zmm accumulators + 2 B vectors + 1 broadcast; the accumulators reuse
 * S512_* above. */
#define S512I_ROW(i, u)                                                                    \
    {                                                                                      \
        const __m512 ai = _mm512_set1_ps(a##i[kk + (u)]);                                  \
        c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0);                                      \
        c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1);                                      \
    }
#define S512I_STEP_R(REPU, u)                                                              \
    {                                                                                      \
        const __m512 b0 = _mm512_loadu_ps(b + (u) * 32);                                   \
        const __m512 b1 = _mm512_loadu_ps(b + (u) * 32 + 16);                              \
        REPU(S512I_ROW, u)                                                                 \
    }

/* The shape of every AVX-512 igemm kernel: REPX its rows (REP12, REP8 or REP4), IROW
 * the row pointers, P##_DECL / _LOAD / _ZERO / _STORE the accumulators, STEP(u) the FMAs
 * of one k. The 8- and 4-row kernels (rows 0..7 / 0..3 of the same contract) serve
 * tiles of at most 8 / 4 rows: each element gets the same FMAs in the same order, so the
 * same bits, without the FMAs of rows that are discarded (Winograd's 16 tiles of a 7x7
 * image ran 24 rows: 12 + 12). */
#define DEFINE_IUKERNEL_AVX512(NAME, T, NR, IROW, P, STEP, REPX)                           \
    TARGET_AVX512 __attribute__((noinline)) static void NAME(                              \
        cc_idx kc, cc_idx ntaps, const T *const *restrict a_rows, cc_idx ts,               \
        const T *restrict b, T *restrict c, cc_idx ldc, int accumulate)                    \
    {                                                                                      \
        REPX(P##_DECL)                                                                     \
        if (accumulate) {                                                                  \
            REPX(P##_LOAD)                                                                 \
        } else {                                                                           \
            REPX(P##_ZERO)                                                                 \
        }                                                                                  \
        IUKERNEL_TAPS(REPX, IROW, NR, STEP)                                                \
        REPX(P##_STORE)                                                                    \
    }
/* One kernel per row count 12 / 8 / 4: NAME##_12, _8, _4 (STEP##_R takes the REP##_U). */
#define DEFINE_IUKERNELS_AVX512(NAME, T, NR, IROW, P, STEP)                                \
    DEFINE_IUKERNEL_AVX512(NAME##_12, T, NR, IROW, P, STEP##12, REP12)                     \
    DEFINE_IUKERNEL_AVX512(NAME##_8, T, NR, IROW, P, STEP##8, REP8)                        \
    DEFINE_IUKERNEL_AVX512(NAME##_4, T, NR, IROW, P, STEP##4, REP4)
#define S512I_STEP12(u) S512I_STEP_R(REP12_U, u)
#define S512I_STEP8(u) S512I_STEP_R(REP8_U, u)
#define S512I_STEP4(u) S512I_STEP_R(REP4_U, u)

DEFINE_IUKERNELS_AVX512(sgemm_iukernel_x32_avx512, float, 32, IROW_F32, S512, S512I_STEP)

/* sgemm_iukernel_x16of32_avx512_*: the left half of sgemm_iukernel_x32_avx512_* (one zmm
 * per row, columns 0..15 of a 32-column B panel: b's rows stay 32 apart). For tiles of at
 * most 16 columns (the last panel of 1..16 output channels): the same FMAs per element in
 * the same order, so the same bits, for half the work. */
#define S512H_DECL(i) __m512 c##i##_0;
#define S512H_LOAD(i) c##i##_0 = _mm512_loadu_ps(c + (i) * ldc);
#define S512H_ZERO(i) c##i##_0 = _mm512_setzero_ps();
#define S512H_STORE(i) _mm512_storeu_ps(c + (i) * ldc, c##i##_0);
#define S512HI_ROW(i, u)                                                                   \
    c##i##_0 = _mm512_fmadd_ps(_mm512_set1_ps(a##i[kk + (u)]), b0, c##i##_0);
#define S512HI_STEP_R(REPU, u)                                                             \
    {                                                                                      \
        const __m512 b0 = _mm512_loadu_ps(b + (u) * 32);                                   \
        REPU(S512HI_ROW, u)                                                                \
    }
#define S512HI_STEP12(u) S512HI_STEP_R(REP12_U, u)
#define S512HI_STEP8(u) S512HI_STEP_R(REP8_U, u)
#define S512HI_STEP4(u) S512HI_STEP_R(REP4_U, u)

DEFINE_IUKERNELS_AVX512(sgemm_iukernel_x16of32_avx512, float, 32, IROW_F32, S512H,
                        S512HI_STEP)

/* dgemm_iukernel_x8of16_avx512_*: the same for float64 (one zmm of 8 per row, columns
 * 0..7 of a 16-column panel). */
#define D512H_DECL(i) __m512d c##i##_0;
#define D512H_LOAD(i) c##i##_0 = _mm512_loadu_pd(c + (i) * ldc);
#define D512H_ZERO(i) c##i##_0 = _mm512_setzero_pd();
#define D512H_STORE(i) _mm512_storeu_pd(c + (i) * ldc, c##i##_0);
#define D512HI_ROW(i, u)                                                                   \
    c##i##_0 = _mm512_fmadd_pd(_mm512_set1_pd(a##i[kk + (u)]), b0, c##i##_0);
#define D512HI_STEP_R(REPU, u)                                                             \
    {                                                                                      \
        const __m512d b0 = _mm512_loadu_pd(b + (u) * 16);                                  \
        REPU(D512HI_ROW, u)                                                                \
    }
#define D512HI_STEP12(u) D512HI_STEP_R(REP12_U, u)
#define D512HI_STEP8(u) D512HI_STEP_R(REP8_U, u)
#define D512HI_STEP4(u) D512HI_STEP_R(REP4_U, u)

DEFINE_IUKERNELS_AVX512(dgemm_iukernel_x8of16_avx512, double, 16, IROW_F64, D512H,
                        D512HI_STEP)

/* dgemm_iukernel_x16_avx512_*: igemm contract above, MR=12, NR=16 (two zmm per row). */
#define D512I_ROW(i, u)                                                                    \
    {                                                                                      \
        const __m512d ai = _mm512_set1_pd(a##i[kk + (u)]);                                 \
        c##i##_0 = _mm512_fmadd_pd(ai, b0, c##i##_0);                                      \
        c##i##_1 = _mm512_fmadd_pd(ai, b1, c##i##_1);                                      \
    }
#define D512I_STEP_R(REPU, u)                                                              \
    {                                                                                      \
        const __m512d b0 = _mm512_loadu_pd(b + (u) * 16);                                  \
        const __m512d b1 = _mm512_loadu_pd(b + (u) * 16 + 8);                              \
        REPU(D512I_ROW, u)                                                                 \
    }
#define D512I_STEP12(u) D512I_STEP_R(REP12_U, u)
#define D512I_STEP8(u) D512I_STEP_R(REP8_U, u)
#define D512I_STEP4(u) D512I_STEP_R(REP4_U, u)

DEFINE_IUKERNELS_AVX512(dgemm_iukernel_x16_avx512, double, 16, IROW_F64, D512, D512I_STEP)

/* sgemm_iukernel_6x16_avx2: igemm contract above, MR=6, NR=16 (two ymm per row). */
#define S256I_ROW(i, u)                                                                    \
    {                                                                                      \
        const __m256 ai = _mm256_broadcast_ss(a##i + kk + (u));                            \
        c##i##_0 = _mm256_fmadd_ps(ai, b0, c##i##_0);                                      \
        c##i##_1 = _mm256_fmadd_ps(ai, b1, c##i##_1);                                      \
    }
#define S256I_STEP(u)                                                                      \
    {                                                                                      \
        const __m256 b0 = _mm256_loadu_ps(b + (u) * 16);                                   \
        const __m256 b1 = _mm256_loadu_ps(b + (u) * 16 + 8);                               \
        S256I_ROW(0, u) S256I_ROW(1, u) S256I_ROW(2, u)                                    \
        S256I_ROW(3, u) S256I_ROW(4, u) S256I_ROW(5, u)                                    \
    }

TARGET_AVX2 static inline void sgemm_iukernel_6x16_avx2(cc_idx kc, cc_idx ntaps,
                                                        const float *const *restrict a_rows,
                                                        cc_idx ts, const float *restrict b,
                                                        float *restrict c, cc_idx ldc,
                                                        int accumulate)
{
    REP6(S256_DECL)
    if (accumulate) {
        REP6(S256_LOAD)
    } else {
        REP6(S256_ZERO)
    }
    IUKERNEL_TAPS(REP6, IROW_F32, 16, S256I_STEP)
    REP6(S256_STORE)
}

/* dgemm_iukernel_6x8_avx2: igemm contract above, MR=6, NR=8 (two ymm per row). */
#define D256I_ROW(i, u)                                                                    \
    {                                                                                      \
        const __m256d ai = _mm256_broadcast_sd(a##i + kk + (u));                           \
        c##i##_0 = _mm256_fmadd_pd(ai, b0, c##i##_0);                                      \
        c##i##_1 = _mm256_fmadd_pd(ai, b1, c##i##_1);                                      \
    }
#define D256I_STEP(u)                                                                      \
    {                                                                                      \
        const __m256d b0 = _mm256_loadu_pd(b + (u) * 8);                                   \
        const __m256d b1 = _mm256_loadu_pd(b + (u) * 8 + 4);                               \
        D256I_ROW(0, u) D256I_ROW(1, u) D256I_ROW(2, u)                                    \
        D256I_ROW(3, u) D256I_ROW(4, u) D256I_ROW(5, u)                                    \
    }

TARGET_AVX2 static inline void dgemm_iukernel_6x8_avx2(cc_idx kc, cc_idx ntaps,
                                                       const double *const *restrict a_rows,
                                                       cc_idx ts, const double *restrict b,
                                                       double *restrict c, cc_idx ldc,
                                                       int accumulate)
{
    REP6(D256_DECL)
    if (accumulate) {
        REP6(D256_LOAD)
    } else {
        REP6(D256_ZERO)
    }
    IUKERNEL_TAPS(REP6, IROW_F64, 8, D256I_STEP)
    REP6(D256_STORE)
}

#endif /* CCONV_X86 */

/* One igemm tile of ntaps taps (the gemm.h contract of cconv_igemm_taps_ukernel_*): full
 * tiles go straight to the kernel on C; partial tiles run the full kernel on an aligned
 * local tile (rows i >= m read through their pointers, which the contract keeps
 * readable, and are discarded), then copy C[0:m, 0:n] back, like the macro-kernel edge
 * path. */
#define DEFINE_IGEMM_TILE(NAME, ATTR, T, MR, NR, IUKERNEL)                                 \
    ATTR static void NAME(cc_idx kc, cc_idx ntaps, const T *const *a_rows, cc_idx ts,      \
                          const T *b, T *c, cc_idx ldc, cc_idx m, cc_idx n,               \
                          int accumulate)                                                  \
    {                                                                                      \
        if (m <= 0 || n <= 0)                                                              \
            return;                                                                        \
        if (m == (MR) && n == (NR)) {                                                      \
            IUKERNEL(kc, ntaps, a_rows, ts, b, c, ldc, accumulate);                        \
            return;                                                                        \
        }                                                                                  \
        T tile[(MR) * (NR)] __attribute__((aligned(CC_ALIGN)));                            \
        if (accumulate)                                                                    \
            for (cc_idx i = 0; i < m; i++)                                                 \
                for (cc_idx j = 0; j < n; j++)                                             \
                    tile[i * (NR) + j] = c[i * ldc + j];                                   \
        IUKERNEL(kc, ntaps, a_rows, ts, b, tile, (NR), accumulate);                        \
        for (cc_idx i = 0; i < m; i++)                                                     \
            for (cc_idx j = 0; j < n; j++)                                                 \
                c[i * ldc + j] = tile[i * (NR) + j];                                       \
    }

/* The AVX-512 tiles of at most NR/2 columns run the half-width kernel (HALF: the same
 * bits, half the FMAs), on C when all MR rows and NR/2 columns are there. */
#define DEFINE_IGEMM_TILE_HALVES(NAME, ATTR, T, MR, NR, IUKERNEL, HALF)                    \
    DEFINE_IGEMM_TILE(NAME##_half, ATTR, T, MR, (NR) / 2, HALF)                            \
    DEFINE_IGEMM_TILE(NAME##_full, ATTR, T, MR, NR, IUKERNEL)                              \
    ATTR static void NAME(cc_idx kc, cc_idx ntaps, const T *const *a_rows, cc_idx ts,      \
                          const T *b, T *c, cc_idx ldc, cc_idx m, cc_idx n,               \
                          int accumulate)                                                  \
    {                                                                                      \
        if (n <= (NR) / 2)                                                                 \
            NAME##_half(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate);               \
        else                                                                               \
            NAME##_full(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate);               \
    }

DEFINE_IGEMM_TILE(igemm_tile_generic_f32, , float, GEN_MR, GEN_NR, sgemm_iukernel_4x8_generic)
DEFINE_IGEMM_TILE(igemm_tile_generic_f64, , double, GEN_MR, GEN_NR, dgemm_iukernel_4x8_generic)
#if CCONV_X86
/* The AVX-512 tiles by rows: at most 4 or 8 run the 4- or 8-row kernels. */
#define DEFINE_IGEMM_TILE_ROWS(NAME, ATTR, T, NR, FULL, HALF)                              \
    DEFINE_IGEMM_TILE_HALVES(NAME##_r12, ATTR, T, 12, NR, FULL##_12, HALF##_12)            \
    DEFINE_IGEMM_TILE_HALVES(NAME##_r8, ATTR, T, 8, NR, FULL##_8, HALF##_8)                \
    DEFINE_IGEMM_TILE_HALVES(NAME##_r4, ATTR, T, 4, NR, FULL##_4, HALF##_4)                \
    ATTR static void NAME(cc_idx kc, cc_idx ntaps, const T *const *a_rows, cc_idx ts,      \
                          const T *b, T *c, cc_idx ldc, cc_idx m, cc_idx n,               \
                          int accumulate)                                                  \
    {                                                                                      \
        if (m <= 4)                                                                        \
            NAME##_r4(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate);                 \
        else if (m <= 8)                                                                   \
            NAME##_r8(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate);                 \
        else                                                                               \
            NAME##_r12(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate);                \
    }
DEFINE_IGEMM_TILE_ROWS(igemm_tile_avx512_f32, TARGET_AVX512, float, 32,
                       sgemm_iukernel_x32_avx512, sgemm_iukernel_x16of32_avx512)
DEFINE_IGEMM_TILE_ROWS(igemm_tile_avx512_f64, TARGET_AVX512, double, 16,
                       dgemm_iukernel_x16_avx512, dgemm_iukernel_x8of16_avx512)
DEFINE_IGEMM_TILE(igemm_tile_avx2_f32, TARGET_AVX2, float, 6, 16, sgemm_iukernel_6x16_avx2)
DEFINE_IGEMM_TILE(igemm_tile_avx2_f64, TARGET_AVX2, double, 6, 8, dgemm_iukernel_6x8_avx2)
#endif

/* The public entries per dtype: the taps one (ISA dispatch), and the one-tap one, which
 * may leave rows i >= m NULL: they then read row 0 (results discarded). */
#define DEFINE_IGEMM_ENTRIES(SFX, T, MRFN)                                                 \
    void cconv_igemm_taps_ukernel_##SFX(cc_idx kc, cc_idx ntaps, const T *const *a_rows,   \
                                        cc_idx ts, const T *b, T *c, cc_idx ldc, cc_idx m, \
                                        cc_idx n, int accumulate)                          \
    {                                                                                      \
        switch (cconv_isa_active()) {                                                      \
        IGEMM_X86_CASES(SFX)                                                               \
        default:                                                                           \
            igemm_tile_generic_##SFX(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate);  \
            return;                                                                        \
        }                                                                                  \
    }                                                                                      \
    void cconv_igemm_ukernel_##SFX(cc_idx kc, const T *const *a_rows, const T *b, T *c,    \
                                   cc_idx ldc, cc_idx m, cc_idx n, int accumulate)         \
    {                                                                                      \
        const int mr = MRFN();                                                             \
        const T *rows[16];                                                                 \
        if (m <= 0)                                                                        \
            return;                                                                        \
        if (m < mr) {                                                                      \
            for (int i = 0; i < mr; i++)                                                   \
                rows[i] = i < m ? a_rows[i] : a_rows[0];                                   \
            a_rows = rows;                                                                 \
        }                                                                                  \
        cconv_igemm_taps_ukernel_##SFX(kc, 1, a_rows, mr, b, c, ldc, m, n, accumulate);    \
    }

#if CCONV_X86
#define IGEMM_X86_CASES(SFX)                                                               \
    case CCONV_ISA_AVX512:                                                                 \
        igemm_tile_avx512_##SFX(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate);       \
        return;                                                                            \
    case CCONV_ISA_AVX2:                                                                   \
        igemm_tile_avx2_##SFX(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate);         \
        return;
#else
#define IGEMM_X86_CASES(SFX)
#endif

DEFINE_IGEMM_ENTRIES(f32, float, cconv_mr_f32)
DEFINE_IGEMM_ENTRIES(f64, double, cconv_mr_f64)
#undef IGEMM_X86_CASES
#undef DEFINE_IGEMM_ENTRIES

/* ------------------------------------------------------------------------------------
 * Blocked GEMM driver.
 *
 * for jc (NC columns of B/C):
 *   for pc (KC rows of B, increasing: keeps the single running sum per element):
 *     pack B[pc:pc+kc, jc:jc+nc] once, shared by all threads (panels split among them)
 *     each thread t owns a fixed rectangle of C[:, jc:jc+nc] (rows split first, then
 *     NR panels if there are fewer MR panels than threads); inside it, for ic (MC rows):
 *       pack its A block into its own buffer, run the macro-kernel.
 * Every C element is computed by the same sequence of FMAs whatever the thread count.
 * ---------------------------------------------------------------------------------- */

static void *aligned_buffer(size_t bytes)
{
    void *p = NULL;
    bytes = (bytes + CC_ALIGN - 1) / CC_ALIGN * CC_ALIGN;
    if (bytes == 0)
        bytes = CC_ALIGN;
    if (posix_memalign(&p, CC_ALIGN, bytes) != 0)
        return NULL;
    return p;
}

static cc_idx ceil_div(cc_idx a, cc_idx b) { return (a + b - 1) / b; }

/* Thread grid over the C block: tm threads along M (in MR panels), tn along N (in NR
 * panels); tm * tn <= nthreads. Threads beyond tm*tn get no work. */
static void thread_grid(cc_idx m_panels, cc_idx n_panels, int nthreads, int *tm, int *tn)
{
    cc_idx gm = CC_MIN((cc_idx)nthreads, m_panels);
    if (gm < 1)
        gm = 1;
    cc_idx gn = CC_MIN((cc_idx)(nthreads / gm), n_panels);
    if (gn < 1)
        gn = 1;
    *tm = (int)gm;
    *tn = (int)gn;
}

/* Balanced split of `panels` units among `parts`: range of part p, in units. */
static void split_range(cc_idx panels, int parts, int p, cc_idx *lo, cc_idx *hi)
{
    cc_idx base = panels / parts, rem = panels % parts;
    *lo = p * base + CC_MIN((cc_idx)p, rem);
    *hi = *lo + base + (p < rem ? 1 : 0);
}

#define DEFINE_GEMM_DRIVER(NAME, T, BLK, KC, MACRO_FOR, PACK_A, PACK_B)                    \
    int NAME(cc_idx m, cc_idx n, cc_idx k, const T *a, cc_idx rsa, cc_idx csa, const T *b, \
             cc_idx rsb, cc_idx csb, T *c, cc_idx ldc, int nthreads)                       \
    {                                                                                      \
        if (m <= 0 || n <= 0)                                                              \
            return 0;                                                                      \
        if (k <= 0) {                                                                      \
            for (cc_idx i = 0; i < m; i++)                                                 \
                memset(c + i * ldc, 0, (size_t)n * sizeof(T));                             \
            return 0;                                                                      \
        }                                                                                  \
        if (nthreads < 1)                                                                  \
            nthreads = 1;                                                                  \
        const int isa = cconv_isa_active();                                                \
        const blocking bl = BLK[isa];                                                      \
        const cc_idx mr = bl.mr, nr = bl.nr;                                               \
        const cc_idx kc_max = CC_MIN(k, (cc_idx)(KC));                                     \
        const cc_idx nc_max = CC_MIN(ceil_div(n, nr) * nr, (cc_idx)bl.nc);                 \
        const cc_idx mc_max = CC_MIN(ceil_div(m, mr) * mr, (cc_idx)bl.mc);                 \
        int tm, tn;                                                                        \
        thread_grid(ceil_div(m, mr), ceil_div(nc_max, nr), nthreads, &tm, &tn);            \
        const int nt = tm * tn;                                                            \
        const size_t a_elems = (size_t)((mc_max * kc_max + CC_ALIGN) / CC_ALIGN * CC_ALIGN); \
        T *bbuf = (T *)aligned_buffer((size_t)(nc_max * kc_max) * sizeof(T));              \
        T *abuf = (T *)aligned_buffer(a_elems * (size_t)nt * sizeof(T));                   \
        if (bbuf == NULL || abuf == NULL) {                                                \
            free(bbuf);                                                                    \
            free(abuf);                                                                    \
            return -1;                                                                     \
        }                                                                                  \
        const MACRO_FOR##_t macro = MACRO_FOR(isa);                                        \
        for (cc_idx jc = 0; jc < n; jc += nc_max) {                                        \
            const cc_idx nc = CC_MIN(nc_max, n - jc);                                      \
            const cc_idx n_panels = ceil_div(nc, nr);                                      \
            int tm_j, tn_j;                                                                \
            thread_grid(ceil_div(m, mr), n_panels, nt, &tm_j, &tn_j);                      \
            for (cc_idx pc = 0; pc < k; pc += kc_max) {                                    \
                const cc_idx kc = CC_MIN(kc_max, k - pc);                                  \
                const int accumulate = pc > 0;                                             \
                /* pack B: NR panels split among threads */                                \
                PARALLEL_FOR                                                               \
                for (int t = 0; t < nt; t++) {                                             \
                    cc_idx p0, p1;                                                         \
                    split_range(n_panels, nt, t, &p0, &p1);                                \
                    if (p1 > p0) {                                                         \
                        const cc_idx j0 = p0 * nr, j1 = CC_MIN(p1 * nr, nc);               \
                        PACK_B(nr, kc, j1 - j0, b + pc * rsb + (jc + j0) * csb, rsb, csb,      \
                               bbuf + p0 * nr * kc);                                       \
                    }                                                                      \
                }                                                                          \
                /* compute: thread t owns rows panels [r0,r1) x column panels [q0,q1) */   \
                PARALLEL_FOR                                                               \
                for (int t = 0; t < nt; t++) {                                             \
                    if (t >= tm_j * tn_j)                                                  \
                        continue;                                                          \
                    T *ab = abuf + (size_t)t * a_elems;                                    \
                    cc_idx r0, r1, q0, q1;                                                 \
                    split_range(ceil_div(m, mr), tm_j, t / tn_j, &r0, &r1);                \
                    split_range(n_panels, tn_j, t % tn_j, &q0, &q1);                       \
                    const cc_idx i_end = CC_MIN(r1 * mr, m);                               \
                    const cc_idx j0 = q0 * nr, j1 = CC_MIN(q1 * nr, nc);                   \
                    if (j1 <= j0)                                                          \
                        continue;                                                          \
                    for (cc_idx ic = r0 * mr; ic < i_end; ic += mc_max) {                  \
                        const cc_idx mc = CC_MIN(mc_max, i_end - ic);                      \
                        PACK_A(mr, mc, kc, a + ic * rsa + pc * csa, rsa, csa, ab);             \
                        macro(mc, j1 - j0, kc, ab, kc * mr, bbuf + q0 * nr * kc, kc * nr,  \
                              c + ic * ldc + jc + j0, ldc, accumulate);                    \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        free(bbuf);                                                                        \
        free(abuf);                                                                        \
        return 0;                                                                          \
    }

#ifdef _OPENMP
#define PARALLEL_FOR _Pragma("omp parallel for schedule(static) num_threads(nt)")
#else
#define PARALLEL_FOR
#endif

typedef macro_f32_fn macro_f32_for_t;
typedef macro_f64_fn macro_f64_for_t;

DEFINE_GEMM_DRIVER(cconv_gemm_f32, float, BLK_F32, CCONV_KC_F32, macro_f32_for,
                   pack_a_panels_f32, pack_b_panels_f32)
DEFINE_GEMM_DRIVER(cconv_gemm_f64, double, BLK_F64, CCONV_KC_F64, macro_f64_for,
                   pack_a_panels_f64, pack_b_panels_f64)

/* ------------------------------------------------------------------------------------
 * Pixel-row micro-kernels (gemm.h: cconv_pixrow_ukernel_*).
 * ---------------------------------------------------------------------------------- */
#include "pixrow_impl.h"

/* ------------------------------------------------------------------------------------
 * Channels-last grad_weight micro-kernels (gemm.h: cconv_gwrows_ukernel_*).
 * ---------------------------------------------------------------------------------- */
#include "gwrows_impl.h"
