/* Software prefetch for the channels-last depthwise kernels (depthwise.c): a walk over
 * the cache lines of some rows of an array, issued a share at a time. Large channels-last
 * problems read and write each pixel's channels in blocks, strided, which the hardware
 * prefetchers follow badly from memory; the walk fetches the next rows whole. */
#ifndef CCONV_DW_PREFETCH_H
#define CCONV_DW_PREFETCH_H

#include <stdint.h>

#include "gemm.h"

/* A walk over the cache lines of some rows of an array, for prefetching them a share at a
 * time: rows r .. r_end-1, each nseg segments of seglen bytes, segstride apart (one
 * segment when the item has every channel: the row is contiguous). */
typedef struct {
    const char *base;
    cc_idx rowbytes, segstride, seglen, nseg;
    cc_idx r, r_end, seg, off;
} dwp_pf;

static inline void dwp_pf_start(dwp_pf *pf, const void *base, cc_idx rowbytes,
                                cc_idx segstride, cc_idx seglen, cc_idx nseg, cc_idx r0,
                                cc_idx r1)
{
    pf->base = (const char *)base;
    pf->rowbytes = rowbytes;
    pf->segstride = segstride;
    pf->seglen = seglen;
    pf->nseg = nseg;
    pf->r = r0;
    pf->r_end = r1;
    pf->seg = 0;
    pf->off = 0;
}

/* The next n lines (fewer at the end), into L2 (write intent when rw = 1). */
static inline void dwp_pf_step(dwp_pf *pf, cc_idx n, const int rw)
{
    for (; n > 0 && pf->r < pf->r_end; n--) {
        const char *s0 = pf->base + pf->r * pf->rowbytes + pf->seg * pf->segstride;
        const char *p = (const char *)((uintptr_t)s0 & ~(uintptr_t)63) + pf->off;
        if (rw)
            __builtin_prefetch(p, 1, 2);
        else
            __builtin_prefetch(p, 0, 2);
        pf->off += 64;
        if (p + 64 >= s0 + pf->seglen) { /* that was the segment's last line */
            pf->off = 0;
            if (++pf->seg == pf->nseg) {
                pf->seg = 0;
                pf->r++;
            }
        }
    }
}

/* The input rows [*a, *b) that output rows [o0, o1) read (o1 > o0: stride sh, padding
 * ph, span rows per output row) and output row o0 - 1 did not (none read it when
 * o0 == skip0), within [0, H). */
static inline void dwp_new_rows(cc_idx o0, cc_idx o1, cc_idx skip0, cc_idx sh, cc_idx ph,
                                cc_idx span, cc_idx H, cc_idx *a, cc_idx *b)
{
    cc_idx lo = o0 * sh - ph, hi = (o1 - 1) * sh - ph + span;
    if (o0 != skip0 && lo < (o0 - 1) * sh - ph + span)
        lo = (o0 - 1) * sh - ph + span;
    lo = lo < 0 ? 0 : lo > H ? H : lo;
    *a = lo;
    *b = hi < lo ? lo : hi > H ? H : hi;
}

/* Lines the walk still has (rounded up per segment). */
static inline cc_idx dwp_pf_lines(const dwp_pf *pf)
{
    if (pf->r >= pf->r_end)
        return 0;
    return (pf->r_end - pf->r) * pf->nseg * ((pf->seglen + 63) / 64 + 1);
}

/* A walk over rows [r0, r1) of an array of W-pixel rows with C channels of es bytes, the
 * nc channels from base (base: row 0 at the first of them; whole rows when nc == C). */
static inline void dwp_rows_start(dwp_pf *pf, const void *base, cc_idx es, cc_idx W,
                                  cc_idx C, cc_idx nc, cc_idx r0, cc_idx r1)
{
    const int full = nc == C;
    dwp_pf_start(pf, base, W * C * es, C * es, (full ? W * C : nc) * es, full ? 1 : W, r0, r1);
}

/* The lines of such rows (dwp_rows_start), all at once. */
static inline void dwp_fetch_rows(const void *base, cc_idx es, cc_idx W, cc_idx C, cc_idx nc,
                                  cc_idx r0, cc_idx r1, const int rw)
{
    dwp_pf pf;
    dwp_rows_start(&pf, base, es, W, C, nc, r0, r1);
    dwp_pf_step(&pf, dwp_pf_lines(&pf), rw);
}

/* Lines per step that finish a walk in about n steps. */
static inline cc_idx dwp_share(const dwp_pf *pf, cc_idx n)
{
    return (dwp_pf_lines(pf) + n - 1) / (n > 0 ? n : 1);
}

/* The lines that output row oh (one kernel plane, at input plane id) reads and writes
 * beyond what row oh - 1 did, as two walks to step through: px its new input rows (none
 * when id lies outside [0, D)), po its output row (none unless fetch_out). x: the image
 * (D, H, W, C) at its first channel; orow: the output row at that channel; nc channels;
 * span: input rows per output row. */
static inline void dwp_row_walks(dwp_pf *px, dwp_pf *po, const void *x, const void *orow,
                                 cc_idx es, cc_idx D, cc_idx H, cc_idx W, cc_idx OW, cc_idx C,
                                 cc_idx nc, cc_idx id, cc_idx oh, cc_idx sh, cc_idx ph,
                                 cc_idx span, int fetch_out)
{
    cc_idx ia, ib;
    const int dok = id >= 0 && id < D;
    dwp_new_rows(oh, oh + 1, 0, sh, ph, span, H, &ia, &ib);
    dwp_rows_start(px, (const char *)x + (dok ? id : 0) * H * W * C * es, es, W, C, nc, ia,
                   dok ? ib : ia);
    dwp_rows_start(po, orow, es, OW, C, nc, 0, fetch_out ? 1 : 0);
}

/* Input rows [ia, ib) of the kernel planes id0 + kd*dd (kd < KD) that lie in [0, D),
 * for reading; x: the image (D, H, W, C) at its first fetched channel. */
static inline void dwp_fetch_plane_rows(const void *x, cc_idx es, cc_idx D, cc_idx H, cc_idx W,
                                        cc_idx C, cc_idx nc, cc_idx KD, cc_idx id0, cc_idx dd,
                                        cc_idx ia, cc_idx ib)
{
    for (cc_idx kd = 0; kd < KD; kd++) {
        const cc_idx id = id0 + kd * dd;
        if (id >= 0 && id < D)
            dwp_fetch_rows((const char *)x + id * H * W * C * es, es, W, C, nc, ia, ib, 0);
    }
}

#endif
