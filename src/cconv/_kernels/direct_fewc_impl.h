/* Body of the few-channel direct row kernel (see direct_fewc.h), instantiated by
 * direct_fewc.c per (ISA, dtype) with:
 *   NAME, ATTR, T, V (vector type), L (lanes), VLOAD(p), VSTORE(p, v), VSET1(x),
 *   VFMA(a, b, c) = a * b + c fused. */
#define FEWC_TILE(NV, P)                                                                  \
    {                                                                                     \
        V acc[P][NV];                                                                     \
        _Pragma("GCC unroll 16") for (int p = 0; p < P; p++)                              \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                          \
                acc[p][v] = VLOAD(bias + o0 + v * L);                                     \
        const T *xp = xr + ow0 * xcs;                                                     \
        for (cc_idx k = 0; k < K; k++) {                                                  \
            const T *wk = w + k * OP + o0;                                                \
            const T *xk = xp + toff[k];                                                   \
            V wv[NV];                                                                     \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) wv[v] = VLOAD(wk + v * L); \
            _Pragma("GCC unroll 16") for (int p = 0; p < P; p++) {                        \
                const V xv = VSET1(xk[p * xcs]);                                          \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                      \
                    acc[p][v] = VFMA(xv, wv[v], acc[p][v]);                               \
            }                                                                             \
        }                                                                                 \
        _Pragma("GCC unroll 16") for (int p = 0; p < P; p++) {                            \
            T *op = out + (ow0 + p) * O + o0;                                             \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                        \
                if (o0 + (v + 1) * L <= O) {                                              \
                    VSTORE(op + v * L, acc[p][v]);                                        \
                } else {                                                                  \
                    T tmp[L];                                                             \
                    VSTORE(tmp, acc[p][v]);                                               \
                    for (int l = 0; o0 + v * L + l < O; l++) op[v * L + l] = tmp[l];      \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

/* Each tile shape is its own non-inlined function, called for the full tiles and for
 * the last one: inlined twice into one body, GCC 12 kept the second copy's accumulators
 * on the stack (a load and a store per FMA; NHWC 3 -> 32 @ 32x32 ran at half the FMA
 * rate). */
#ifndef FEWC_CAT
#define FEWC_CAT2(a, b) a##b
#define FEWC_CAT(a, b) FEWC_CAT2(a, b)
#endif
#define FEWC_TILE_FN(NV, P)                                                               \
    ATTR __attribute__((noinline)) static void FEWC_CAT(NAME, _tile_##NV##x##P)(          \
        const T *restrict xr, const cc_idx *restrict toff, cc_idx K, cc_idx xcs,          \
        const T *restrict w, cc_idx OP, const T *restrict bias, T *restrict out,          \
        cc_idx O, cc_idx o0, cc_idx ow0)                                                  \
    FEWC_TILE(NV, P)
FEWC_TILE_FN(4, 6)
FEWC_TILE_FN(3, 7)
FEWC_TILE_FN(2, 11)
FEWC_TILE_FN(1, 12)
FEWC_TILE_FN(4, 1)
FEWC_TILE_FN(3, 1)
FEWC_TILE_FN(2, 1)
FEWC_TILE_FN(1, 1)

#define FEWC_CALL(NV, P)                                                                  \
    FEWC_CAT(NAME, _tile_##NV##x##P)(xr, toff, K, xcs, w, OP, bias, out, O, o0, ow0)

/* Whole P-pixel tiles; the last, partial one is computed as a whole tile ending at
 * the row end (it recomputes a few pixels of the previous tile, bit for bit the same
 * values): a 1-pixel tile is a chain of dependent FMAs, 4-8x slower per pixel. */
#define FEWC_PASS(NV, P)                                                                  \
    {                                                                                     \
        cc_idx ow0 = 0;                                                                   \
        for (; ow0 + P <= OW; ow0 += P) FEWC_CALL(NV, P);                                 \
        if (ow0 < OW && OW >= P) {                                                        \
            ow0 = OW - P;                                                                 \
            FEWC_CALL(NV, P);                                                             \
        } else {                                                                          \
            for (; ow0 < OW; ow0++) FEWC_CALL(NV, 1);                                     \
        }                                                                                 \
    }

ATTR static void NAME(const T *restrict xr, const cc_idx *restrict toff, cc_idx K,
                      cc_idx xcs, const T *restrict w, cc_idx OP, const T *restrict bias,
                      T *restrict out, cc_idx O, cc_idx OW)
{
    for (cc_idx o0 = 0; o0 < OP; o0 += 4 * L) {
        const cc_idx nv = (OP - o0) / L < 4 ? (OP - o0) / L : 4;
        if (nv == 4)
            FEWC_PASS(4, 6)
        else if (nv == 3)
            FEWC_PASS(3, 7)
        else if (nv == 2)
            FEWC_PASS(2, 11)
        else
            FEWC_PASS(1, 12)
    }
}

#undef FEWC_PASS
#undef FEWC_CALL
#undef FEWC_TILE_FN
#undef FEWC_TILE
#undef NAME
#undef ATTR
#undef T
#undef V
#undef L
#undef VLOAD
#undef VSTORE
#undef VSET1
#undef VFMA
