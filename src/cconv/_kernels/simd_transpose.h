/* In-register transposes (x86, AVX2 or later; the 512-bit ones need AVX-512F): a[i] lane j <-> a[j] lane i; and the
 * even lanes of two vectors (a stride-2 gather); a whole-matrix transpose built on them.
 * Shared by the packs (gemm.c), the depthwise / grouped kernels (depthwise.c), the
 * layout transposes (transpose.h) and the Winograd lane staging (winograd.c). */
#ifndef CCONV_SIMD_TRANSPOSE_H
#define CCONV_SIMD_TRANSPOSE_H
#include <immintrin.h>
#include <stdint.h>

static inline __attribute__((always_inline, target("avx2,fma"))) void cc_tr8_ps(__m256 *a)
{
    const __m256 t0 = _mm256_unpacklo_ps(a[0], a[1]), t1 = _mm256_unpackhi_ps(a[0], a[1]);
    const __m256 t2 = _mm256_unpacklo_ps(a[2], a[3]), t3 = _mm256_unpackhi_ps(a[2], a[3]);
    const __m256 t4 = _mm256_unpacklo_ps(a[4], a[5]), t5 = _mm256_unpackhi_ps(a[4], a[5]);
    const __m256 t6 = _mm256_unpacklo_ps(a[6], a[7]), t7 = _mm256_unpackhi_ps(a[6], a[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    a[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    a[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    a[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    a[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    a[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    a[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    a[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    a[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

static inline __attribute__((always_inline, target("avx2,fma"))) void cc_tr4_pd(__m256d *a)
{
    const __m256d t0 = _mm256_unpacklo_pd(a[0], a[1]), t1 = _mm256_unpackhi_pd(a[0], a[1]);
    const __m256d t2 = _mm256_unpacklo_pd(a[2], a[3]), t3 = _mm256_unpackhi_pd(a[2], a[3]);
    a[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    a[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    a[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    a[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}
/* The even lanes of a then of b: [a0 a2 b0 b2 | a4 a6 b4 b6], middle pairs swapped. */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256 cc_even2_ps(__m256 a,
                                                                                    __m256 b)
{
    return _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))),
        _MM_SHUFFLE(3, 1, 2, 0)));
}

/* The odd lanes of a then of b (cc_even2_ps's partner). */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256 cc_odd2_ps(__m256 a,
                                                                                   __m256 b)
{
    return _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))),
        _MM_SHUFFLE(3, 1, 2, 0)));
}

/* [a1 b1 a3 b3], middle pair swapped: the odd lanes of a then of b. */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256d cc_odd2_pd(__m256d a,
                                                                                    __m256d b)
{
    return _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
}

/* [a0 b0 a2 b2], middle pair swapped. */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256d cc_even2_pd(__m256d a,
                                                                                     __m256d b)
{
    return _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
}

/* AVX-512: 16 x 16 floats and 8 x 8 doubles, a[i] lane j <-> a[j] lane i (unpacks within
 * 128-bit lanes, then two rounds of 128-bit lane shuffles). */
static inline __attribute__((always_inline, target("avx512f"))) void cc_tr16_ps(__m512 *a)
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]);
    }
    /* u[4g + c]: rows 4g..4g+3, 128-bit lane l holds a[4g + r][4l + c], r = 0..3 */
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(u[i], u[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(u[i], u[4 + i], 0xDD);
        t[8 + i] = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0xDD);
    }
    for (int i = 0; i < 4; i++) {
        a[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        a[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
        a[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
        a[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xDD);
    }
}

static inline __attribute__((always_inline, target("avx512f"))) void cc_tr8_pd(__m512d *a)
{
    __m512d t[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_pd(a[2 * i], a[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(a[2 * i], a[2 * i + 1]);
    }
    /* t[2g + c]: 128-bit lane l holds a[2g + r][2l + c], r = 0, 1 */
    for (int c = 0; c < 2; c++) {
        const __m512d v0 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0x88);
        const __m512d v1 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0xDD);
        const __m512d v2 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0x88);
        const __m512d v3 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0xDD);
        a[c] = _mm512_shuffle_f64x2(v0, v2, 0x88);
        a[4 + c] = _mm512_shuffle_f64x2(v0, v2, 0xDD);
        a[2 + c] = _mm512_shuffle_f64x2(v1, v3, 0x88);
        a[6 + c] = _mm512_shuffle_f64x2(v1, v3, 0xDD);
    }
}
/* dst[c * ldd + r] = src[r * lds + c] (r < rows, c < cols) as a static function NAME
 * (ATTR: its target): V x V blocks moved through registers (TR, one of the above). A
 * copy: the same values as any loop. Used by the layout transposes (transpose.h) and the
 * Winograd lane staging (winograd.c).
 * Block order: V rows of the side with the longer rows at a time, walked along those
 * rows, so that each of the V long rows is read or written as one sequential run. With
 * 64 x 64 tiles instead, rows 4 KiB apart (32x32 or 64x64 planes) shared one L1 set and
 * the transpose ran 1.6-2.5x slower than at other widths; against those tiles (AVX-512,
 * 1 thread, 2 MB, 16 x 16 blocks): channels-last -> first 0.6-0.9x the time (1024 x 32
 * 0.85-0.88, 3136 x 64 0.77-0.83), channels-first -> last 0.6-0.96x, one case 1.03.
 * Edges: a last block that overlaps the one before it (its elements written twice, with
 * the same values) instead of element-by-element loops, on both sides. When every long
 * row starts at the same offset in a vector's alignment, the walk along them goes block
 * 0, then from the first aligned element on, so that all but the first vector on a long
 * row are aligned (with AVX-512, whole cache lines) (NumPy's large arrays start 16 bytes past a line: a 16 x 1024 x 32 float
 * to channels-first took 1.5x the aligned time, with its element loops for the edges).
 * Matrices with fewer than V rows or columns go element by element. */
#define CC_DEFINE_TRANSPOSE_BLOCKS(NAME, ATTR, T, V, VT, LOAD, STORE, TR)                 \
    ATTR static void NAME(const T *restrict src, int64_t lds, int64_t rows, int64_t cols,  \
                          T *restrict dst, int64_t ldd)                                    \
    {                                                                                      \
        if (rows < V || cols < V) {                                                        \
            for (int64_t r = 0; r < rows; r++)                                             \
                for (int64_t c = 0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];    \
            return;                                                                        \
        }                                                                                  \
        const int src_long = lds >= ldd;                                                   \
        const int64_t n_out = src_long ? rows : cols, n_in = src_long ? cols : rows;       \
        const uintptr_t la = src_long ? (uintptr_t)src : (uintptr_t)dst;                   \
        const uintptr_t vb = V * sizeof(T); /* bytes of a vector: h < V */                \
        int64_t h = 0; /* first element of a long row on a vector boundary */             \
        if (((src_long ? lds : ldd) * (int64_t)sizeof(T)) % vb == 0 && la % sizeof(T) == 0) \
            h = (int64_t)((vb - la % vb) % vb / sizeof(T));                                \
        for (int64_t o = 0;; o += V) {                                                     \
            if (o + V > n_out)                                                             \
                o = n_out - V;                                                             \
            for (int64_t p = 0;;) {                                                        \
                const int64_t q = p + V > n_in ? n_in - V : p;                             \
                const int64_t r = src_long ? o : q, c = src_long ? q : o;                  \
                VT a[V];                                                                   \
                for (int i = 0; i < V; i++) a[i] = LOAD(src + (r + i) * lds + c);          \
                TR(a);                                                                     \
                for (int j = 0; j < V; j++) STORE(dst + (c + j) * ldd + r, a[j]);          \
                if (q == n_in - V)                                                         \
                    break;                                                                 \
                p = (p == 0 && h > 0) ? h : p + V;                                         \
            }                                                                              \
            if (o == n_out - V)                                                            \
                break;                                                                     \
        }                                                                                  \
    }
#endif
