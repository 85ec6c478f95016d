/* fftmac: the loop of fftmac.h compiled per ISA path (target attributes) and dispatched
 * at run time on cconv_isa_active() (gemm.c, compiled into the same module). Blocks of
 * FB frequencies x OB output channels keep their sums in a stack tile (L1) while the
 * input channels stream past: each X block is loaded once per OB outputs. */
#include "fftmac.h"

#if defined(__x86_64__) || defined(_M_X64)
#define CCONV_FM_X86 1
#else
#define CCONV_FM_X86 0
#endif

enum { FM_FB = 128, FM_OB = 4 };

#define FM_BODY(T, SUF, ATTR, ISA)                                                       \
    ATTR static void fm_##SUF##_##ISA(const T *xr, const T *xi, const T *wr, const T *wi,  \
                                      cc_idx cg, cc_idx F, cc_idx o0, cc_idx no, T *yr,   \
                                      T *yi)                                              \
    {                                                                                    \
        T ar[FM_OB][FM_FB], ai[FM_OB][FM_FB];                                            \
        for (cc_idx f0 = 0; f0 < F; f0 += FM_FB) {                                       \
            const cc_idx fb = F - f0 < FM_FB ? F - f0 : FM_FB;                           \
            for (cc_idx ob = 0; ob < no; ob += FM_OB) {                                  \
                const int nob = no - ob < FM_OB ? (int)(no - ob) : FM_OB;                \
                for (int q = 0; q < nob; q++)                                            \
                    for (cc_idx f = 0; f < fb; f++)                                      \
                        ar[q][f] = ai[q][f] = (T)0;                                      \
                for (cc_idx c = 0; c < cg; c++) {                                        \
                    const T *restrict pxr = xr + c * F + f0;                             \
                    const T *restrict pxi = xi + c * F + f0;                             \
                    for (int q = 0; q < nob; q++) {                                      \
                        const cc_idx w0 = ((o0 + ob + q) * cg + c) * F + f0;             \
                        const T *restrict pwr = wr + w0;                                 \
                        const T *restrict pwi = wi + w0;                                 \
                        T *restrict qr = ar[q];                                          \
                        T *restrict qi = ai[q];                                          \
                        for (cc_idx f = 0; f < fb; f++) {                                \
                            qr[f] = qr[f] + (pxr[f] * pwr[f] + pxi[f] * pwi[f]);         \
                            qi[f] = qi[f] + (pxi[f] * pwr[f] - pxr[f] * pwi[f]);         \
                        }                                                                \
                    }                                                                    \
                }                                                                        \
                for (int q = 0; q < nob; q++)                                            \
                    for (cc_idx f = 0; f < fb; f++) {                                    \
                        yr[(ob + q) * F + f0 + f] = ar[q][f];                            \
                        yi[(ob + q) * F + f0 + f] = ai[q][f];                            \
                    }                                                                    \
            }                                                                            \
        }                                                                                \
    }

#define FM_NOATTR
FM_BODY(float, f32, FM_NOATTR, generic)
FM_BODY(double, f64, FM_NOATTR, generic)
#if CCONV_FM_X86
FM_BODY(float, f32, __attribute__((target("avx2"))), avx2)
FM_BODY(double, f64, __attribute__((target("avx2"))), avx2)
FM_BODY(float, f32, __attribute__((target("avx512f"))), avx512)
FM_BODY(double, f64, __attribute__((target("avx512f"))), avx512)
#define FM_PICK(FN, ARGS)                                                                \
    switch (cconv_isa_active()) {                                                        \
    case CCONV_ISA_AVX512: FN##_avx512 ARGS; return;                                     \
    case CCONV_ISA_AVX2: FN##_avx2 ARGS; return;                                         \
    default: FN##_generic ARGS; return;                                                  \
    }
#else
#define FM_PICK(FN, ARGS) FN##_generic ARGS;
#endif

void cconv_fftmac_f32(const float *xr, const float *xi, const float *wr, const float *wi,
                      cc_idx cg, cc_idx F, cc_idx o0, cc_idx no, float *yr, float *yi)
{
    FM_PICK(fm_f32, (xr, xi, wr, wi, cg, F, o0, no, yr, yi))
}

void cconv_fftmac_f64(const double *xr, const double *xi, const double *wr,
                      const double *wi, cc_idx cg, cc_idx F, cc_idx o0, cc_idx no,
                      double *yr, double *yi)
{
    FM_PICK(fm_f64, (xr, xi, wr, wi, cg, F, o0, no, yr, yi))
}
