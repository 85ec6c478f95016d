/* Strided row helpers of gemm.h (cconv_gather_rows_t, cconv_copy_strided,
 * cconv_add_strided), written once and instantiated per dtype by gemm.c, which defines
 * before each inclusion:
 *   T, SUF (f32 / f64), VEC (a 256-bit vector), IVEC (its lane-wide integers), VL lanes,
 *   S_LOAD(p) S_STORE(p, v) S_ZERO() S_MASKLOAD(p, m) S_ADD(a, b) S_SET1(s)
 *   S_TR(a)        VL x VL register transpose of a[0..VL-1]
 *   S_EVEN2(a, b)  the even lanes of a then of b (S_ODD2: the odd lanes)
 *   S_SPREAD(v, z, lo, hi)  lo = [v0 z v1 z ..], hi = the same for v's upper half
 *   S_IOTA() S_ISET1(i) S_IADD(a, b) S_IGT(a, b)  lane indices and their compares
 * AVX2 target; the portable loops stay in gemm.c. */

#define S_CAT2(a, b) a##_##b
#define S_CAT(a, b) S_CAT2(a, b)
#define S_FN(name) S_CAT(name, SUF)

/* lanes t of a block with 0 <= off + t < len */
#define S_RANGE_MASK(off, len)                                                             \
    _mm256_andnot_si256(S_IGT(_mm256_setzero_si256(), S_IADD(S_IOTA(), S_ISET1(off))),     \
                        S_IGT(S_ISET1(len), S_IADD(S_IOTA(), S_ISET1(off))))

/* cconv_gather_rows_t: blocks of VL pixels, one register transpose each; the lanes
 * outside a row's [lo, hi) are masked loads' zeros (a masked lane reads nothing), so the
 * edges and the last partial block need no scalar code. Stride 2 takes the even lanes of
 * two loads. */
__attribute__((target("avx2,fma"))) static void
S_FN(gather_rows_t_avx2)(const T *const *src, const cc_idx *lo, const cc_idx *hi, cc_idx n,
                         cc_idx sw, T *dst, cc_idx ld)
{
    cc_idx A = 0, B = n; /* where every row reads (or is NULL) */
    for (int j = 0; j < VL; j++)
        if (src[j]) {
            A = lo[j] > A ? lo[j] : A;
            B = hi[j] < B ? hi[j] : B;
        }
    for (cc_idx i = 0; i < n; i += VL) {
        VEC r[VL];
        /* every row reads the whole block: plain loads (stride 2: both end by element
         * 2B - 2) */
        if (i >= A && i + VL + (sw == 2) <= B) {
            for (int j = 0; j < VL; j++)
                r[j] = !src[j] ? S_ZERO()
                       : sw == 1 ? S_LOAD(src[j] + i)
                                 : S_EVEN2(S_LOAD(src[j] + 2 * i), S_LOAD(src[j] + 2 * i + VL));
        } else {
            for (int j = 0; j < VL; j++) {
                const cc_idx a = lo[j], b = hi[j] < n ? hi[j] : n;
                if (!src[j] || a >= b || b <= i || a >= i + VL) {
                    r[j] = S_ZERO();
                } else if (sw == 1) {
                    const T *p = src[j] + i;
                    r[j] = a <= i && b >= i + VL ? S_LOAD(p) : S_MASKLOAD(p, S_RANGE_MASK(i - a, b - a));
                } else { /* sw == 2: elements 2a .. 2(b-1) of the row */
                    const T *p = src[j] + 2 * i;
                    const cc_idx e = 2 * (i - a), top = 2 * (b - a) - 1;
                    r[j] = S_EVEN2(S_MASKLOAD(p, S_RANGE_MASK(e, top)),
                                   S_MASKLOAD(p + VL, S_RANGE_MASK(e + VL, top)));
                }
            }
        }
        S_TR(r);
        const int rows = n - i < VL ? (int)(n - i) : VL;
        for (int j = 0; j < rows; j++)
            S_STORE(dst + (i + j) * ld, r[j]);
    }
}

/* cconv_copy_strided, stride 2: the even lanes of two loads, whole vectors while the
 * second load ends before src's last element. Returns the elements done. */
__attribute__((target("avx2,fma"))) static cc_idx
S_FN(copy_strided_avx2)(T *dst, const T *src, cc_idx ss, cc_idx n)
{
    cc_idx j = 0;
    if (ss == 2)
        for (; j + VL < n; j += VL)
            S_STORE(dst + j, S_EVEN2(S_LOAD(src + 2 * j), S_LOAD(src + 2 * j + VL)));
    return j;
}

/* cconv_split2: d0[j] = src[2j], d1[j] = src[2j + 1], whole vectors (both loads inside
 * src[0 .. 2n)). Returns the elements done. */
__attribute__((target("avx2,fma"))) static cc_idx
S_FN(split2_avx2)(T *d0, T *d1, const T *src, cc_idx n)
{
    cc_idx j = 0;
    for (; j + VL <= n; j += VL) {
        const VEC a = S_LOAD(src + 2 * j), b = S_LOAD(src + 2 * j + VL);
        S_STORE(d0 + j, S_EVEN2(a, b));
        S_STORE(d1 + j, S_ODD2(a, b));
    }
    return j;
}

/* cconv_add_strided, strides 1 and 2: VL values of src per step. Stride 2 spreads them
 * over the even lanes of two vectors whose odd lanes hold -0.0 (x + -0.0 is x for every
 * x, -0.0 and NaN included), whole steps only while the second vector ends before dst's
 * last element. Returns the elements done. */
__attribute__((target("avx2,fma"))) static cc_idx
S_FN(add_strided_avx2)(T *dst, cc_idx ds, const T *src, cc_idx n)
{
    cc_idx j = 0;
    if (ds == 1) {
        for (; j + VL <= n; j += VL)
            S_STORE(dst + j, S_ADD(S_LOAD(dst + j), S_LOAD(src + j)));
    } else if (ds == 2) {
        const VEC nz = S_SET1((T)-0.0);
        for (; j + VL < n; j += VL) {
            VEC lo, hi;
            S_SPREAD(S_LOAD(src + j), nz, lo, hi);
            T *d = dst + 2 * j;
            S_STORE(d, S_ADD(S_LOAD(d), lo));
            S_STORE(d + VL, S_ADD(S_LOAD(d + VL), hi));
        }
    }
    return j;
}

#undef S_RANGE_MASK
#undef S_FN
#undef S_CAT
#undef S_CAT2
