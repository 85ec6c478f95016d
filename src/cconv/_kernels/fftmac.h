/* cconv FFT convolution: the channel sum in the frequency domain, "fftmac".
 *
 * For one image and one group, with the spectra split into real and imaginary planes
 * of F frequencies each (unit stride):
 *   Y[o, f] = sum over c < cg of X[c, f] * conj(W[o, c, f])
 * (correlation: the conjugate of the kernel's spectrum), for the output channels
 * o0 .. o0 + no - 1 of the group. Written as
 *   yr += xr * wr + xi * wi,   yi += xi * wr - xr * wi
 * each a product, a product and two additions in that order (no FMA: the extensions are
 * built with -ffp-contract=off), over c in increasing order, starting from +0. Every ISA
 * path runs the same C loop vectorised along f, so the results agree bitwise, and
 * they do not depend on how the caller splits (image, group, output channel) work.
 */
#ifndef CCONV_FFTMAC_H
#define CCONV_FFTMAC_H

#include "gemm.h"

/* xr, xi: cg planes of F (plane c at c * F); wr, wi: the group's planes, output
 * channel o's plane c at (o * cg + c) * F; yr, yi: no planes of F, written. */
void cconv_fftmac_f32(const float *xr, const float *xi, const float *wr, const float *wi,
                      cc_idx cg, cc_idx F, cc_idx o0, cc_idx no, float *yr, float *yi);
void cconv_fftmac_f64(const double *xr, const double *xi, const double *wr,
                      const double *wi, cc_idx cg, cc_idx F, cc_idx o0, cc_idx no,
                      double *yr, double *yi);

#endif
