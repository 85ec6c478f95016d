# Declarations of the implicit-im2col packers (_kernels/pack.h), for every module that
# embeds pack.c (_im2col, _backward).

cdef extern from "pack.h" nogil:
    ctypedef struct cc_conv_geom:
        cc_idx C, D, H, W, KD, KH, KW, OD, OH, OW
        cc_idx sd, sh, sw, dd, dh, dw, pd, ph, pw, ctot
    void cconv_pack_b_im2col_nchw_f32(const cc_conv_geom *g, const float *x, cc_idx k0, cc_idx kc,
                                      cc_idx p0, cc_idx nc, int nr, cc_idx ps, float *bp)
    void cconv_pack_b_im2col_nchw_f64(const cc_conv_geom *g, const double *x, cc_idx k0, cc_idx kc,
                                      cc_idx p0, cc_idx nc, int nr, cc_idx ps, double *bp)
    void cconv_pack_b_rows_f32(const float *base, const cc_idx *offs, cc_idx kc, cc_idx j0,
                               cc_idx nc, int nr, cc_idx ps, float *bp)
    void cconv_pack_b_rows_f64(const double *base, const cc_idx *offs, cc_idx kc, cc_idx j0,
                               cc_idx nc, int nr, cc_idx ps, double *bp)
    void cconv_pad_phases_f32(const float *x, cc_idx D, cc_idx H, cc_idx W, float *xp,
                              cc_idx Dq, cc_idx Hq, cc_idx Wq, cc_idx sd, cc_idx sh, cc_idx sw,
                              cc_idx pd, cc_idx ph, cc_idx pw)
    void cconv_pad_phases_f64(const double *x, cc_idx D, cc_idx H, cc_idx W, double *xp,
                              cc_idx Dq, cc_idx Hq, cc_idx Wq, cc_idx sd, cc_idx sh, cc_idx sw,
                              cc_idx pd, cc_idx ph, cc_idx pw)
    void cconv_pack_rows_im2col_nhwc_f32(const cc_conv_geom *g, const float *x, cc_idx p0,
                                         cc_idx mc, cc_idx k0, cc_idx kc, float *dst, cc_idx ld)
    void cconv_pack_rows_im2col_nhwc_f64(const cc_conv_geom *g, const double *x, cc_idx p0,
                                         cc_idx mc, cc_idx k0, cc_idx kc, double *dst, cc_idx ld)


cdef inline void pad_channel(const floating *x, const cc_conv_geom *g, floating *xp,
                             Py_ssize_t Dp, Py_ssize_t Hp, Py_ssize_t Wp) noexcept nogil:
    # zero-padded copy of one channel, split into the stride phases (pack.h)
    if floating is float:
        cconv_pad_phases_f32(x, g.D, g.H, g.W, xp, Dp, Hp, Wp, g.sd, g.sh, g.sw, g.pd, g.ph, g.pw)
    else:
        cconv_pad_phases_f64(x, g.D, g.H, g.W, xp, Dp, Hp, Wp, g.sd, g.sh, g.sw, g.pd, g.ph, g.pw)


cdef inline void pack_rows_nhwc(const cc_conv_geom *g, const floating *x, cc_idx p0, cc_idx mc,
                                cc_idx k0, cc_idx kc, floating *dst, cc_idx ld) noexcept nogil:
    # rows p0 .. p0+mc-1 of one image's channels-last cols matrix (pack.h)
    if floating is float:
        cconv_pack_rows_im2col_nhwc_f32(g, x, p0, mc, k0, kc, dst, ld)
    else:
        cconv_pack_rows_im2col_nhwc_f64(g, x, p0, mc, k0, kc, dst, ld)
