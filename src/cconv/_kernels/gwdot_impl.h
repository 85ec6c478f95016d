/* The gwdot kernel, written once and instantiated per (ISA path, dtype) by gwdot.c,
 * which defines before each inclusion:
 *   T, SFX, GWD_TARGET, LV (a 64-byte logical vector of LANES lanes), LANES,
 *   LV_ZERO(), LV_LOAD(p), LV_LOADM(p, n) (lanes >= n read as +0, nothing read past
 *   them), LV_FMA(a, b, c) = a * b + c rounded once per lane, LV_HSUM(v) (the halving
 *   reduction of gwdot.h), the tile shapes GWD_RA x GWD_NXA and GWD_RB x GWD_NXB, and
 *   GWD_SWITCH_CASES (the (r, nx) tiles that the two shapes and their edges need).
 * It undefines the per-dtype parameters (T ... LV_HSUM) at its end.
 * See gwdot.h for the arithmetic contract.
 */
#define GWD_CAT2(a, b) a##_##b
#define GWD_CAT(a, b) GWD_CAT2(a, b)
#define FN(name) GWD_CAT(name, SFX)
#define GWD_INLINE static inline __attribute__((always_inline)) GWD_TARGET

/* RR rows of dY x NN runs of X, over every chunk of every image of the block; adds
 * the RR x NN dot products into dw[r * ldw + s]. One function per tile shape, each with
 * an accumulator array of exactly its size: GCC keeps such an array in registers, not
 * a larger one. dys[b] + o0 * P: dY rows of image b; xim[b] + ko[s]: run s of image b. */
#define GWD_DEFINE_TILE(RR, NN)                                                            \
    GWD_INLINE void FN(gwd_tile_##RR##x##NN)(const cc_gwd_rows *rw, const T *const *dys,   \
                                             cc_idx o0, const T *const *xim,               \
                                             const cc_idx *ko, cc_idx nb, T *dw,           \
                                             cc_idx ldw)                                   \
    {                                                                                      \
        LV acc[RR][NN];                                                                    \
        for (int r = 0; r < RR; r++)                                                       \
            for (int s = 0; s < NN; s++)                                                   \
                acc[r][s] = LV_ZERO();                                                     \
        const cc_idx P = rw->P, nq = rw->nq;                                               \
        for (cc_idx b = 0; b < nb; b++) {                                                  \
            const T *xs[NN];                                                               \
            for (int s = 0; s < NN; s++)                                                   \
                xs[s] = xim[b] + ko[s];                                                    \
            const T *dy = dys[b] + o0 * P;                                                 \
            const cc_idx *tab = rw->tab;                                                   \
            /* one loop over the chunks, every load masked */                             \
            for (cc_idx q = 0; q < nq; q++, tab += 3) {                                    \
                const cc_idx xo = tab[0];                                                  \
                const T *y = dy + tab[1];                                                  \
                const int n = (int)tab[2];                                                 \
                LV d[RR];                                                                  \
                if (n == LANES) {                                                          \
                    for (int r = 0; r < RR; r++)                                           \
                        d[r] = LV_LOAD(y + r * P);                                         \
                    for (int s = 0; s < NN; s++) {                                         \
                        const LV xv = LV_LOAD(xs[s] + xo);                                 \
                        for (int r = 0; r < RR; r++)                                       \
                            acc[r][s] = LV_FMA(d[r], xv, acc[r][s]);                       \
                    }                                                                      \
                } else {                                                                   \
                    for (int r = 0; r < RR; r++)                                           \
                        d[r] = LV_LOADM(y + r * P, n);                                     \
                    for (int s = 0; s < NN; s++) {                                         \
                        const LV xv = LV_LOADM(xs[s] + xo, n);                             \
                        for (int r = 0; r < RR; r++)                                       \
                            acc[r][s] = LV_FMA(d[r], xv, acc[r][s]);                       \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        /* park the accumulators in memory before reducing them: reducing straight  \
         * from registers makes GCC spill them inside the loop above */                  \
        T red[RR * NN * LANES];                                                            \
        for (int r = 0; r < RR; r++)                                                       \
            for (int s = 0; s < NN; s++)                                                   \
                LV_STORE(red + (r * NN + s) * LANES, acc[r][s]);                           \
        __asm__ __volatile__("" : : : "memory");                                           \
        for (int r = 0; r < RR; r++)                                                       \
            for (int s = 0; s < NN; s++)                                                   \
                dw[r * ldw + s] += LV_HSUM(LV_LOAD(red + (r * NN + s) * LANES));           \
    }

#define GWD_CASE(RR, NN) GWD_DEFINE_TILE(RR, NN)
GWD_SWITCH_CASES
#undef GWD_CASE

GWD_TARGET static void FN(gwd_nchw)(const cc_gwd_rows *rw, const T *const *dys,
                                    const T *const *xim, cc_idx nb, cc_idx m,
                                    const cc_idx *koff, cc_idx kc, T *dw, cc_idx ldw)
{
    /* shape A for kernels with many taps (a 3x3 channel is one chunk of 9 on AVX-512),
     * shape B otherwise */
    const int useA = kc % GWD_NXA == 0 || kc % GWD_NXB != 0;
    const int RT = useA ? GWD_RA : GWD_RB, NXT = useA ? GWD_NXA : GWD_NXB;
    /* output rows outer: a tile's dY rows stay in L1 / L2 while the input runs of the
     * block (sized by the caller to stay in L2) stream past them */
    for (cc_idx o0 = 0; o0 < m; o0 += RT) {
        const int r = (int)(m - o0 < RT ? m - o0 : RT);
        for (cc_idx k0 = 0; k0 < kc; k0 += NXT) {
            const int nx = (int)(kc - k0 < NXT ? kc - k0 : NXT);
            T *w = dw + o0 * ldw + k0;
#define GWD_CASE(RR, NN) \
    case (RR) * 16 + (NN): FN(gwd_tile_##RR##x##NN)(rw, dys, o0, xim, koff + k0, nb, w, ldw); break;
            switch (r * 16 + nx) {
                GWD_SWITCH_CASES
            default: abort(); /* not reached: the cases cover both shapes and their edges */
            }
#undef GWD_CASE
        }
    }
}

#undef FN
#undef GWD_INLINE
/* the per-instantiation parameters (the ISA-wide ones, GWD_TARGET and the tile shapes,
 * are undefined by gwdot.c after both dtypes) */
#undef T
#undef LV
#undef LANES
#undef SFX
#undef LV_ZERO
#undef LV_LOAD
#undef LV_STORE
#undef LV_LOADM
#undef LV_FMA
#undef LV_HSUM
