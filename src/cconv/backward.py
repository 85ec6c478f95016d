"""Backward passes and transposed convolutions: spec -> run.

The three primitives (everything else is built from them):

* the forward convolution (functional.py, ``_im2col`` / ``_direct``);
* ``grad_input``: the adjoint of the convolution w.r.t. its input (``_backward``: a GEMM
  ``W^T . dY`` on bounded tiles followed by a col2im scatter-add);
* ``grad_weight``: the adjoint w.r.t. the weight (``_backward``: an implicit-GEMM
  reduction over images and output pixels).

A transposed convolution is the ``grad_input`` of the convolution that maps its output
back to its input; its ``grad_input`` is that convolution's forward, and its
``grad_weight`` is the convolution's ``grad_weight`` with the roles of input and
grad_out swapped.

Padding modes other than zeros: the forward pads x explicitly, so the gradient w.r.t.
the padded input is computed and its borders are folded back onto the input
(:func:`_unpad_grad`).

Every result is bitwise identical for every thread count: work is split so that each
output element is owned by one thread and summed in a fixed order.
"""
import dataclasses
import itertools
import math

import numpy as np

from . import _backward, _core, _plan, _spec
from ._memory import cached_arrays
from ._threads import get_num_threads
from .functional import (_five_shape, _prepare_input, _prepare_weight, _run,
                         depth_to_space_into, patch_weight, space_to_depth, subsample_index,
                         subsampled_input)

_DEFAULT_LAYOUT = {1: "NCL", 2: "NCHW", 3: "NCDHW"}
_ALL = ("input", "weight", "bias")


# ----------------------------------------------------------------------------- helpers

def _batched(spec, a):
    return a if spec.batched else a[None]


def _five(spec, a, sizes):
    """View a batched array in the user layout as 5-D (N, C, D, H, W) / (N, D, H, W, C)."""
    N = a.shape[0]
    sp = spec.as3d(sizes, 1)
    if spec.channels_last:
        return a.reshape((N,) + sp + (a.shape[-1],))
    return a.reshape((N, a.shape[1]) + sp)


def _spatial_axes(spec):
    """Axes of the spatial dims in a batched array of the user layout."""
    return tuple(range(1, 1 + spec.nd)) if spec.channels_last else \
        tuple(range(2, 2 + spec.nd))


def _mode_padded(spec):
    return spec.padding_mode != "zeros" and any(b or a for b, a in spec.pads)


def _unpad_grad(g, pads, mode, axes):
    """Adjoint of ``np.pad(x, pads, mode)`` along ``axes``: fold the gradient w.r.t. the
    padded array back onto the unpadded one. mode: "reflect", "replicate", "circular"
    (PyTorch's names). Each padded position adds into the input position it copied,
    in a fixed order (before-border first, then after-border), so results do not depend
    on anything but the inputs."""
    for ax, (b, a) in zip(axes, pads):
        if not (b or a):
            continue
        n = g.shape[ax] - b - a
        core = np.array(np.take(g, range(b, b + n), axis=ax))  # a copy

        def src(i):  # i: a position in the padded array outside [b, b + n)
            j = i - b
            if mode == "reflect":
                return -j if j < 0 else 2 * (n - 1) - j
            if mode == "replicate":
                return 0 if j < 0 else n - 1
            return j % n  # circular

        idx = [slice(None)] * g.ndim
        cidx = [slice(None)] * g.ndim
        for i in list(range(b)) + list(range(b + n, b + n + a)):
            idx[ax] = i
            cidx[ax] = src(i)
            with np.errstate(all="ignore"):  # Inf - Inf is NaN by definition: no warning
                core[tuple(cidx)] += g[tuple(idx)]
        g = core
    return g


def _weight_blocks(spec, w, cb):
    """The weight as (G, ncb, kb, Og) blocks of W_g^T for grad_input: block bi holds
    input channels bi*cb .. bi*cb+cb-1, rows ordered (channel, tap) for channels-first
    layouts and (tap, channel) for channels-last; missing channels are zero rows."""
    G, Og, Cg = spec.groups, spec.Og, spec.Cg
    taps = math.prod(spec.kernel)
    ncb = -(-Cg // cb)
    w = np.asarray(w, dtype=spec.dtype)
    if spec.channels_last:
        wr = w.reshape(taps, Cg, G, Og).transpose(2, 0, 1, 3)       # (G, taps, Cg, Og)
        full = np.zeros((G, taps, ncb * cb, Og), spec.dtype)
        full[:, :, :Cg] = wr
        full = full.reshape(G, taps, ncb, cb, Og).transpose(0, 2, 1, 3, 4)
    else:
        wr = w.reshape(G, Og, Cg, taps).transpose(0, 2, 3, 1)       # (G, Cg, taps, Og)
        full = np.zeros((G, ncb * cb, taps, Og), spec.dtype)
        full[:, :Cg] = wr
    return np.ascontiguousarray(full).reshape(G, ncb, cb * taps, Og)


def _input_shape(spec, sizes):
    """Batched input shape in the user layout with spatial ``sizes``."""
    return (spec.N,) + tuple(sizes) + (spec.C,) if spec.channels_last else \
        (spec.N, spec.C) + tuple(sizes)


def _weight_shape(spec):
    k = tuple(spec.kernel)
    return k + (spec.Cg, spec.O) if spec.channels_last else (spec.O, spec.Cg) + k


def _flipped_spec(spec, sizes, pads):
    """The forward convolution whose output is the input gradient of ``spec`` (input
    of spatial ``sizes``, zero padding ``pads``), when there is one: stride 1 and
    padding at most the dilated kernel extent. Its input is grad_out (O channels), its
    weight the flipped, transposed weight (:func:`_flipped_weight`), its padding
    (k - 1) * d - pad on each side, so that it reads grad_out exactly where the
    convolution's taps wrote to. None otherwise."""
    if any(s != 1 for s in spec.stride):
        return None
    fpads = []
    for k, d, (b, a) in zip(spec.kernel, spec.dilation, pads):
        e = (k - 1) * d
        if b > e or a > e:
            return None
        fpads.append((e - b, e - a))
    size = tuple(o + b + a - (k - 1) * d for o, (b, a), k, d in
                 zip(spec.out_size, fpads, spec.kernel, spec.dilation))
    if size != tuple(sizes):
        return None
    return _spec._replace(spec, C=spec.O, O=spec.C, in_size=spec.out_size, out_size=size,
                          pads=tuple(fpads), padding_mode="zeros", has_bias=False,
                          batched=True)


FLIP_BY_TAP_MIN = 16384  # Cg * Og from which _flipped_weight transposes tap by tap


def _flipped_weight(spec, w):
    """w of the convolution ``spec`` -> the weight of :func:`_flipped_spec`: per group
    the input and output channels swapped, every spatial axis reversed."""
    G, Og, Cg, nd = spec.groups, spec.Og, spec.Cg, spec.nd
    k = tuple(spec.kernel)
    w = np.asarray(w, dtype=spec.dtype)
    rev = (slice(None, None, -1),) * nd
    if spec.channels_last and G == 1 and Cg * Og >= FLIP_BY_TAP_MIN:
        # one threaded transpose per tap, into the reversed tap's place (reversing
        # every spatial axis reverses the flat tap order): NumPy's strided copy took
        # 5.1 ms for 4x4 256 -> 512, this 0.6
        taps = math.prod(k)
        w3 = np.ascontiguousarray(w).reshape(taps, Cg, Og)
        out = np.empty((taps, Og, Cg), spec.dtype)
        nth = get_num_threads()
        for t in range(taps):
            _core.transpose_last2(w3[t:t + 1], out[taps - 1 - t:taps - t], nth)
        return out.reshape(k + (Og, Cg))
    if spec.channels_last:  # (*k, Cg, O) -> (*k, Og, C)
        wr = w.reshape(k + (Cg, G, Og))
        f = wr.transpose(tuple(range(nd)) + (nd + 2, nd + 1, nd))[rev]
        return np.ascontiguousarray(f).reshape(k + (Og, G * Cg))
    wr = w.reshape((G, Og, Cg) + k)  # (O, Cg, *k) -> (C, Og, *k)
    f = wr.transpose((0, 2, 1) + tuple(range(3, 3 + nd)))[(slice(None),) * 3 + rev]
    return np.ascontiguousarray(f).reshape((G * Cg, Og) + k)


def _forward_form_pays(spec):
    """Whether grad_input as forward convolution(s) (flipped / sub-pixel) beats col2im:
    their outputs are the spec's Cg input channels per group, too few to fill the GEMM
    tiles below 16 (measured 1 thread, float32, batch 16, 32x32: C = 3: 2.7x slower,
    8: 1.2x, 16: 0.97x; stride 2, k = 4: C = 3: 3.8x, 8: 1.6x, 16: 0.76x), unless the
    output channels per group are fewer still: col2im's GEMM then sums over only Og
    (measured 2 threads, float32, 3x3 / 3x3x3, both layouts, groups 1 and 2, Cg 2-12:
    forward form / col2im 0.10-0.88 for Og <= 4, 0.24-0.82 for Og = 8 with Cg >= 8;
    NCHW Cg = 2 with Og 1-2 the exception, 1.1-1.3x but within 0.05 ms; Og = 2 with
    groups = 2 channels-last 3-D at 7x7x7 was 150 ms against 1.25). A depthwise problem
    (one channel per group and per output) runs the depthwise kernels."""
    if _multiplier_forward_form(spec):
        return True
    if math.prod(spec.kernel) == 1 and not spec.channels_last:
        # 1x1: col2im is the same GEMM with nothing to add (measured 0.76 ms against
        # 0.92, 2 threads; again 0.97-1.09 for 14x14-28x28 batch 8, 64-1024 channels).
        # Channels-last the forward kernel (A rows read in place) won: forward form /
        # col2im 0.67-0.97 on 6 of 7 layers (2 threads, three rounds), 256 <- 64 at
        # 28x28 batch 8 even (0.92-1.18)
        return False
    if spec.Cg >= 16 or (spec.Cg == 1 and spec.Og == 1 and spec.groups > 1):
        return True
    if (spec.channels_last and spec.Cg >= 4
            and spec.Cg * math.prod(spec.kernel) > _backward.GRAD_INPUT_BLOCK_ROWS):
        # channels-last col2im then splits the channels into blocks, and its scatter
        # adds runs of a few channels per tap: measured 2 threads, float32, 5 interleaved
        # rounds, forward form / col2im: 8 channels 5x5x5 at 16^3 0.26, 7x7x7 at 12^3
        # 0.32, 4 channels 5x5x5 0.86, 12 channels 3x3x3 0.63, 8 / 12 channels 7x7 at
        # 28x28 0.73 / 0.55, 8 channels 9x9 1.08; within one block (8 channels 3x3x3,
        # 5x5; 4-8 channels 3x3) col2im won by 1.3-2.1x. Channels-first col2im scatters
        # whole pixel rows and stays (0.90-1.25 on the same problems).
        return True
    return spec.Cg > 1 and (spec.Og <= 4 or (spec.Og <= 8 and spec.Cg >= 8))


def _subpixel_possible(spec):
    """Strided problems whose input gradient splits into stride phases (below):
    dilation 1 and every stride at most its kernel size (each phase has a tap)."""
    return (any(s > 1 for s in spec.stride) and all(d == 1 for d in spec.dilation)
            and all(s <= k for s, k in zip(spec.stride, spec.kernel)))


_SUBPIXEL_MIN_PIXELS = 1024


def _subpixel_ok(spec):
    """Whether "auto" runs a strided input gradient as its stride phases: where they
    are possible, and channels-first only when every kernel size is a multiple of its
    stride: uneven phases (3x3 stride 2: 2x2, 2x1, 1x2 and 1x1 kernels) lost to col2im
    there, measured 2 threads, float32, 3x3 stride 2 (ms, sub-pixel vs col2im): batch 4
    of 256 -> 512 at 14x14 7.2 vs 5.1, batch 16 of 32 -> 64 at 32x32 1.66 vs 1.38, batch
    8 of 128 -> 256 at 28x28 8.4 vs 6.9; 1-D k=3 stride 2, 64 channels, L=4000: 4.3 vs
    3.6. Channels-last the phases still won (batch 8 of 128 -> 256 at 28x28: 6.5 vs
    7.8). Small problems lose the phases' fixed cost (a forward call and a strided copy
    each): below _SUBPIXEL_MIN_PIXELS input pixels (batch x spatial) sub-pixel was
    1.1-2.9x slower than col2im (2 threads, float32, 3x3 / 4x4 stride 2, 32-128
    channels; 196 pixels: 0.33 vs 0.09 ms), from 1568 on 0.5-1.2x (channels-first 4x4
    32 -> 128: 0.66-1.8x)."""
    return (_subpixel_possible(spec)
            and (spec.channels_last
                 or all(k % s == 0 for s, k in zip(spec.stride, spec.kernel))
                 or _depthwise_phases_pay(spec)
                 or _phases_via_channels_last(spec))
            and spec.N * math.prod(spec.in_size) >= _SUBPIXEL_MIN_PIXELS)


def _depthwise_gather(spec):
    """Channels-last depthwise problems (one input and one output channel per group)
    whose stride phases would run (channels-first ones ask with their channels-last
    spec and run between transposes, _gather_grad_input): dwgi.h's gather writes each
    dx element once from
    the taps that reach it, with the phases' arithmetic (bitwise the same), instead of
    one depthwise convolution per phase on small kernels (2x2, 2x1, ...) and a strided
    copy of each into dx. In-process A/B, 2 threads, 5 interleaved rounds, gather /
    phases: 3x3 stride 2 96 @ 112² batch 4 0.42, 144 @ 28² batch 8 0.41, 32 @ 112² batch
    8 0.70, float64 96 @ 56² 0.33; 5x5 stride 2 240 @ 28² 0.51, 40 @ 29² 0.59-0.65; 4x4
    stride 2 64 @ 32² 0.50; 3x3 stride 3 0.20; 19 channels 4x4 stride 3 at 17² 0.97."""
    return (spec.channels_last and spec.Cg == 1 and spec.Og == 1 and spec.groups > 1
            and _subpixel_possible(spec)
            and math.prod(-(-k // s) for k, s in zip(spec.kernel, spec.stride))
            <= _backward.GATHER_MAX_TAPS)


# Channels-first depthwise problems run the gather between transposes from 32 channels
# and 32768 elements of dx (2 threads, float32, 3x3 stride 2, gather / scatter loop:
# 16 channels at 32x32 batch 2 1.22x, at 112x112 1.16x; 32 channels at 16x16 1.54x, at
# 56x56 0.89x; 64 at 28x28 0.81x; 144 at 28x28 0.61x).
_GATHER_VIA_MIN_C = 32
_GATHER_VIA_MIN_SIZE = 32768


def _channels_last_spec(spec):
    return dataclasses.replace(spec, layout=_spec.LAYOUTS[spec.nd][1], channels_last=True)


def _gather_grad_input(spec, dy, weight, sizes, pads, dx):
    """dx = dwgi.h's gather of dy (both batched, the user layout; dx of spatial
    ``sizes``, zero padding ``pads``). Channels-first problems run it between threaded
    transposes of dy and dx, with the weight moved to (*k, 1, C): 2 threads, float32,
    3x3 stride 2, against the scatter loop: 144 @ 28² batch 8 0.38x, 128 @ 28² batch 4
    0.48x, 32 @ 112² batch 8 0.60x, 144 @ 56² batch 8 0.66x; 5x5 stride 2 240 @ 28² 0.59x
    (against its phases); 4 x 96 @ 112² (19 MB of dx) was 1.3-1.4x until the array cache
    kept its allocations (now the phases take 1.37x the gather's time there, 1.34x at
    batch 8)."""
    nth = get_num_threads()
    stride3 = spec.as3d(spec.stride, 1)
    pads3 = spec.as3d(tuple(b for b, _ in pads), 0)
    if spec.channels_last:
        _backward.dw_grad_input_gather(_five(spec, dy, spec.out_size),
                                       _prepare_weight(spec, weight), _five(spec, dx, sizes),
                                       stride3, pads3, nth)
        return
    hspec = _channels_last_spec(spec)
    dyh = _core.to_channels_last(_five(spec, dy, spec.out_size), nth)
    w = np.asarray(weight, dtype=spec.dtype).reshape((spec.O,) + tuple(spec.kernel))
    wh = np.ascontiguousarray(np.moveaxis(w, 0, -1)).reshape(tuple(spec.kernel) + (1, spec.O))
    dxh = np.empty((spec.N,) + spec.as3d(sizes, 1) + (spec.C,), spec.dtype)
    _backward.dw_grad_input_gather(dyh, _prepare_weight(hspec, wh), dxh, stride3, pads3, nth)
    if dx.flags.c_contiguous:
        _core.to_channels_first_into(dxh, _five(spec, dx, sizes), nth)
    else:
        dx[...] = np.moveaxis(dxh.reshape((spec.N,) + tuple(sizes) + (spec.C,)), -1, 1)


def _depthwise_phases_pay(spec):
    """Channels-first depthwise-style problems (one input channel per group) with
    uneven phases: against the direct loop nest (a strided scatter per tap), the phases
    on the depthwise forward kernels won from kernels of 2 * stride + 1 (measured 2
    threads, float32, stride 2, batch 8: 5x5 240 ch at 28x28 4.0 vs 7.7 ms, 7x7 32 ch
    at 28x28 0.74 vs 1.95) and were even at 3x3 (0.83-1.1)."""
    return spec.Cg == 1 and all(k >= 2 * s + 1 for s, k in zip(spec.stride, spec.kernel))


def _subpixel_grad_input(spec, dy, weight, sizes, pads, dx, wf=None):
    """The input gradient of a strided convolution as prod(stride) stride-1 forward
    convolutions ("sub-pixel"): padded-input position i = s*m + r (phase r per dim)
    only receives taps k = r + q*s, so

        dx_pad[s*m + r] = sum_q dy[m - q] * w[r + q*s],

    a correlation of grad_out with the flipped weight's taps (K-1-r) % s, ... (every
    s-th one). Each phase runs on the forward algorithms ("auto") over the whole batch,
    then fills its strided slice of dx (every element of dx is written by exactly one
    phase). dy: batched grad_out (user layout); dx: batched result of spatial ``sizes``;
    pads: the zero padding (before, after) per dim."""
    from . import functional  # here: functional imports this module at its end

    nd, cl = spec.nd, spec.channels_last
    phase_px = math.prod(-(-n // s) for n, s in zip(sizes, spec.stride))
    if (not cl and spec.groups == 1 and spec.O >= 16
            and (phase_px <= _plan.NCHW_VIA_NHWC_MAX_PIXELS
                 and spec.N * phase_px >= _plan.NCHW_VIA_NHWC_MIN_ROWS
                 or _phases_via_channels_last(spec))):
        # channels-first, small phase images (where each phase's convolution would run
        # channels-last between transposes anyway, _plan.nchw_via_nhwc): the phases run
        # channels-last with one threaded transpose of grad_out, of the weight and of dx
        # for the whole call instead of three per phase. DCGAN 512->256 k4s2 4x4 batch
        # 64: 22.8 -> 13.5 ms (2 threads); on larger images the channels-first phases
        # stay faster (1-D L=4000: 2.4 ms against 10 ms), except where the channels-last
        # phases run as one call (_phases_via_channels_last)
        nth = get_num_threads()
        hspec = _channels_last_spec(spec)
        O, C, k = spec.O, spec.C, tuple(spec.kernel)
        w = np.ascontiguousarray(weight, dtype=spec.dtype)
        taps = math.prod(k)
        wt = np.empty((taps, O, C), spec.dtype)  # [tap, o, c] = w[o, c, tap]
        _core.transpose_last2(w.reshape(1, O * C, taps), wt.reshape(1, taps, O * C), nth)
        wf = wt.reshape(k + (O, C))[(slice(None, None, -1),) * nd]  # flipped, (*k, O, C)
        dxh = np.empty((dx.shape[0],) + tuple(dx.shape[2:]) + (dx.shape[1],), spec.dtype)
        _subpixel_grad_input(hspec, _core.to_channels_last(dy, nth), None, sizes, pads, dxh,
                             wf=wf)
        if dx.flags.c_contiguous:
            _core.to_channels_first_into(dxh, dx, nth)
        else:
            dx[...] = np.moveaxis(dxh, -1, 1)
        return
    if wf is None:
        wf = _flipped_weight(spec, weight)
    sp0 = 1 if cl else 2                      # first spatial axis of dy / dx
    wsp0 = 0 if cl else 2                     # first spatial axis of the weight
    phases = []  # per phase: dy slice, weight taps, conv padding, dx slice, geometry
    for r in itertools.product(*(range(s) for s in spec.stride)):
        dsl = [slice(None)] * dy.ndim
        xsl = [slice(None)] * dx.ndim
        wsl = [slice(None)] * wf.ndim
        conv_pads, geo = [], []
        empty = False
        for d in range(nd):
            s, K, (pb, _), n = spec.stride[d], spec.kernel[d], pads[d], sizes[d]
            L = spec.out_size[d]
            q = -(-(K - r[d]) // s)
            wsl[wsp0 + d] = slice((K - 1 - r[d]) % s, None, s)
            # phase positions m with input index s*m + r - pb inside [0, n)
            m_lo = -((r[d] - pb) // s)
            m_hi = (pb + n - 1 - r[d]) // s
            count = m_hi - m_lo + 1
            if count <= 0:
                empty = True
                break
            # output t = m - m_lo reads dy[t + m_lo - (q - 1) + q'], q' < q
            before = q - 1 - m_lo
            lo = 0
            if before < 0:
                lo, before = -before, 0
            hi = L
            after = count + q - 1 - (hi - lo) - before
            if after < 0:
                hi, after = hi + after, 0
            if hi <= lo:  # every read of this phase falls outside grad_out
                dsl[sp0 + d] = slice(0, 0)
            else:
                dsl[sp0 + d] = slice(lo, hi)
            conv_pads.append((before, after))
            ih0 = s * m_lo + r[d] - pb
            xsl[sp0 + d] = slice(ih0, ih0 + s * (count - 1) + 1, s)
            geo.append((lo, hi - lo, q, before, count, ih0))
        if empty:
            continue
        if 0 in dy[tuple(dsl)].shape[sp0:sp0 + nd]:
            dx[tuple(xsl)] = 0
            continue
        phases.append((tuple(dsl), tuple(wsl), tuple(conv_pads), tuple(xsl), geo))
    if cl and phases and dx.flags.c_contiguous and _phases_one_call(spec):
        _subpixel_fused(spec, dy, wf, dx, phases)
        return
    conv = (functional.conv1d, functional.conv2d, functional.conv3d)[nd - 1]
    for dsl, wsl, conv_pads, xsl, _ in phases:
        y = conv(dy[dsl], np.ascontiguousarray(wf[wsl]), None, 1, conv_pads, 1,
                 spec.groups, layout=spec.layout)
        # the phase's strided slice of dx, on all threads (NumPy's strided assignment
        # took about a tenth of a 128 -> 64 k4s2 transposed convolution on one thread)
        lead = (slice(None),) + (None,) * (5 - y.ndim)
        _core.copy_into(y[lead], dx[xsl][lead], get_num_threads())


def _phases_one_call(spec):
    """Whether the stride phases of the input gradient of ``spec`` (either layout; as
    the channels-last problem) run as one call (_im2col.subpixel_nhwc) instead of one
    forward convolution and one strided copy per phase: exactly where each phase's
    forward call would run the indirect channels-last kernel that subpixel_nhwc repeats
    (grad_out rows read in place: at least 16 channels per group, rows not a multiple
    of 4 KB apart; no phase kernel that "auto" would give to Winograd (3x3 / 3-tap), to
    the grouped direct kernels (groups of at most 32 grad_out channels) or to the
    channels-first route (at most 16 dx channels per group)), so the results are
    bitwise the same. Measured 2 threads, float32, 9 interleaved rounds, one call / per
    phase: grad_input 3x3 stride 2 64 -> 128 at 56x56 batch 8 0.87, 128 -> 256 0.89;
    transposed 128 -> 64 k4s2 16x16 batch 16 0.92-0.93; DCGAN 512 -> 256 k4s2 4x4 batch
    64 0.97-0.99 (even). The items of all phases share one static round-robin schedule
    (chunks of 1): with contiguous halves the 3x3 stride-2 phases (4, 2, 2 and 1 taps)
    split 6:3 over two threads and ran 1.12x the per-phase time."""
    from . import _im2col

    if spec.Og < _im2col.INDIRECT_MIN_CH or (spec.O * spec.dtype.itemsize) % 4096 == 0:
        return False
    if spec.Cg <= 16 or (spec.groups > 1 and spec.Og <= 32):
        return False
    # a 3x3 (3-tap) phase exists when every dim has a phase of 3 taps
    return not (spec.nd <= 2 and all(any(-(-(k - r) // s) == 3 for r in range(s))
                                     for k, s in zip(spec.kernel, spec.stride)))


def _phases_via_channels_last(spec):
    """Channels-first strided input gradients whose phases run channels-last as one call
    (_phases_one_call; one group, the transposed copies within _plan.copies_fit):
    grad_out in and dx out through threaded transposes. Against the channels-first
    route (col2im for uneven phases such as 3x3 stride 2, the channels-first phases for
    even ones), measured 2 threads, float32, 9 interleaved rounds, via / channels-first:
    3x3 stride 2 64 -> 128 at 56x56 batch 8 0.95, 256 -> 512 at 28x28 batch 4 0.86,
    32 -> 64 at 32x32 batch 16 0.88, 128 -> 256 at 56x56 batch 8 1.01; 4x4 stride 2
    64 -> 128 at 32x32 batch 8 0.89."""
    return (not spec.channels_last and spec.groups == 1 and _plan.copies_fit(spec)
            and _phases_one_call(spec))


def _subpixel_fused(spec, dy, wf, dx, phases):
    """The phases of _subpixel_grad_input in one _im2col.subpixel_nhwc call."""
    from . import _im2col

    nd = spec.nd
    info = np.zeros((len(phases), _im2col.SUBPIXEL_COLS), np.int64)
    weights = []
    for i, (_, wsl, _, _, geo) in enumerate(phases):
        full = [(0, 1, 1, 0, 1, 0)] * (3 - nd) + list(geo)
        for d, vals in enumerate(full):  # columns SPX_LO, _EXT, _K, _PAD, _CNT, _X0 + d
            info[i, [d, 3 + d, 6 + d, 9 + d, 12 + d, 15 + d]] = vals
        weights.append(np.ascontiguousarray(wf[wsl]).ravel())
    N = dy.shape[0]
    dy5 = np.ascontiguousarray(dy, dtype=spec.dtype)
    dy5 = dy5.reshape((N,) + spec.as3d(dy.shape[1:-1], 1) + dy.shape[-1:])
    dx5 = dx.reshape((N,) + spec.as3d(dx.shape[1:-1], 1) + dx.shape[-1:])
    _im2col.subpixel_nhwc(dy5, weights, dx5, info,
                          spec.as3d(spec.stride, 1), spec.groups, get_num_threads())


def _per_multiplier(spec):
    """Channels-last depthwise-style problems with a channel multiplier m > 1 (output
    channel c * m + j reads input channel c): their input gradient runs as m depthwise
    (m = 1) gradients, one per j, which take the depthwise forward kernels (stride 1)
    or the stride phases, instead of the scalar scatter loop that sums over j inside
    (2 threads, float32, 3x3 32@56 batch 4, medians of 7: m = 2 1.2-1.3 ms per j
    against 4.1-7.0 ms for the scatter loop, m = 4 2.7-3.5 against 8.0-11.7)."""
    return (spec.channels_last and spec.Cg == 1 and spec.groups > 1 and spec.Og > 1
            and spec.N > 0 and math.prod(spec.out_size) > 0
            and not _multiplier_forward_form(spec))


MULTIPLIER_FORWARD_MAX_C = 64


def _multiplier_forward_form(spec):
    """Channels-last depthwise-style problems with a channel multiplier m > 1, stride 1,
    at most MULTIPLIER_FORWARD_MAX_C input channels and padding within the dilated
    kernel: the input gradient as one forward convolution (C groups of m inputs and one
    output, the flipped weight) rather than m depthwise gradients, each on C lanes.
    Measured 2 threads, float32, 7 interleaved rounds, forward form / per multiple: 2
    channels x 8 5x5 at 56x56 batch 8 0.25 (the seed-37 cliff), 7x7 d2 0.09, 3x3 at 7x7
    0.17; 8 x 8 0.34, 4 x 8 7x7 0.40, 32 x 2 0.73, 3-D 8 x 8 7x7x7 0.90, 1x1x1 4 x 8 0.30;
    144 x 2 1.03 (so not from 128 channels on)."""
    return (spec.channels_last and spec.Cg == 1 and spec.groups > 1 and spec.Og > 1
            and spec.C <= MULTIPLIER_FORWARD_MAX_C and all(s == 1 for s in spec.stride)
            and all(b <= (k - 1) * d and a <= (k - 1) * d for (b, a), k, d in
                    zip(spec.pads, spec.kernel, spec.dilation)))


def _grad_input_per_multiplier(spec, grad_out, weight, out):
    """dx = sum over j = 0 .. m - 1, in order, of the input gradient of the depthwise
    convolution (m = 1) between x and output channels c * m + j (grad_out's channels
    and the weight's, moved to contiguous (m, ..., C) copies). Each term is bitwise the
    same for every thread count, and so is the sum."""
    m, C, nth = spec.Og, spec.C, get_num_threads()
    dy = _batched(spec, np.ascontiguousarray(grad_out, dtype=spec.dtype))
    dyt = np.empty((m,) + dy.shape[:-1] + (C,), spec.dtype)
    _core.to_channels_first_into(dy.reshape(1, -1, m), dyt.reshape(1, m, -1), nth)
    w = np.asarray(weight, dtype=spec.dtype)
    wt = np.ascontiguousarray(np.moveaxis(w.reshape(w.shape[:-1] + (C, m)), -1, 0))
    spec1 = dataclasses.replace(spec, O=C, batched=True)
    dx = _grad_input(spec1, dyt[0], wt[0])
    for j in range(1, m):
        with np.errstate(all="ignore"):  # Inf - Inf is NaN by definition: no warning
            dx += _grad_input(spec1, dyt[j], wt[j])
    return _deliver(spec, dx, out)


def _deliver(spec, dx, out):
    """A batched result dx as the call returns it: unbatched if x was, copied into out
    when given."""
    if not spec.batched:
        dx = dx[0]
    if out is not None:
        out[...] = dx
        return out
    return dx


def _few_outputs_via_channels_last(spec):
    """Channels-first strided problems with uneven stride phases (some kernel size not
    a multiple of its stride), at least 16 input and at most 8 output channels per
    group: their grad_input runs channels-last between transposes (the channels-last
    stride phases), where channels-first col2im multiplies with K = Og and scatters
    every tap. 2 threads, float32, 5 rounds, via / channels-first: 7x7 stride 2 128 ch
    g4 (32 -> 4 per group) at 56x56 batch 4 0.32, 64 -> 8 (one group) 0.39; 5x5 64 ch
    g2 -> 16 at 56x56 batch 8 0.52; 3x3 256 g4 -> 4 at 28x28 0.66, 128 g4 -> 32 0.69,
    at 56x56 -> 16 0.90; with more output channels per group mixed (16 -> 16 0.61,
    16 -> 32 1.23, 4 -> 4 1.71)."""
    return (not spec.channels_last and spec.Cg >= 16 and spec.Og <= 8 and spec.Og >= 1
            and _subpixel_possible(spec)
            and not all(k % s == 0 for s, k in zip(spec.stride, spec.kernel))
            and spec.N * math.prod(spec.in_size) >= _SUBPIXEL_MIN_PIXELS
            and _plan.copies_fit(spec))


def _grad_input_via_channels_last(spec, grad_out, weight, out):
    """dL/dx of a channels-first problem computed channels-last: grad_out and the
    weight moved to channels-last, dx moved back (threaded transposes)."""
    nth = get_num_threads()
    hspec = dataclasses.replace(_channels_last_spec(spec), batched=True)
    dy = _batched(spec, np.ascontiguousarray(grad_out, dtype=spec.dtype))
    dyh = _core.to_channels_last(dy, nth)
    w = np.asarray(weight, dtype=spec.dtype).reshape((spec.O, spec.Cg) + tuple(spec.kernel))
    wh = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2)))
    dxh = _grad_input(hspec, dyh, wh)
    dx = np.empty((spec.N, spec.C) + tuple(spec.in_size), spec.dtype)
    _core.to_channels_first_into(dxh, dx, nth)
    return _deliver(spec, dx, out)


# channels-last input gradients with at most this many input channels (one group)
GI_VIA_CHANNELS_FIRST_MAX_C = 4


def _few_inputs_via_channels_first(spec):
    """Channels-last dense problems with at most GI_VIA_CHANNELS_FIRST_MAX_C input
    channels (first layers: the input gradient of an RGB image), a spatial kernel and
    at least 8 output channels: their grad_input runs channels-first between transposes,
    where channels-last col2im scatters runs of a few channels per tap."""
    return (spec.channels_last and spec.groups == 1 and 1 <= spec.C
            <= GI_VIA_CHANNELS_FIRST_MAX_C and spec.O >= 8 and math.prod(spec.kernel) > 1
            and _plan.copies_fit(spec))


def _grad_input_via_channels_first(spec, grad_out, weight, out):
    """dL/dx of a channels-last problem computed channels-first: grad_out and the weight
    moved to channels-first, dx moved back (threaded transposes)."""
    nth = get_num_threads()
    fspec = dataclasses.replace(spec, layout=_spec.LAYOUTS[spec.nd][0], channels_last=False,
                                batched=True)
    dy5 = _five(spec, _batched(spec, np.ascontiguousarray(grad_out, dtype=spec.dtype)),
                spec.out_size)
    dyc = np.empty((spec.N, spec.O) + dy5.shape[1:4], spec.dtype)
    _core.to_channels_first_into(dy5, dyc, nth)
    k = tuple(spec.kernel)
    w = np.asarray(weight, dtype=spec.dtype).reshape(k + (spec.Cg, spec.O))
    wc = np.ascontiguousarray(np.moveaxis(w, (-1, -2), (0, 1)))
    dxc = _grad_input(fspec, dyc.reshape((spec.N, spec.O) + tuple(spec.out_size)), wc)
    return _deliver(spec, _core.to_channels_last(dxc, nth), out)


def _grad_input_pointwise_strided(spec, sspec, grad_out, weight, out):
    """dL/dx of a strided 1x1 convolution without padding (_plan.pointwise_strided_spec):
    the stride-1 input gradient of sspec (one GEMM, as a forward 1x1 convolution with the
    transposed weight) scattered to every stride-th position, zeros elsewhere."""
    fspec = _flipped_spec(sspec, sspec.in_size, sspec.pads)
    dy = _batched(spec, np.ascontiguousarray(grad_out, dtype=spec.dtype))
    y = np.empty(fspec.out_shape, spec.dtype)
    _run(fspec, _plan.choose_forward(fspec, "auto"), dy, _flipped_weight(spec, weight), None, y)
    if out is not None:
        dx = _batched(spec, out)
        dx[...] = 0
    else:
        dx = np.zeros(_input_shape(spec, spec.in_size), spec.dtype)
    _core.copy_into(y.reshape(_five_shape(sspec, spec.C)),
                    _five(spec, dx, spec.in_size)[subsample_index(spec)], get_num_threads())
    return _finish_grad_input(spec, dx, out, False)


def _grad_input_patches(spec, tspec, grad_out, weight, out):
    """dL/dx of a patch convolution (kernel == stride, _plan.patch_spec): the input
    gradient of its 1x1 problem (one GEMM) copied back to the patches (depth to space),
    zeros past the last whole patch."""
    g = _grad_input(tspec, _batched(spec, grad_out), patch_weight(spec, tspec, weight))
    whole = all(o * k == n for o, k, n in zip(spec.out_size, spec.kernel, spec.in_size))
    if out is not None:
        dx = _batched(spec, out)
        if not whole:
            dx[...] = 0
    else:
        dx = (np.empty if whole else np.zeros)(_input_shape(spec, spec.in_size), spec.dtype)
    depth_to_space_into(spec, g, _five(spec, dx, spec.in_size))
    return _finish_grad_input(spec, dx, out, False)


def _grad_input(spec, grad_out, weight, out=None, algorithm="auto"):
    """dL/dx of the convolution ``spec`` (a new array in x's shape, or ``out``)."""
    sspec = _plan.pointwise_strided_spec(spec, "grad_input") if algorithm == "auto" else None
    if sspec is not None and spec.Og and spec.N and math.prod(spec.out_size):
        return _grad_input_pointwise_strided(spec, sspec, grad_out, weight, out)
    tspec = _plan.patch_spec(spec, "grad_input") if algorithm == "auto" else None
    if tspec is not None and spec.N and math.prod(spec.out_size):
        return _grad_input_patches(spec, tspec, grad_out, weight, out)
    if algorithm == "auto" and _per_multiplier(spec):
        return _grad_input_per_multiplier(spec, grad_out, weight, out)
    if algorithm == "auto" and _few_outputs_via_channels_last(spec):
        return _grad_input_via_channels_last(spec, grad_out, weight, out)
    if algorithm == "auto" and _few_inputs_via_channels_first(spec):
        return _grad_input_via_channels_first(spec, grad_out, weight, out)
    algo = _plan.choose_backward(spec, algorithm)
    padded = _mode_padded(spec)
    if padded:
        sizes = tuple(n + b + a for n, (b, a) in zip(spec.in_size, spec.pads))
        pads3 = (0, 0, 0)
    else:
        sizes = spec.in_size
        pads3 = spec.as3d(tuple(b for b, _ in spec.pads), 0)
    P = math.prod(spec.out_size)
    zpads = ((0, 0),) * spec.nd if padded else spec.pads
    fspec = subpixel = None
    gather = algorithm == "auto" and _depthwise_gather(
        spec if spec.channels_last else _channels_last_spec(spec)) and (
        spec.channels_last or (spec.C >= _GATHER_VIA_MIN_C
                               and spec.N * spec.C * math.prod(sizes) >= _GATHER_VIA_MIN_SIZE))
    if algorithm == "auto" and spec.Og and P and spec.N and _forward_form_pays(spec):
        fspec = _flipped_spec(spec, sizes, zpads)
        subpixel = fspec is None and (_subpixel_ok(spec) or gather)
    if fspec is not None or subpixel:
        # as forward convolutions (every element of dx written once), on the fastest
        # forward algorithms ("auto": im2col, depthwise or Winograd): stride 1, the
        # flipped weight; strided, one convolution per stride phase
        if out is not None and not padded:
            dx = _batched(spec, out)
        else:
            dx = np.empty(_input_shape(spec, sizes), spec.dtype)
        if dx.size:
            dy = _batched(spec, np.ascontiguousarray(grad_out, dtype=spec.dtype))
            if fspec is not None:
                _run(fspec, _plan.choose_forward(fspec, "auto"), dy,
                     _flipped_weight(spec, weight), None, dx)
            elif gather:
                _gather_grad_input(spec, dy, weight, sizes, zpads, dx)
            else:
                _subpixel_grad_input(spec, dy, weight, sizes, zpads, dx)
        return _finish_grad_input(spec, dx, out, padded)
    if out is not None and not padded:
        dx = _batched(spec, out)
        dx[...] = 0
    else:
        dx = np.zeros(_input_shape(spec, sizes), spec.dtype)
    if dx.size and spec.Og and P:
        nth = get_num_threads()
        dy5 = _five(spec, _batched(spec, np.ascontiguousarray(grad_out, dtype=spec.dtype)),
                    spec.out_size)
        geom = (spec.as3d(spec.stride, 1), pads3, spec.as3d(spec.dilation, 1))
        if algo is _plan.Algorithm.DIRECT:
            _backward.dw_grad_input(dy5, _prepare_weight(spec, weight), _five(spec, dx, sizes),
                                    *geom, spec.channels_last, nth)
        else:
            taps = math.prod(spec.kernel)
            cb = _backward.channel_block(spec.N, spec.groups, spec.Cg, taps, nth)
            wt = _weight_blocks(spec, weight, cb)
            _backward.grad_input(dy5, wt, _five(spec, dx, sizes), spec.as3d(spec.kernel, 1),
                                 cb, *geom, spec.groups, spec.channels_last, nth)
    return _finish_grad_input(spec, dx, out, padded)


def _finish_grad_input(spec, dx, out, padded):
    if padded:
        dx = _unpad_grad(dx, spec.pads, spec.padding_mode, _spatial_axes(spec))
    if not spec.batched:
        dx = dx[0]
    if out is not None:
        if padded:
            out[...] = dx
        return out
    return dx


def _bias_with_weight(spec):
    """True where the weight gradient also sums the bias gradient on its way: the
    channels-last depthwise-style route (dwgw.h reads each row of grad_out while it is
    in cache; a separate bias pass rereads all of grad_out)."""
    return spec.channels_last and _plan.choose_grad_weight(spec, "auto") is _plan.Algorithm.DIRECT


def _dw_bias_rows(spec):
    """grad_out pixel rows per block of the bias gradient (biasgrad.h): for
    channels-last depthwise-style problems the depthwise weight gradient's row blocks
    (so that the bias comes out bitwise the same with or without the weight gradient),
    0 (the default blocks) for the others."""
    if not _bias_with_weight(spec):
        return 0
    od, oh, ow = spec.as3d(spec.out_size, 1)
    rows = _backward.dw_row_block(spec.N * od * oh, math.prod(spec.kernel), spec.O,
                                  np.dtype(spec.dtype).itemsize)
    return rows * ow


def _grad_weight(spec, x, grad_out, algorithm="auto", db=None):
    """dL/dweight of the convolution ``spec`` (a new array in the weight's shape).
    db: None, or (only where _bias_with_weight(spec) and algorithm is "auto") a zeroed
    float64 (O,) array that receives the bias gradient's double sums."""
    if db is not None and not (algorithm == "auto" and _bias_with_weight(spec)):
        raise AssertionError("cconv: the bias gradient rides only on the depthwise route")
    algo = _plan.choose_grad_weight(spec, algorithm)
    wshape = _weight_shape(spec)
    P = math.prod(spec.out_size)
    if spec.N == 0 or spec.Cg == 0 or spec.O == 0 or P == 0:
        return np.zeros(wshape, spec.dtype)
    tspec = _plan.patch_spec(spec, "grad_weight") if algorithm == "auto" else None
    if tspec is not None and db is None:
        # non-overlapping patches: the 1x1 gradient over their space-to-depth copy
        return _grad_weight(tspec, space_to_depth(spec, tspec, x),
                            _batched(spec, np.asarray(grad_out)), algorithm).reshape(wshape)
    sspec = _plan.pointwise_strided_spec(spec, "grad_weight") if algorithm == "auto" else None
    if sspec is not None and db is None:
        # strided 1x1 without padding: the stride-1 gradient over the positions read
        return _grad_weight(sspec, subsampled_input(spec, sspec, x),
                            _batched(spec, np.asarray(grad_out)), algorithm)
    dw = np.empty(wshape, spec.dtype)
    x5, pads3 = _prepare_input(spec, x)
    dy5 = _five(spec, _batched(spec, np.ascontiguousarray(grad_out, dtype=spec.dtype)),
                spec.out_size)
    dw5 = _prepare_weight(spec, dw)  # a view: dw is contiguous
    geom = (spec.as3d(spec.stride, 1), tuple(p[0] for p in pads3), spec.as3d(spec.dilation, 1))
    if algorithm == "auto" and (
            (algo is _plan.Algorithm.IM2COL and _plan.nchw_via_nhwc(spec))
            or _plan.nchw_grad_weight_via_nhwc(spec)):
        # channels-first small images, or dense stride-1 spatial kernels: the
        # channels-last reduction reads x in place (see the two predicates)
        nth = get_num_threads()
        xh = _core.to_channels_last(x5, nth)
        dyh = _core.to_channels_last(dy5, nth)
        dwh = np.empty(dw5.shape[2:] + (dw5.shape[1], dw5.shape[0]), spec.dtype)
        _backward.grad_weight(xh, dyh, dwh, *geom, spec.groups, True, nth)
        _weight_to_channels_first(dwh, dw5, nth)
    elif algo is _plan.Algorithm.DIRECT and not spec.channels_last:
        _backward.grad_weight_dot(x5, dy5, dw5, *geom, spec.groups, get_num_threads())
    elif (algo is _plan.Algorithm.IM2COL and algorithm == "auto"
          and _plan.nhwc_grad_weight_via_nchw(spec)):
        # few input channels per group, channels-last: the channels-first kernels
        # between transposes (the channels-last reduction builds row blocks there)
        nth = get_num_threads()
        fspec = dataclasses.replace(spec, layout=_spec.LAYOUTS[spec.nd][0],
                                    channels_last=False)
        xc = np.empty((spec.N, spec.C) + x5.shape[1:4], spec.dtype)
        _core.to_channels_first_into(x5, xc, nth)
        dyc = np.empty((spec.N, spec.O) + dy5.shape[1:4], spec.dtype)
        _core.to_channels_first_into(dy5, dyc, nth)
        dwc = np.empty((spec.O, spec.Cg) + dw5.shape[:3], spec.dtype)
        if _plan.choose_grad_weight(fspec, "auto") is _plan.Algorithm.DIRECT:
            _backward.grad_weight_dot(xc, dyc, dwc, *geom, spec.groups, nth)
        else:
            _backward.grad_weight(xc, dyc, dwc, *geom, spec.groups, False, nth)
        dw5[...] = dwc.transpose(2, 3, 4, 1, 0)
    elif algo is _plan.Algorithm.DIRECT:
        _backward.dw_grad_weight_nhwc(x5, dy5, dw5, *geom, get_num_threads(), db)
    else:
        _backward.grad_weight(x5, dy5, dw5, *geom, spec.groups, spec.channels_last,
                              get_num_threads())
    return dw


def _weight_to_channels_first(dwh, dw5, nth):
    """dw5 (O, Cg, *k) = dwh (*k, Cg, O) rearranged, by two threaded blocked transposes
    (NumPy's strided assignment took several ms on a 512 -> 512 3x3 weight)."""
    taps = dwh.shape[0] * dwh.shape[1] * dwh.shape[2]
    Cg, O = dwh.shape[3], dwh.shape[4]
    toc = np.empty((taps, O, Cg), dwh.dtype)
    _core.transpose_last2(dwh.reshape(taps, Cg, O), toc, nth)
    if not dw5.flags.c_contiguous:  # reshape below must be a view of dw5
        raise AssertionError("cconv: grad_weight expects its contiguous weight view")
    _core.transpose_last2(toc.reshape(1, taps, O * Cg), dw5.reshape(1, O * Cg, taps), nth)


def _grad_bias(spec, grad_out, channels, rows_per_block=0):
    """grad_out summed over batch and space per channel: double accumulators in a fixed
    order on the threads (biasgrad.h), rounded once to the compute dtype (NumPy's
    one-thread sum over the non-contiguous axes took a third of a depthwise backward).
    rows_per_block: channels-last pixel rows per block (0: the default blocks)."""
    g = _batched(spec, np.ascontiguousarray(grad_out, dtype=spec.dtype))
    return _backward.grad_bias(g, channels, spec.channels_last, get_num_threads(),
                               rows_per_block)


def _conv_forward_sized(spec, x, weight, algorithm="auto"):
    """The convolution ``spec`` (zero padding) of x, whose output has exactly
    spec.out_size (it may be smaller than the forward formula gives: a transposed
    convolution's output_padding adds input pixels no output reads)."""
    result = np.empty(spec.out_shape, spec.dtype)
    if result.size == 0:
        return result
    if spec.Cg == 0:
        result[...] = 0
        return result
    _run(spec, _plan.choose_forward(spec, algorithm), x, weight, None, result)
    return result


# ----------------------------------------------------------------------------- convolution

def _conv_grad_input(fname, nd, grad_out, weight, input_shape, stride, padding, dilation,
                     groups, padding_mode, layout, algorithm):
    spec, grad_out, weight = _spec.grad_input_spec(
        fname, nd, grad_out, weight, input_shape, stride, padding, dilation, groups,
        padding_mode, layout, algorithm)
    return _grad_input(spec, grad_out, weight, algorithm=algorithm)


def _conv_grad_weight(fname, nd, x, grad_out, weight_shape, stride, padding, dilation,
                      groups, padding_mode, layout, algorithm):
    spec, x, grad_out = _spec.grad_weight_spec(
        fname, nd, x, grad_out, weight_shape, stride, padding, dilation, groups,
        padding_mode, layout, algorithm)
    return _grad_weight(spec, x, grad_out, algorithm)


def _conv_backward(fname, nd, grad_out, x, weight, stride, padding, dilation, groups,
                   padding_mode, layout, need):
    spec, grad_out, x, weight, need = _spec.backward_spec(
        fname, nd, grad_out, x, weight, stride, padding, dilation, groups, padding_mode,
        layout, need)
    gi = _grad_input(spec, grad_out, weight) if "input" in need else None
    # channels-last depthwise: the weight gradient sums the bias as it reads grad_out
    fused = "weight" in need and "bias" in need and _bias_with_weight(spec)
    db = np.zeros(spec.O, np.float64) if fused else None
    gw = _grad_weight(spec, x, grad_out, db=db) if "weight" in need else None
    if fused:
        gb = db.astype(spec.dtype)
    else:
        gb = _grad_bias(spec, grad_out, spec.O, _dw_bias_rows(spec)) if "bias" in need else None
    return gi, gw, gb


def conv1d_grad_input(grad_out, weight, input_shape, stride=1, padding=0, dilation=1,
                      groups=1, *, padding_mode="zeros", layout="NCL", algorithm="auto"):
    """Gradient of :func:`cconv.conv1d` w.r.t. its input x (of shape ``input_shape``).
    See :func:`conv2d_grad_input`."""
    return _conv_grad_input("conv1d_grad_input", 1, grad_out, weight, input_shape, stride,
                            padding, dilation, groups, padding_mode, layout, algorithm)


def conv2d_grad_input(grad_out, weight, input_shape, stride=1, padding=0, dilation=1,
                      groups=1, *, padding_mode="zeros", layout="NCHW", algorithm="auto"):
    """Gradient of :func:`cconv.conv2d` w.r.t. its input.

    grad_out: dL/dy, the shape of conv2d's output. weight: as in the forward.
    input_shape: the shape of x (batched or unbatched). The other arguments mean what
    they mean in the forward call (every padding form and padding_mode: the gradient
    that flows into reflect / replicate / circular borders is folded back onto the
    input pixels they copy). Returns dL/dx, a new C-contiguous array of input_shape in
    the compute dtype. algorithm: "auto", "im2col" (GEMM + col2im on bounded tiles) or
    "direct" (a loop nest for depthwise-style problems, one input channel per group;
    "auto" picks it for those). Bitwise identical for every thread count.
    """
    return _conv_grad_input("conv2d_grad_input", 2, grad_out, weight, input_shape, stride,
                            padding, dilation, groups, padding_mode, layout, algorithm)


def conv3d_grad_input(grad_out, weight, input_shape, stride=1, padding=0, dilation=1,
                      groups=1, *, padding_mode="zeros", layout="NCDHW", algorithm="auto"):
    """Gradient of :func:`cconv.conv3d` w.r.t. its input. See :func:`conv2d_grad_input`."""
    return _conv_grad_input("conv3d_grad_input", 3, grad_out, weight, input_shape, stride,
                            padding, dilation, groups, padding_mode, layout, algorithm)


def conv1d_grad_weight(x, grad_out, weight_shape, stride=1, padding=0, dilation=1,
                       groups=1, *, padding_mode="zeros", layout="NCL", algorithm="auto"):
    """Gradient of :func:`cconv.conv1d` w.r.t. its weight. See :func:`conv2d_grad_weight`."""
    return _conv_grad_weight("conv1d_grad_weight", 1, x, grad_out, weight_shape, stride,
                             padding, dilation, groups, padding_mode, layout, algorithm)


def conv2d_grad_weight(x, grad_out, weight_shape, stride=1, padding=0, dilation=1,
                       groups=1, *, padding_mode="zeros", layout="NCHW", algorithm="auto"):
    """Gradient of :func:`cconv.conv2d` w.r.t. its weight (of shape ``weight_shape``,
    in the layout's weight convention). Returns a new array; with an empty batch it is
    all zeros. Summed over images and pixels in a fixed order: bitwise identical for
    every thread count and every ISA path. algorithm: "im2col" (an implicit-GEMM
    reduction), "direct" (channels-first layouts: dot products along output rows,
    any groups; channels-last: depthwise-style problems only) or "auto" (channels-first:
    "direct" unless the output rows are shorter than 8 pixels; channels-last: "direct"
    for depthwise-style problems)."""
    return _conv_grad_weight("conv2d_grad_weight", 2, x, grad_out, weight_shape, stride,
                             padding, dilation, groups, padding_mode, layout, algorithm)


def conv3d_grad_weight(x, grad_out, weight_shape, stride=1, padding=0, dilation=1,
                       groups=1, *, padding_mode="zeros", layout="NCDHW", algorithm="auto"):
    """Gradient of :func:`cconv.conv3d` w.r.t. its weight. See :func:`conv2d_grad_weight`."""
    return _conv_grad_weight("conv3d_grad_weight", 3, x, grad_out, weight_shape, stride,
                             padding, dilation, groups, padding_mode, layout, algorithm)


def conv1d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode="zeros", layout="NCL", need=_ALL):
    """(grad_input, grad_weight, grad_bias) of :func:`cconv.conv1d`. See
    :func:`conv2d_backward`."""
    return _conv_backward("conv1d_backward", 1, grad_out, x, weight, stride, padding,
                          dilation, groups, padding_mode, layout, need)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode="zeros", layout="NCHW", need=_ALL):
    """All gradients of :func:`cconv.conv2d` at once: (grad_input, grad_weight,
    grad_bias). need: the names to compute, from ("input", "weight", "bias"); the others
    are None. grad_bias is grad_out summed over batch and space, shape (O,)."""
    return _conv_backward("conv2d_backward", 2, grad_out, x, weight, stride, padding,
                          dilation, groups, padding_mode, layout, need)


def conv3d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode="zeros", layout="NCDHW", need=_ALL):
    """(grad_input, grad_weight, grad_bias) of :func:`cconv.conv3d`. See
    :func:`conv2d_backward`."""
    return _conv_backward("conv3d_backward", 3, grad_out, x, weight, stride, padding,
                          dilation, groups, padding_mode, layout, need)


# ----------------------------------------------------------------------------- transposed

def _transpose(fname, nd, x, weight, bias, stride, padding, output_padding, groups,
               dilation, layout, algorithm, out):
    tspec, x, weight, bias = _spec.transpose_spec(
        fname, nd, x, weight, bias, stride, padding, output_padding, groups, dilation,
        layout, algorithm)
    if out is not None:
        _spec.check_out(tspec, out, [("x", x), ("weight", weight), ("bias", bias)])
    result = _grad_input(tspec.conv, x, weight, out=out, algorithm=algorithm)
    if bias is not None and result.size:
        b = np.asarray(bias, dtype=tspec.dtype)
        result += b if tspec.conv.channels_last else b.reshape((-1,) + (1,) * nd)
    return result


def _transpose_grad_input(fname, nd, grad_out, weight, input_shape, stride, padding,
                          output_padding, groups, dilation, layout, algorithm):
    tspec, grad_out, weight = _spec.transpose_grad_input_spec(
        fname, nd, grad_out, weight, input_shape, stride, padding, output_padding, groups,
        dilation, layout, algorithm)
    return _conv_forward_sized(tspec.conv, grad_out, weight, algorithm)


def _transpose_grad_weight(fname, nd, x, grad_out, weight_shape, stride, padding,
                           output_padding, groups, dilation, layout, algorithm):
    tspec, x, grad_out = _spec.transpose_grad_weight_spec(
        fname, nd, x, grad_out, weight_shape, stride, padding, output_padding, groups,
        dilation, layout, algorithm)
    return _grad_weight(tspec.conv, grad_out, x, algorithm)


def _transpose_backward(fname, nd, grad_out, x, weight, stride, padding, output_padding,
                        groups, dilation, layout, need):
    tspec, grad_out, x, weight, need = _spec.transpose_backward_spec(
        fname, nd, grad_out, x, weight, stride, padding, output_padding, groups, dilation,
        layout, need)
    c = tspec.conv
    gi = _conv_forward_sized(c, grad_out, weight) if "input" in need else None
    gw = _grad_weight(c, grad_out, x) if "weight" in need else None
    gb = _grad_bias(c, grad_out, c.C) if "bias" in need else None
    return gi, gw, gb


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, layout="NCL", algorithm="auto", out=None):
    """1-D transposed convolution. See :func:`conv_transpose2d`."""
    return _transpose("conv_transpose1d", 1, x, weight, bias, stride, padding,
                      output_padding, groups, dilation, layout, algorithm, out)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, layout="NCHW", algorithm="auto", out=None):
    """2-D transposed convolution ("deconvolution"), PyTorch's semantics.

    x: (N, C_in, H, W) for "NCHW", (N, H, W, C_in) for "NHWC"; unbatched accepted.
    weight: (C_in, C_out/groups, kh, kw) for "NCHW" (PyTorch), (kh, kw, C_out/groups,
    C_in) for "NHWC" (Keras/TensorFlow). bias: None or (C_out,).
    Output size per dim: (in - 1)*stride - pad_before - pad_after + (k - 1)*dilation + 1
    + output_padding. padding: int, per-dim ints, (before, after) pairs (cropping of the
    full output), "valid" (0), or "same" (TensorFlow's rule: output size in*stride).
    output_padding must be smaller than stride or dilation (as in PyTorch).
    It is the gradient of conv2d w.r.t. its input, computed by GEMM + col2im on bounded
    tiles, bitwise identical for every thread count. algorithm: "auto", "im2col" or
    "direct" (depthwise-style problems: C_out == groups), see :func:`conv2d_grad_input`.
    out: optional C-contiguous array of the output shape and compute dtype.
    """
    return _transpose("conv_transpose2d", 2, x, weight, bias, stride, padding,
                      output_padding, groups, dilation, layout, algorithm, out)


def conv_transpose3d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, layout="NCDHW", algorithm="auto", out=None):
    """3-D transposed convolution. See :func:`conv_transpose2d`."""
    return _transpose("conv_transpose3d", 3, x, weight, bias, stride, padding,
                      output_padding, groups, dilation, layout, algorithm, out)


def _make_transpose_family(nd):
    layout = _DEFAULT_LAYOUT[nd]
    name = f"conv_transpose{nd}d"

    def grad_input(grad_out, weight, input_shape, stride=1, padding=0, output_padding=0,
                   groups=1, dilation=1, *, layout=layout, algorithm="auto"):
        return _transpose_grad_input(f"{name}_grad_input", nd, grad_out, weight, input_shape,
                                     stride, padding, output_padding, groups, dilation,
                                     layout, algorithm)

    def grad_weight(x, grad_out, weight_shape, stride=1, padding=0, output_padding=0,
                    groups=1, dilation=1, *, layout=layout, algorithm="auto"):
        return _transpose_grad_weight(f"{name}_grad_weight", nd, x, grad_out, weight_shape,
                                      stride, padding, output_padding, groups, dilation,
                                      layout, algorithm)

    def backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1,
                 dilation=1, *, layout=layout, need=_ALL):
        return _transpose_backward(f"{name}_backward", nd, grad_out, x, weight, stride,
                                   padding, output_padding, groups, dilation, layout, need)

    grad_input.__name__ = grad_input.__qualname__ = f"{name}_grad_input"
    grad_input.__doc__ = (
        f"Gradient of :func:`{name}` w.r.t. its input x (of shape ``input_shape``): the "
        f"forward convolution of grad_out with the same weight, stride, padding, dilation "
        f"and groups. Arguments as in :func:`{name}`.")
    grad_weight.__name__ = grad_weight.__qualname__ = f"{name}_grad_weight"
    grad_weight.__doc__ = (
        f"Gradient of :func:`{name}` w.r.t. its weight (of shape ``weight_shape``, "
        f"(C_in, C_out/groups, *k) or (*k, C_out/groups, C_in)). Arguments as in "
        f":func:`{name}`; bitwise identical for every thread count.")
    backward.__name__ = backward.__qualname__ = f"{name}_backward"
    backward.__doc__ = (
        f"(grad_input, grad_weight, grad_bias) of :func:`{name}`; entries not named in "
        f"``need`` are None. grad_bias is grad_out summed over batch and space (C_out,).")
    return grad_input, grad_weight, backward


conv_transpose1d_grad_input, conv_transpose1d_grad_weight, conv_transpose1d_backward = \
    _make_transpose_family(1)
conv_transpose2d_grad_input, conv_transpose2d_grad_weight, conv_transpose2d_backward = \
    _make_transpose_family(2)
conv_transpose3d_grad_input, conv_transpose3d_grad_weight, conv_transpose3d_backward = \
    _make_transpose_family(3)

__all__ = [
    f"conv{nd}d_{kind}" for nd in (1, 2, 3) for kind in ("grad_input", "grad_weight",
                                                         "backward")
] + [f"conv_transpose{nd}d" for nd in (1, 2, 3)] + [
    f"conv_transpose{nd}d_{kind}" for nd in (1, 2, 3)
    for kind in ("grad_input", "grad_weight", "backward")
]

# every public function allocates its arrays from the array cache (_memory)
for _name in __all__:
    globals()[_name] = cached_arrays(globals()[_name])
del _name
