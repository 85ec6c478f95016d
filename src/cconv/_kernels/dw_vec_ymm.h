/* The 256-bit vector macros of depthwise_impl.h / gconv_impl.h (AVX2 intrinsics, also
 * used by the AVX-512 build of the grouped kernel), for T float (DW_YMM_F64 undefined)
 * or double (DW_YMM_F64 defined). The includer defines SFX and DW_TARGET; the masks come
 * from depthwise.c's dw_mask32 / dw_mask64. Undone by dw_vec_undef.h. */
#ifndef DW_YMM_F64
#define VL 8
#define T float
#define VEC __m256
#define DW_MASK(n) _mm256_loadu_si256((const __m256i *)(dw_mask32 + 8 - (n)))
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_LOADM(p, n) _mm256_maskload_ps((p), DW_MASK(n))
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_STREAM(p, v) _mm256_stream_ps((p), (v))
#define V_SFENCE() _mm_sfence()
#define V_STOREM(p, v, n) _mm256_maskstore_ps((p), DW_MASK(n), (v))
#define V_SET1(s) _mm256_set1_ps(s)
#define V_ZERO() _mm256_setzero_ps()
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_BCAST(p) _mm256_broadcast_ss(p)
#define V_TRANSPOSE(a) cc_tr8_ps(a)
#define V_EVEN2(a, b) cc_even2_ps((a), (b))
#define V_KEEP(v) __asm__("" : "+x"(v))
#else
#define VL 4
#define T double
#define VEC __m256d
#define DW_MASK(n) _mm256_loadu_si256((const __m256i *)(dw_mask64 + 4 - (n)))
#define V_LOAD(p) _mm256_loadu_pd(p)
#define V_LOADM(p, n) _mm256_maskload_pd((p), DW_MASK(n))
#define V_STORE(p, v) _mm256_storeu_pd((p), (v))
#define V_STREAM(p, v) _mm256_stream_pd((p), (v))
#define V_SFENCE() _mm_sfence()
#define V_STOREM(p, v, n) _mm256_maskstore_pd((p), DW_MASK(n), (v))
#define V_SET1(s) _mm256_set1_pd(s)
#define V_ZERO() _mm256_setzero_pd()
#define V_FMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define V_BCAST(p) _mm256_broadcast_sd(p)
#define V_TRANSPOSE(a) cc_tr4_pd(a)
#define V_EVEN2(a, b) cc_even2_pd((a), (b))
#define V_KEEP(v) __asm__("" : "+x"(v))
#endif
