"""Public convolution entry points: spec -> plan -> run."""
import itertools

import numpy as np

from . import _depthwise, _direct, _core, _fft, _im2col, _plan, _spec, _winograd
from ._memory import cached_arrays
from ._packed import PackedWeights
from ._threads import get_num_threads

_NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _prepare_input(spec, x):
    """x as a C-contiguous, native, batched 5-D array (N, C, D, H, W) or (N, D, H, W, C),
    with non-zero padding modes already applied. Returns (x5, pads3) where pads3 is the
    zero padding still to apply."""
    x = np.ascontiguousarray(x, dtype=spec.dtype)
    if not spec.batched:
        x = x[None]
    pads = spec.pads
    if spec.padding_mode != "zeros" and any(b or a for b, a in pads):
        width = [(0, 0)] + list(pads) + [(0, 0)] if spec.channels_last else \
            [(0, 0), (0, 0)] + list(pads)
        x = np.pad(x, width, mode=_NP_PAD_MODE[spec.padding_mode])
        pads = ((0, 0),) * spec.nd
    N = x.shape[0]
    if spec.channels_last:
        sp = spec.as3d(x.shape[1:-1], 1)
        x5 = x.reshape((N,) + sp + (x.shape[-1],))
    else:
        sp = spec.as3d(x.shape[2:], 1)
        x5 = x.reshape((N, x.shape[1]) + sp)
    return x5, spec.as3d(pads, (0, 0))


def _prepare_weight(spec, w):
    w = np.ascontiguousarray(w, dtype=spec.dtype)
    if spec.channels_last:
        return w.reshape(spec.as3d(spec.kernel, 1) + (spec.Cg, spec.O))
    return w.reshape((spec.O, spec.Cg) + spec.as3d(spec.kernel, 1))


class WinogradWeights:
    """Weights kept in Winograd-transformed form for repeated calls (see
    :func:`winograd_weights`). Pass it as the `weight` of conv1d / conv2d.

    Holds a read-only copy of the original weight (`.weight`), the layout it is in and
    the Winograd algorithm to run (`.algorithm`: "winograd", "winograd_f2" or
    "winograd_f4"). The transformed, packed weights are computed on first use for each
    (variant, groups, compute dtype, ISA panel geometry) and then reused; changing the
    weights means building a new object."""

    def __init__(self, weight, layout, algorithm, copy=True):
        w = np.array(weight, copy=True) if copy else weight
        if w.dtype.kind not in "fiu":
            raise TypeError(f"winograd_weights: weight has dtype {w.dtype}, not a real array")
        w.flags.writeable = False
        self.weight = w
        self.layout = layout
        self.algorithm = algorithm
        self._packed = {}
        self._spare = {}  # buffers of a replaced object, by key (PackedWeights._recycle)

    def packed(self, spec, m, w5):
        MR, NR, _ = _winograd.tile_shape(spec.dtype)
        key = (m, spec.nd, spec.groups, spec.dtype.name, MR, NR)
        up = self._packed.get(key)
        if up is None:
            up = _winograd.transform_weights(w5, spec.groups, m, spec.nd, spec.channels_last,
                                             get_num_threads(), self._spare.pop(key, None))
            up.flags.writeable = False
            self._packed[key] = up
        return up

    def __repr__(self):
        return (f"WinogradWeights(shape={self.weight.shape}, dtype={self.weight.dtype}, "
                f"layout={self.layout!r}, algorithm={self.algorithm!r})")


def winograd_weights(weight, *, layout="NCHW", algorithm="winograd"):
    """Keep `weight` for Winograd convolution so that repeated calls (or layers) skip the
    weight transform: ``ww = cconv.winograd_weights(w); y = cconv.conv2d(x, ww, b, ...)``.

    weight: a conv1d / conv2d weight in `layout`'s convention (NCL/NLC or NCHW/NHWC).
    algorithm: "winograd" (variant chosen per call from the input size), "winograd_f2"
    or "winograd_f4". The conv call then runs this algorithm whatever its own
    `algorithm` says ("auto" or the same Winograd name; another name is an error). The
    transformed weights are made on first use and kept inside the returned object
    (T x O x C elements per variant, T = 36 for F(4x4), 16 for F(2x2)).
    """
    if algorithm not in _plan.WINOGRAD_NAMES:
        raise ValueError(f"winograd_weights: algorithm={algorithm!r} is not one of "
                         f"{_plan.WINOGRAD_NAMES}")
    if layout not in ("NCL", "NLC", "NCHW", "NHWC"):
        raise ValueError(f"winograd_weights: layout={layout!r} is not one of "
                         "('NCL', 'NLC', 'NCHW', 'NHWC')")
    return WinogradWeights(np.asarray(weight), layout, algorithm)


# Calls seen before: per (validated call key, thread count) the spec, the 5-D shapes and
# the bound kernel call, so that a repeated call only converts, reshapes and runs (the
# Python part of a ResNeXt-size call: 7 -> 3 us). Only plain-array calls that _run does
# with one kernel call on zero padding are kept.
_FAST = {}
_FAST_MAX = 256


def _run_fast(fast, x, weight, bias, out):
    spec, x5_shape, w5_shape, o5_shape, call = fast
    dt = spec.dtype
    if out is not None:
        _spec.check_out(spec, out, [("x", x), ("weight", weight), ("bias", bias)])
        result = out
    else:
        result = np.empty(spec.out_shape, dtype=dt)
    call(np.ascontiguousarray(x, dtype=dt).reshape(x5_shape),
         np.ascontiguousarray(weight, dtype=dt).reshape(w5_shape),
         None if bias is None else np.ascontiguousarray(bias, dtype=dt),
         result.reshape(o5_shape))
    return result


def _remember_fast(key, spec, algo):
    pads3 = spec.as3d(spec.pads, (0, 0))
    if spec.padding_mode != "zeros" and any(b or a for b, a in pads3):
        return
    nth = get_num_threads()
    call = _kernel_call(spec, algo, pads3, nth)
    if call is None:
        return
    if len(_FAST) >= _FAST_MAX:
        _FAST.clear()
    k3 = spec.as3d(spec.kernel, 1)
    sp3 = spec.as3d(spec.in_size, 1)
    if spec.channels_last:
        x5_shape, w5_shape = (spec.N,) + sp3 + (spec.C,), k3 + (spec.Cg, spec.O)
    else:
        x5_shape, w5_shape = (spec.N, spec.C) + sp3, (spec.O, spec.Cg) + k3
    _FAST[key, nth] = (spec, x5_shape, w5_shape, _out5_shape(spec), call)


def _forward(fname, nd, x, weight, bias, stride, padding, dilation, groups,
             padding_mode, layout, algorithm, out):
    key = _spec._forward_key(fname, nd, x, weight, bias, stride, padding, dilation, groups,
                             padding_mode, layout, algorithm)
    if key is not None:
        fast = _FAST.get((key, get_num_threads()))
        if fast is not None:
            return _run_fast(fast, x, weight, bias, out)
    cached = None
    packed = None
    if isinstance(weight, WinogradWeights):
        cached = weight
        if cached.layout != layout:
            raise ValueError(f"{fname}: the Winograd weights were made for layout="
                             f"{cached.layout!r}, but layout={layout!r}")
        if algorithm not in ("auto", cached.algorithm):
            raise ValueError(f"{fname}: algorithm={algorithm!r} with Winograd weights made "
                             f"for algorithm={cached.algorithm!r}")
        algorithm = cached.algorithm
        weight = cached.weight
    elif isinstance(weight, PackedWeights):
        packed = weight
        if packed.layout != layout:
            raise ValueError(f"{fname}: weight was packed for layout {packed.layout!r}, but the "
                             f"call uses layout={layout!r}")
        weight = packed.weight
    spec, x, weight, bias = _spec.forward_spec(
        fname, nd, x, weight, bias, stride, padding, dilation, groups, padding_mode,
        layout, algorithm, key=key)
    pspec = _plan.dilation_phase_spec(spec) if algorithm == "auto" and cached is None \
        else None
    sspec = _plan.pointwise_strided_spec(spec) if algorithm == "auto" and cached is None \
        else None
    tspec = _plan.patch_spec(spec) if algorithm == "auto" and cached is None else None
    algo = _plan.choose_forward(pspec or sspec or tspec or spec, algorithm,
                                cached=cached is not None, packed=packed is not None)
    if packed is not None and algo.winograd_m:
        # packed weights keep their Winograd transforms too (made on first use)
        cached = packed.winograd()
    if out is not None:
        _spec.check_out(spec, out, [("x", x), ("weight", weight), ("bias", bias)])
        result = out
    else:
        result = np.empty(spec.out_shape, dtype=spec.dtype)
    if result.size == 0:
        return result
    b = None if bias is None else np.ascontiguousarray(bias, dtype=spec.dtype)
    if spec.Cg == 0:  # no input channels: the sum over them is empty
        result[...] = 0 if b is None else (b if spec.channels_last else
                                           b.reshape((-1,) + (1,) * nd))
        return result
    if pspec is not None:
        _run_phases(spec, pspec, algo, x, weight, b, result, packed, cached)
    elif sspec is not None:
        _run(sspec, algo, subsampled_input(spec, sspec, x), weight, b, result, packed, cached)
    elif tspec is not None:
        # non-overlapping patches: a 1x1 convolution over their space-to-depth copy (the
        # weight's flattening is the copy's channel order; packed panels are not reused)
        _run(tspec, algo, space_to_depth(spec, tspec, x), patch_weight(spec, tspec, weight),
             b, result)
    else:
        _run(spec, algo, x, weight, b, result, packed, cached)
        if key is not None:
            _remember_fast(key, spec, algo)
    return result


def subsample_index(spec):
    """The index of a 5-D input (or input gradient) that picks the positions a strided
    convolution without padding reads with a 1x1 kernel (_plan.pointwise_strided_spec)."""
    sl = tuple(slice(0, (o - 1) * s + 1, s) for o, s in
               zip(spec.as3d(spec.out_size, 1), spec.as3d(spec.stride, 1)))
    return (slice(None),) + sl if spec.channels_last else (slice(None), slice(None)) + sl


def _five_shape(spec, C):
    """The 5-D shape of spec's batched input with C channels."""
    sp3 = spec.as3d(spec.in_size, 1)
    return (spec.N,) + sp3 + (C,) if spec.channels_last else (spec.N, C) + sp3


def subsampled_input(spec, sspec, x):
    """The positions of x that the strided 1x1 convolution spec reads, as a new batched
    array in the user layout: the input of sspec (_plan.pointwise_strided_spec), copied
    by threads."""
    x5 = _prepare_input(spec, x)[0]
    xs = np.empty(_five_shape(sspec, spec.C), spec.dtype)
    _core.copy_into(x5[subsample_index(spec)], xs, get_num_threads())
    sp = tuple(sspec.in_size)
    return xs.reshape((spec.N,) + sp + (spec.C,) if spec.channels_last
                      else (spec.N, spec.C) + sp)


def _patch_views(spec, a5):
    """For a patch problem (_plan.patch_spec): a 5-D-or-more view of a5 (the batched 5-D
    input, or input gradient) cropped to the whole patches, and the shape of its
    space-to-depth copy, such that copy[...] = view.transpose(order) (channel order
    (C, kd, kh, kw) channels-first, (kd, kh, kw, C) channels-last, matching the
    weight's flattening)."""
    N = spec.N
    k = spec.as3d(spec.kernel, 1)
    o = spec.as3d(spec.out_size, 1)
    crop = tuple(slice(0, oi * ki) for oi, ki in zip(o, k))
    if spec.channels_last:
        C = a5.shape[4]
        v = a5[(slice(None),) + crop].reshape(N, o[0], k[0], o[1], k[1], o[2], k[2] * C)
        return v, (0, 1, 3, 5, 2, 4, 6), (N,) + o + (k[0], k[1], k[2] * C)
    C = a5.shape[1]
    v = a5[(slice(None), slice(None)) + crop].reshape(N * C, o[0], k[0], o[1], k[1], o[2],
                                                       k[2])
    return v, (0, 2, 4, 6, 1, 3, 5), (N * C,) + k + o


def _copy_view(src, dst):
    """dst[...] = src for two arrays of one shape, any strides: on threads
    (_core.copy_into) when at most five axes are longer than 1, else NumPy's copy."""
    keep = tuple(n for n in dst.shape if n != 1)
    if len(keep) > 5:
        np.copyto(dst, src)
        return
    sh = (1,) * (5 - len(keep)) + keep
    d = dst.reshape(sh)  # unit axes dropped and added only: still a view of dst
    if d.size and not np.may_share_memory(d, dst):
        raise AssertionError("cconv: _copy_view lost its destination view")
    _core.copy_into(src.reshape(sh), d, get_num_threads())


def space_to_depth(spec, pspec, x):
    """The input of the 1x1 problem pspec (_plan.patch_spec) of a patch problem spec: a
    new batched array in the user layout."""
    x5 = _prepare_input(spec, x)[0]
    v, order, shape = _patch_views(spec, x5)
    xs = np.empty(shape, spec.dtype)
    _copy_view(v.transpose(order), xs)
    sp = tuple(pspec.in_size)
    return xs.reshape((spec.N,) + sp + (pspec.C,) if spec.channels_last
                      else (spec.N, pspec.C) + sp)


def patch_weight(spec, tspec, weight):
    """The weight of the 1x1 problem tspec of a patch problem spec (a reshape)."""
    w = np.ascontiguousarray(weight, dtype=spec.dtype)
    ones = (1,) * spec.nd
    return w.reshape(ones + (tspec.C, spec.O) if spec.channels_last
                     else (spec.O, tspec.C) + ones)


def depth_to_space_into(spec, g, dx5):
    """The inverse: the batched input gradient g of the 1x1 problem copied into dx5 (the
    batched 5-D input gradient of spec) at its patches; the positions past the last whole
    patch are left alone."""
    v, order, shape = _patch_views(spec, dx5)
    if v.size and not np.may_share_memory(v, dx5):
        raise AssertionError("cconv: depth_to_space_into needs a view of dx5")
    _copy_view(g.reshape(shape).transpose(tuple(np.argsort(order))), v)


def _phase_slices(n, before, d, m):
    """Per stride phase r of a dimension of length n zero-padded by `before` in front:
    (r, dst slice in the phase image of length m, src slice of the input)."""
    for r in range(d):
        m0 = max(0, -(-(before - r) // d))
        i0 = r + m0 * d - before
        cnt = max(0, min(m - m0, -(-(n - i0) // d)))
        yield r, slice(m0, m0 + cnt), slice(i0, i0 + cnt * d, d)


def _run_phases(spec, pspec, algo, x, weight, b, result, packed=None, cached=None):
    """Dilated stride-1 forward as one undilated convolution over the batch of the
    padded input's stride phases (_plan.dilation_phase_spec): gather the phases (the zero
    padding is done here), run pspec with `algo`, scatter each phase's output back."""
    x5, pads3 = _prepare_input(spec, x)
    cl = spec.channels_last
    d3 = spec.as3d(spec.dilation, 1)
    m3 = pspec.as3d(pspec.in_size, 1)
    N, C, O = spec.N, spec.C, spec.O
    sp = 1 if cl else 2  # first spatial axis of x5
    in3 = x5.shape[sp:sp + 3]
    nph = d3[0] * d3[1] * d3[2]
    nth = get_num_threads()
    xs = np.zeros((nph, N) + ((*m3, C) if cl else (C, *m3)), spec.dtype)
    per_dim = [list(_phase_slices(n, p[0], d, m)) for n, p, d, m in zip(in3, pads3, d3, m3)]
    for i, ph in enumerate(itertools.product(*per_dim)):
        dst = (i, slice(None)) + (() if cl else (slice(None),)) + tuple(t[1] for t in ph)
        src = (slice(None),) + (() if cl else (slice(None),)) + tuple(t[2] for t in ph)
        _core.copy_into(x5[src], xs[dst], nth)
    o3 = pspec.as3d(pspec.out_size, 1)
    ys = np.empty((nph * N,) + ((*o3, O) if cl else (O, *o3)), spec.dtype)
    lead = (nph * N,) + ((C,) if not cl else ())
    xin = xs.reshape(lead + pspec.in_size + ((C,) if cl else ()))
    _run(pspec, algo, xin, weight, b, ys.reshape(pspec.out_shape), packed, cached)
    ys = ys.reshape((nph, N) + ys.shape[1:])
    out5 = result.reshape((N,) + spec.as3d(spec.out_size, 1) + (O,) if cl else
                          (N, O) + spec.as3d(spec.out_size, 1))
    for i, rs in enumerate(itertools.product(*[range(d) for d in d3])):
        dst = [slice(None)] + ([] if cl else [slice(None)])
        src = [i, slice(None)] + ([] if cl else [slice(None)])
        for r, d, n in zip(rs, d3, out5.shape[sp:sp + 3]):
            cnt = -(-(n - r) // d)
            dst.append(slice(r, n, d))
            src.append(slice(0, cnt))
        _core.copy_into(ys[tuple(src)], out5[tuple(dst)], nth)


def _out5_shape(spec):
    if spec.channels_last:
        return (spec.N,) + spec.as3d(spec.out_size, 1) + (spec.O,)
    return (spec.N, spec.O) + spec.as3d(spec.out_size, 1)


def _geometry(spec, pads3):
    """(stride, leading zero padding, dilation) as the kernels take them, 3-D."""
    return spec.as3d(spec.stride, 1), tuple(p[0] for p in pads3), spec.as3d(spec.dilation, 1)


def _kernel_call(spec, algo, pads3, nth, packed=None, pixrow_packed=None):
    """The run of Algorithm ``algo`` on ``spec`` as one kernel call fn(x5, w5, b, out5)
    with every other argument bound (pads3: the zero padding of x5; nth threads;
    packed: im2col's weight panels or Winograd's transformed weights, or None;
    pixrow_packed: the weight panels of im2col's channels-first pixel rows), or None
    where _run has more to do than one plain call (the routes through the other
    layout)."""
    geo = _geometry(spec, pads3)
    G, cl = spec.groups, spec.channels_last
    A = _plan.Algorithm
    if algo is A.IM2COL and (_plan.nchw_forward_via_nhwc(spec) or
                             (cl and _plan.nhwc_via_nchw(spec))):
        return None
    if algo is A.DEPTHWISE and _plan.nchw_depthwise_via_nhwc(spec):
        return None
    if algo is A.DIRECT and _plan.nhwc_grouped_via_nchw(spec):
        return None
    if algo is A.DIRECT and _plan.grouped_direct(spec):
        if _plan.grouped_width_lanes(spec):
            f = _depthwise.forward_grouped_nchw
            return lambda x5, w5, b, o5: f(x5, w5, o5, b, *geo, G, nth)
        f = _depthwise.forward_grouped
        return lambda x5, w5, b, o5: f(x5, w5, o5, b, *geo, G, cl, nth)
    if algo is A.FFT:
        f, s3, d3, nd = _fft.conv_forward, geo[0], geo[2], spec.nd
        return lambda x5, w5, b, o5: f(x5, w5, b, o5, s3, pads3, d3, G, cl, nth, nd)
    if algo.winograd_m:
        f, m, nd = _winograd.conv_forward, algo.winograd_m, spec.nd
        return lambda x5, w5, b, o5: f(x5, w5, b, o5, *geo, G, cl, nth, m=m, nd=nd,
                                       packed=packed)
    if algo is A.IM2COL:
        f = _im2col.conv_forward
        return lambda x5, w5, b, o5: f(x5, w5, b, o5, *geo, G, cl, nth, packed=packed,
                                       pixrow_packed=pixrow_packed)
    f = _depthwise.conv_forward if algo is A.DEPTHWISE else _direct.conv_forward
    return lambda x5, w5, b, o5: f(x5, w5, b, o5, *geo, G, cl, nth)


def _run(spec, algo, x, weight, b, result, packed=None, cached=None):
    """Run the forward convolution ``spec`` with Algorithm ``algo`` into ``result`` (of
    spec.out_size, C-contiguous, non-empty; spec.Cg > 0). x, weight: arrays in the
    spec's layout and dtype; b: None or a contiguous (O,) array."""
    x5, pads3 = _prepare_input(spec, x)
    w5 = _prepare_weight(spec, weight)
    out5 = result.reshape(_out5_shape(spec))
    nth = get_num_threads()
    pw = ppw = None
    if algo is _plan.Algorithm.IM2COL and packed is not None and \
            packed.groups == spec.groups and packed.usable(spec.dtype):
        if _plan.nchw_pixrow(spec):
            ppw = packed.pixrow_panels()
        else:
            pw = packed.panels
    elif algo.winograd_m and cached is not None:
        pw = cached.packed(spec, algo.winograd_m, w5)
    call = _kernel_call(spec, algo, pads3, nth, pw, ppw)
    if call is not None:
        call(x5, w5, b, out5)
    else:
        _run_other_layout(spec, algo, x5, w5, b, out5, pads3, nth)


def _run_other_layout(spec, algo, x5, w5, b, out5, pads3, nth):
    """im2col through the other layout (_plan.nchw_via_nhwc / nhwc_via_nchw), the
    depthwise kernels (_plan.nchw_depthwise_via_nhwc), or the channels-first grouped
    kernel (_plan.nhwc_grouped_via_nchw)."""
    geo = _geometry(spec, pads3)
    N, O, G = spec.N, spec.O, spec.groups
    if spec.channels_last:
        # the channels-first kernel between two transposes: grouped im2col (it packs
        # few-channel groups far better than channels-last row blocks; ResNeXt g32, 8
        # per group: 0.27 -> 0.12 ms), or the grouped direct kernel with output columns
        # as lanes
        xc = np.empty((N, spec.C) + x5.shape[1:4], spec.dtype)
        _core.to_channels_first_into(x5, xc, nth)
        wc = _core.weight_to_channels_first(w5, nth)
        oc = np.empty((N, O) + out5.shape[1:4], spec.dtype)
        if algo is _plan.Algorithm.DIRECT:
            _depthwise.forward_grouped_nchw(xc, wc, oc, b, *geo, G, nth)
        else:
            _im2col.conv_forward(xc, wc, b, oc, *geo, G, False, nth)
        _core.transpose_last2(oc.reshape(N, O, -1), out5.reshape(N, -1, O), nth)
    else:
        # the channels-last kernel between two transposes: depthwise with short rows, or
        # im2col on small images (it blocks pixels over the whole batch; transposing in
        # and out costs less than half-empty tiles)
        xh = _core.to_channels_last(x5, nth)
        wh = _core.weight_to_channels_last(w5, nth)
        oh = np.empty((N,) + spec.as3d(spec.out_size, 1) + (O,), spec.dtype)
        f = (_depthwise.conv_forward if algo is _plan.Algorithm.DEPTHWISE
             else _im2col.conv_forward)
        f(xh, wh, b, oh, *geo, G, True, nth)
        _core.to_channels_first_into(oh, out5, nth)


@cached_arrays
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", layout="NCL", algorithm="auto", out=None):
    """1-D convolution (cross-correlation, as in PyTorch) of x with weight.

    x: (N, C, L) for layout "NCL" or (N, L, C) for "NLC"; (C, L) / (L, C) unbatched.
    weight: (O, C/groups, k) for "NCL", (k, C/groups, O) for "NLC".
    padding: int, (p,), ((before, after),), "valid", "same" (TensorFlow's rule, any
    stride) or "causal" ((k-1)*dilation before, 0 after).
    algorithm: as for conv2d; "winograd" / "winograd_f2" / "winograd_f4" run the 1-D
    F(4,3) / F(2,3) on 3-tap kernels (stride 1, dilation 1).
    See :func:`conv2d` for the other arguments.
    """
    return _forward("conv1d", 1, x, weight, bias, stride, padding, dilation, groups,
                    padding_mode, layout, algorithm, out)


@cached_arrays
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", layout="NCHW", algorithm="auto", out=None):
    """2-D convolution (cross-correlation, as in PyTorch) of x with weight.

    x: (N, C, H, W) for layout "NCHW" or (N, H, W, C) for "NHWC"; one fewer dim for an
    unbatched input, which gives an unbatched output.
    weight: (O, C/groups, kh, kw) for "NCHW" (PyTorch), (kh, kw, C/groups, O) for "NHWC"
    (Keras/TensorFlow).
    bias: None or (O,).
    stride, dilation: int or (sh, sw), all >= 1.
    padding: int; (ph, pw); ((top, bottom), (left, right)); "valid"; "same" (output
    size ceil(in/stride), TensorFlow's rule: the odd pixel of padding goes after).
    padding_mode: "zeros", "reflect", "replicate" or "circular" (as in PyTorch).
    algorithm: "auto", "direct" (grouped problems: a direct grouped kernel, which "auto"
    picks for <= 16 channels per group, channels-last <= 32), "im2col" (implicit GEMM over the unfolded input),
    "depthwise" (dedicated direct kernels for groups == C, any channel multiplier;
    "auto" picks it for depthwise problems and "direct" runs it on them), or
    "winograd" (3x3 kernels, stride 1, dilation 1, any padding, groups, both layouts):
    Winograd F(4x4,3x3), or F(2x2,3x3) where that is cheaper (tiny images, many channels
    on small images); "winograd_f4" / "winograd_f2" force a variant. "auto" picks
    Winograd only where a cost model predicts it beats im2col (_plan.winograd_cost).
    A dilated stride-1 channels-first problem under "auto" runs as one undilated
    convolution over the batch of the zero-padded input's stride phases (so a 3x3 layer
    may take Winograd, whose tiles are then outputs spaced `dilation` apart).
    Winograd float32 error is <= 1e-4 (F(4x4)) / 2e-5 (F(2x2)) relative to the exact
    result on typical data (about 1e-6 / 2e-7 measured); float64 <= 1e-11. A non-finite
    input value spreads to every output of each tile whose (m+2) x (m+2) input patch
    holds it (Inf may become NaN there: the transforms subtract), i.e. up to m+1 rows /
    columns beyond its direct readers; a non-finite weight spreads to its whole output
    channel. `weight` may also be a :func:`winograd_weights` object (transformed once,
    reused across calls).
    "fft" (any problem): products of NumPy FFT spectra, the channel sum on cconv's
    threads; strided problems compute every stride-1 position first. "auto" never picks
    it (it wins only on very large kernels with few channels: README, Algorithms).
    Float32 error about 1e-7 relative; a non-finite input value spreads to every output
    of its image in its group, a non-finite weight to its whole output channel.
    out: optional C-contiguous array of the output shape and compute dtype.

    dtypes: float32 and float64 compute natively; mixed inputs follow np.result_type;
    float16 computes in float32 and integers in float64. Returns a new C-contiguous
    array (or `out`).

    NaN / Inf: each output is summed term by term in IEEE arithmetic, so a non-finite
    input reaches every output that reads it, and a zero weight times Inf gives NaN. At
    the zero padding, "im2col", "depthwise" and Winograd multiply the zeros (a NaN/Inf
    weight tap that lands in the padding makes that output NaN, as if the input were
    zero-padded) while "direct" on a dense problem (the loop nest) skips those taps;
    "direct" on grouped, depthwise or channels-last few-channel problems runs dedicated
    kernels that multiply the zeros too. Winograd also spreads within tiles (above).
    See the README, "NaN and Inf".

    Ctrl-C: the kernels run without the GIL and do not poll for signals. A SIGINT during
    the call is raised as KeyboardInterrupt when the kernel has finished and control is
    back in Python, so the call raises instead of returning (`out`, if given, then holds
    the finished result); nothing is corrupted and the next call is correct.
    """
    return _forward("conv2d", 2, x, weight, bias, stride, padding, dilation, groups,
                    padding_mode, layout, algorithm, out)


@cached_arrays
def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", layout="NCDHW", algorithm="auto", out=None):
    """3-D convolution of x (N, C, D, H, W) or (N, D, H, W, C) with weight
    (O, C/groups, kd, kh, kw) or (kd, kh, kw, C/groups, O). See :func:`conv2d`."""
    return _forward("conv3d", 3, x, weight, bias, stride, padding, dilation, groups,
                    padding_mode, layout, algorithm, out)


# Backward passes and transposed convolutions live in backward.py (imported last: it
# builds on the helpers above); they are part of this module's public surface too.
from .backward import *  # noqa: E402,F401,F403
from .backward import __all__ as _backward_all  # noqa: E402
