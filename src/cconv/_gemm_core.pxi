# The GEMM core (_kernels/gemm.h) as seen from Cython: declarations, typed wrappers over
# the fused floating type, and the ISA-path functions every module that embeds the
# kernels exposes (each such module holds its own copy of the ISA state; cconv._isa
# applies CCONV_ISA to all of them). Included by _im2col, _backward and _depthwise.

cdef extern from *:
    """
    /* Ask for rows [0, rows) of nbytes each, rs bytes apart, into L2 ahead of use. */
    static inline void cc_prefetch_rows(const void *p, Py_ssize_t rows, Py_ssize_t rs,
                                        Py_ssize_t nbytes)
    {
        const char *c = (const char *)p;
        for (Py_ssize_t r = 0; r < rows; r++)
            for (Py_ssize_t b = 0; b < nbytes; b += 64)
                __builtin_prefetch(c + r * rs + b, 0, 2);
    }
    """
    void cc_prefetch_rows(const void *p, Py_ssize_t rows, Py_ssize_t rs, Py_ssize_t nbytes) nogil

cdef extern from "gemm.h" nogil:
    ctypedef int64_t cc_idx
    int cconv_isa_best()
    int cconv_isa_active()
    int cconv_isa_select(int isa)
    const char *cconv_isa_name(int isa)
    enum:
        CCONV_KC_F32
        CCONV_KC_F64
    int cconv_mr_f32()
    int cconv_nr_f32()
    int cconv_mr_f64()
    int cconv_nr_f64()
    void cconv_add_strided_f32(float *dst, cc_idx ds, const float *src, cc_idx n)
    void cconv_add_strided_f64(double *dst, cc_idx ds, const double *src, cc_idx n)
    void cconv_pack_a_f32(cc_idx m, cc_idx k, const float *a, cc_idx rs, cc_idx cs, float *ap)
    void cconv_pack_a_f64(cc_idx m, cc_idx k, const double *a, cc_idx rs, cc_idx cs, double *ap)
    void cconv_pack_b_f32(cc_idx k, cc_idx n, const float *b, cc_idx rs, cc_idx cs, float *bp)
    void cconv_pack_b_f64(cc_idx k, cc_idx n, const double *b, cc_idx rs, cc_idx cs, double *bp)
    void cconv_pack_b_rows_to_panels_f32(cc_idx k0, cc_idx k1, cc_idx n, const float *b,
                                         cc_idx rs, float *bp, cc_idx K)
    void cconv_pack_b_rows_to_panels_f64(cc_idx k0, cc_idx k1, cc_idx n, const double *b,
                                         cc_idx rs, double *bp, cc_idx K)
    int cconv_gemm_f32(cc_idx m, cc_idx n, cc_idx k, const float *a, cc_idx rsa, cc_idx csa,
                       const float *b, cc_idx rsb, cc_idx csb, float *c, cc_idx ldc,
                       int nthreads)
    int cconv_gemm_f64(cc_idx m, cc_idx n, cc_idx k, const double *a, cc_idx rsa, cc_idx csa,
                       const double *b, cc_idx rsb, cc_idx csb, double *c, cc_idx ldc,
                       int nthreads)
    void cconv_gemm_macro_f32(cc_idx m, cc_idx n, cc_idx kc, const float *ap, cc_idx ps_a,
                              const float *bp, cc_idx ps_b, float *c, cc_idx ldc, int accumulate)
    void cconv_gemm_macro_f64(cc_idx m, cc_idx n, cc_idx kc, const double *ap, cc_idx ps_a,
                              const double *bp, cc_idx ps_b, double *c, cc_idx ldc, int accumulate)
    void cconv_igemm_ukernel_f32(cc_idx kc, const float *const *a_rows, const float *b, float *c,
                                 cc_idx ldc, cc_idx m, cc_idx n, int accumulate)
    void cconv_igemm_ukernel_f64(cc_idx kc, const double *const *a_rows, const double *b,
                                 double *c, cc_idx ldc, cc_idx m, cc_idx n, int accumulate)
    void cconv_igemm_taps_ukernel_f32(cc_idx kc, cc_idx ntaps, const float *const *a_rows,
                                      cc_idx ts, const float *b, float *c, cc_idx ldc,
                                      cc_idx m, cc_idx n, int accumulate)
    void cconv_igemm_taps_ukernel_f64(cc_idx kc, cc_idx ntaps, const double *const *a_rows,
                                      cc_idx ts, const double *b, double *c, cc_idx ldc,
                                      cc_idx m, cc_idx n, int accumulate)
    void cconv_pack_rows_to_panels_f32(int w, cc_idx m, cc_idx k, const float *a, cc_idx rs,
                                       float *ap)
    void cconv_pack_rows_to_panels_f64(int w, cc_idx m, cc_idx k, const double *a, cc_idx rs,
                                       double *ap)
    int cconv_pixrow_max_f32()
    int cconv_pixrow_max_f64()
    void cconv_pixrow_ukernel_f32(cc_idx m, cc_idx n, cc_idx kc, const float *x, const cc_idx *offs,
                                  const float *b, float *c, cc_idx ldc, int accumulate)
    void cconv_pixrow_ukernel_f64(cc_idx m, cc_idx n, cc_idx kc, const double *x, const cc_idx *offs,
                                  const double *b, double *c, cc_idx ldc, int accumulate)
    void cconv_pixrow2_ukernel_f32(cc_idx m1, cc_idx n, cc_idx kc, const float *x, cc_idx rs,
                                   const cc_idx *offs, const float *b, float *c, cc_idx ldc,
                                   int accumulate)
    void cconv_pixrow2_ukernel_f64(cc_idx m1, cc_idx n, cc_idx kc, const double *x, cc_idx rs,
                                   const cc_idx *offs, const double *b, double *c, cc_idx ldc,
                                   int accumulate)


cdef inline void pack_a(cc_idx m, cc_idx k, const floating *a, cc_idx rs, cc_idx cs,
                        floating *ap) noexcept nogil:
    if floating is float:
        cconv_pack_a_f32(m, k, a, rs, cs, ap)
    else:
        cconv_pack_a_f64(m, k, a, rs, cs, ap)


cdef inline void pack_b(cc_idx k, cc_idx n, const floating *b, cc_idx rs, cc_idx cs,
                        floating *bp) noexcept nogil:
    if floating is float:
        cconv_pack_b_f32(k, n, b, rs, cs, bp)
    else:
        cconv_pack_b_f64(k, n, b, rs, cs, bp)


cdef inline void pack_b_rows_to_panels(cc_idx k0, cc_idx k1, cc_idx n, const floating *b,
                                       cc_idx rs, floating *bp, cc_idx K) noexcept nogil:
    if floating is float:
        cconv_pack_b_rows_to_panels_f32(k0, k1, n, b, rs, bp, K)
    else:
        cconv_pack_b_rows_to_panels_f64(k0, k1, n, b, rs, bp, K)


cdef inline void add_strided(floating *dst, cc_idx ds, const floating *src,
                             cc_idx n) noexcept nogil:
    if floating is float:
        cconv_add_strided_f32(dst, ds, src, n)
    else:
        cconv_add_strided_f64(dst, ds, src, n)


cdef inline void gemm_macro(cc_idx m, cc_idx n, cc_idx kc, const floating *ap, cc_idx ps_a,
                            const floating *bp, cc_idx ps_b, floating *c, cc_idx ldc,
                            int accumulate) noexcept nogil:
    if floating is float:
        cconv_gemm_macro_f32(m, n, kc, ap, ps_a, bp, ps_b, c, ldc, accumulate)
    else:
        cconv_gemm_macro_f64(m, n, kc, ap, ps_a, bp, ps_b, c, ldc, accumulate)


cdef inline void igemm_tile(cc_idx kc, const floating **a_rows, const floating *b, floating *c,
                            cc_idx ldc, cc_idx m, cc_idx n, int accumulate) noexcept nogil:
    if floating is float:
        cconv_igemm_ukernel_f32(kc, a_rows, b, c, ldc, m, n, accumulate)
    else:
        cconv_igemm_ukernel_f64(kc, a_rows, b, c, ldc, m, n, accumulate)


cdef inline void igemm_taps_tile(cc_idx kc, cc_idx ntaps, const floating **a_rows, cc_idx ts,
                                 const floating *b, floating *c, cc_idx ldc, cc_idx m, cc_idx n,
                                 int accumulate) noexcept nogil:
    if floating is float:
        cconv_igemm_taps_ukernel_f32(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate)
    else:
        cconv_igemm_taps_ukernel_f64(kc, ntaps, a_rows, ts, b, c, ldc, m, n, accumulate)


ISA_NAMES = ("generic", "avx2", "avx512")


def isa_active():
    """Name of the ISA path the kernels of this module run."""
    return ISA_NAMES[cconv_isa_active()]


def isa_best():
    """Best ISA path the running CPU supports."""
    return ISA_NAMES[cconv_isa_best()]


def isa_select(name):
    """Force an ISA path; ValueError for unknown names, RuntimeError if unsupported."""
    if name not in ISA_NAMES:
        raise ValueError(f"unknown ISA path {name!r}; expected one of {ISA_NAMES}")
    if cconv_isa_select(ISA_NAMES.index(name)) != 0:
        raise RuntimeError(f"this CPU cannot run the {name!r} path (best: {isa_best()!r})")


cdef inline void pack_rows_to_panels(int w, cc_idx m, cc_idx k, const floating *a, cc_idx rs,
                                     floating *ap) noexcept nogil:
    if floating is float:
        cconv_pack_rows_to_panels_f32(w, m, k, a, rs, ap)
    else:
        cconv_pack_rows_to_panels_f64(w, m, k, a, rs, ap)


cdef inline void pixrow(cc_idx m, cc_idx n, cc_idx kc, const floating *x, const cc_idx *offs,
                        const floating *b, floating *c, cc_idx ldc, int accumulate) noexcept nogil:
    if floating is float:
        cconv_pixrow_ukernel_f32(m, n, kc, x, offs, b, c, ldc, accumulate)
    else:
        cconv_pixrow_ukernel_f64(m, n, kc, x, offs, b, c, ldc, accumulate)


cdef inline void pixrow2(cc_idx m1, cc_idx n, cc_idx kc, const floating *x, cc_idx rs,
                         const cc_idx *offs, const floating *b, floating *c, cc_idx ldc,
                         int accumulate) noexcept nogil:
    if floating is float:
        cconv_pixrow2_ukernel_f32(m1, n, kc, x, rs, offs, b, c, ldc, accumulate)
    else:
        cconv_pixrow2_ukernel_f64(m1, n, kc, x, rs, offs, b, c, ldc, accumulate)

