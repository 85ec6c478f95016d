# cython: wraparound=True, boundscheck=True
# (the driver below is plain Python over NumPy; the kernel wrapper turns both off)
"""FFT convolution: correlation as a product of spectra, summed over input channels.

Per spatial dim the input (its non-zero padding modes already applied by the caller)
is taken circularly with period L >= max(n + max(before, after), span), span =
(k - 1) * dilation + 1: the leading zero padding becomes a shift of the result and the
trailing one the zeros up to L, so no zero-padded copy is made. Then

    Y[n, o] = irfftn( sum_c rfftn(x[n, c]) * conj(rfftn(w_dilated[o, c])) )

read at (i * stride - before) mod L for the output positions i. The transforms are
NumPy's pocketfft (float32 stays float32); the channel sum runs here on the threads
(fftmac.h: a fixed order per element, so results do not depend on the thread count or
the ISA path). Strided problems compute every stride-1 position and keep every
stride-th one.

Workspace: the spectra of one block of images and one block of output channels at a
time, sized so that the input, weight and output spectra of a block stay near
WORK_BYTES (the whole problem when it fits).

Non-finite values: a NaN or Inf anywhere in an input channel reaches every frequency
of that channel's spectrum, so it spreads to every output position of that image (all
output channels of its group); one in a weight spreads to every output position of
that output channel.
"""
cimport cython
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t

import numpy as np

include "_gemm_core.pxi"

cdef extern from "fftmac.h" nogil:
    void cconv_fftmac_f32(const float *xr, const float *xi, const float *wr, const float *wi,
                          cc_idx cg, cc_idx F, cc_idx o0, cc_idx no, float *yr, float *yi)
    void cconv_fftmac_f64(const double *xr, const double *xi, const double *wr,
                          const double *wi, cc_idx cg, cc_idx F, cc_idx o0, cc_idx no,
                          double *yr, double *yi)

WORK_BYTES = 64 << 20


def fast_len(cc_idx n):
    """The smallest 2-3-5-smooth length >= n (pocketfft's fast sizes)."""
    cdef cc_idx best = 1, p2, p3, p5
    while best < n:
        best *= 2
    p5 = 1
    while p5 < 2 * n:
        p3 = p5
        while p3 < 2 * n:
            p2 = p3
            while p2 < n:
                p2 *= 2
            if p2 < best:
                best = p2
            p3 *= 3
        p5 *= 5
    return best


def periods(in_size, pads, kernel, dilation):
    """The transform length per spatial dim (module docstring)."""
    return tuple(fast_len(max(n + max(b, a), (k - 1) * d + 1))
                 for n, (b, a), k, d in zip(in_size, pads, kernel, dilation))


@cython.boundscheck(False)
@cython.wraparound(False)
def _channel_sum(const floating[:, :, :, ::1] xr, const floating[:, :, :, ::1] xi,
                 const floating[:, :, :, ::1] wr, const floating[:, :, :, ::1] wi,
                 floating[:, :, :, ::1] yr, floating[:, :, :, ::1] yi, cc_idx o0,
                 int nthreads):
    """y[n, g, o] = sum_c x[n, g, c] * conj(w[g, o0 + o, c]) for o < yr.shape[2] (all
    (N, G, channels, F); the weight block's channels start at o0 of the group)."""
    cdef cc_idx N = xr.shape[0], G = xr.shape[1], cg = xr.shape[2], F = xr.shape[3]
    cdef cc_idx no = yr.shape[2], OB = 4, nob = (no + OB - 1) // OB
    cdef cc_idx item, n, g, ob, cnt
    with nogil:
        for item in prange(N * G * nob, schedule="static", num_threads=nthreads):
            n = item // (G * nob)
            g = (item // nob) % G
            ob = (item % nob) * OB
            cnt = OB if no - ob > OB else no - ob
            if floating is float:
                cconv_fftmac_f32(&xr[n, g, 0, 0], &xi[n, g, 0, 0], &wr[g, 0, 0, 0],
                                 &wi[g, 0, 0, 0], cg, F, o0 + ob, cnt,
                                 &yr[n, g, ob, 0], &yi[n, g, ob, 0])
            else:
                cconv_fftmac_f64(&xr[n, g, 0, 0], &xi[n, g, 0, 0], &wr[g, 0, 0, 0],
                                 &wi[g, 0, 0, 0], cg, F, o0 + ob, cnt,
                                 &yr[n, g, ob, 0], &yi[n, g, ob, 0])


# Planes per transform call: a function of the problem only, so that every plane is
# transformed in a batch of the same make-up whatever the thread count (bitwise the same
# results); NumPy's pocketfft releases the GIL, so the chunks run on a thread pool.
_CHUNKS = 16
_POOL = {}
# a forked child has none of the parent's pool threads: it starts a pool of its own
import os
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.clear)


def _map_chunks(fn, n, nthreads):
    """fn(i0, i1) over fixed chunks of range(n), on up to nthreads threads."""
    step = max(1, -(-n // _CHUNKS))
    bounds = [(i, min(n, i + step)) for i in range(0, n, step)]
    if nthreads <= 1 or len(bounds) == 1:
        for b in bounds:
            fn(*b)
        return
    pool = _POOL.get(nthreads)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor
        pool = _POOL[nthreads] = ThreadPoolExecutor(nthreads, thread_name_prefix="cconv-fft")
    for _ in pool.map(lambda b: fn(*b), bounds):
        pass


def _forward_fft(a, Lt, dt, nthreads):
    """The spectrum of a (..., *spatial) zero-extended to the periods Lt over its last
    len(Lt) axes, as two real arrays (real, imaginary parts) of dtype dt, each chunk
    written straight into them: the last axis first (a real transform of only the rows
    that hold data), then each earlier axis, as rfftn does but without transforming the
    zero-padding rows of a kernel."""
    k = len(Lt)
    lead = a.shape[:a.ndim - k]
    flat = a.reshape((-1,) + a.shape[a.ndim - k:])
    fshape = tuple(Lt[:k - 1]) + (Lt[k - 1] // 2 + 1,)
    re = np.empty((flat.shape[0],) + fshape, dt)
    im = np.empty_like(re)

    def run(i0, i1):
        with np.errstate(all="ignore"):  # NaN / Inf spread silently, as elsewhere
            z = np.fft.rfft(flat[i0:i1], n=Lt[k - 1], axis=k)
            for j in range(k - 2, -1, -1):
                z = np.fft.fft(z, n=Lt[j], axis=1 + j)
        re[i0:i1] = z.real
        im[i0:i1] = z.imag

    _map_chunks(run, flat.shape[0], nthreads)
    return re.reshape(lead + fshape), im.reshape(lead + fshape)


def _inverse_fft(yr, yi, Lt, idx, dt, nthreads):
    """irfftn of the spectrum yr + i yi over its last len(Lt) axes, keeping only the
    positions idx[j] of each (earlier axes first, so the last axis's inverse runs on
    kept rows only); a real array of dtype dt."""
    k = len(Lt)
    lead = yr.shape[:yr.ndim - k]
    fr = yr.reshape((-1,) + yr.shape[yr.ndim - k:])
    fi = yi.reshape(fr.shape)
    y = np.empty((fr.shape[0],) + tuple(len(t) for t in idx), dt)
    ct = np.result_type(dt, np.complex64)

    def run(i0, i1):
        p = np.empty((i1 - i0,) + fr.shape[1:], ct)
        p.real = fr[i0:i1]
        p.imag = fi[i0:i1]
        with np.errstate(all="ignore"):
            for j in range(k - 1):
                p = np.take(np.fft.ifft(p, n=Lt[j], axis=1 + j), idx[j], axis=1 + j)
            z = np.fft.irfft(p, n=Lt[k - 1], axis=k)
        y[i0:i1] = np.take(z, idx[k - 1], axis=k)

    _map_chunks(run, fr.shape[0], nthreads)
    return y.reshape(lead + y.shape[1:])


def conv_forward(x5, w5, b, out5, stride, pads3, dil, cc_idx groups, bint channels_last,
                 int nthreads, int nd=3):
    """out5 = the convolution of x5 with w5 (+ b) by FFT. x5: (N, C, D, H, W) or
    (N, D, H, W, C); w5: (O, Cg, kd, kh, kw) or (kd, kh, kw, Cg, O); out5 in x5's
    layout; pads3: the (before, after) zero padding per dim; nd: the problem's spatial
    dims (the leading dims of a 1-D / 2-D problem have size 1 and are not transformed)."""
    dt = x5.dtype
    if channels_last:
        x = np.moveaxis(x5, 4, 1)
        w = np.moveaxis(w5, (4, 3), (0, 1))
        out = np.moveaxis(out5, 4, 1)
    else:
        x, w, out = x5, w5, out5
    N, C = x.shape[0], x.shape[1]
    O, Cg = w.shape[0], w.shape[1]
    Og = O // groups
    sp = [x.shape[2 + i] for i in range(3)]
    ks = [w.shape[2 + i] for i in range(3)]
    L = list(periods(sp, pads3, ks, dil))
    for i in range(3 - nd):
        L[i] = sp[i]  # untransformed leading dims: size 1 here
    Lt = tuple(L[3 - nd:])
    # the dilated kernel, zero-stuffed
    span = [(k - 1) * d + 1 for k, d in zip(ks, dil)]
    if any(d > 1 for d in dil):
        wd = np.zeros((O, Cg) + tuple(span), dt)
        wd[:, :, ::dil[0], ::dil[1], ::dil[2]] = w
    else:
        wd = w
    F_shape = tuple(L[:3 - nd]) + Lt[:-1] + (Lt[-1] // 2 + 1,)
    F = int(np.prod(F_shape))
    item = dt.itemsize
    # blocks: images x output channels whose spectra (2 reals each) fit WORK_BYTES
    per_img = 2 * item * F * (C + O)
    per_out = 2 * item * F * Cg * groups
    wb = max(1, min(Og, WORK_BYTES // 2 // max(per_out, 1)))
    nb = max(1, min(N, (WORK_BYTES - per_out * wb) // max(per_img, 1)))
    # output positions: (i * stride - before) mod L per dim
    oshape = out.shape[2:]
    idx = [(np.arange(oshape[i]) * stride[i] - pads3[i][0]) % L[i] for i in range(3)]
    bias = None if b is None else np.asarray(b, dt).reshape(1, O, 1, 1, 1)
    xs = None
    for o0 in range(0, Og, wb):
        o1 = min(Og, o0 + wb)
        # this block's output channels of every group: (G, o1 - o0, Cg, F)
        wsel = wd.reshape((groups, Og, Cg) + wd.shape[2:])[:, o0:o1]
        wr, wi = _forward_fft(wsel, Lt, dt, nthreads)
        wr = wr.reshape(groups, o1 - o0, Cg, F)
        wi = wi.reshape(wr.shape)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            if xs is None or xs[0] != n0:
                xr, xi = _forward_fft(x[n0:n1], Lt, dt, nthreads)
                shape = (n1 - n0, groups, Cg, F)
                xs = (n0, xr.reshape(shape), xi.reshape(shape))
                del xr, xi
            yr = np.empty((n1 - n0, groups, o1 - o0, F), dt)
            yi = np.empty_like(yr)
            _channel_sum(xs[1], xs[2], wr, wi, yr, yi, 0, nthreads)
            fshape = (n1 - n0, groups * (o1 - o0)) + F_shape
            y = _inverse_fft(yr.reshape(fshape), yi.reshape(fshape), Lt, idx[3 - nd:], dt,
                             nthreads)
            del yr, yi
            y = y.reshape((n1 - n0, groups, o1 - o0) + out.shape[2:])
            dst = out[n0:n1].reshape((n1 - n0, groups, Og) + out.shape[2:])[:, :, o0:o1]
            if bias is None:
                dst[...] = y
            else:
                dst[...] = y + bias.reshape(1, groups, Og, 1, 1, 1)[:, :, o0:o1]
        if N > nb:
            xs = None  # the next weight block starts over at the first images
