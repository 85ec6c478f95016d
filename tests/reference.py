"""Float64 NumPy reference for cconv's forward convolutions.

Written for clarity, not speed: the convolution is a sum over kernel taps of
(strided slice of the padded input) x (one weight tap), with the group structure
made explicit by reshaping the channel axis into (groups, channels per group).

Conventions follow DESIGN.md section 1:

* layouts ``NCL`` / ``NCHW`` / ``NCDHW``: x is (N, C, *spatial), weight (O, C/g, *k);
* layouts ``NLC`` / ``NHWC`` / ``NDHWC``: x is (N, *spatial, C), weight (*k, C/g, O);
* an unbatched x (one fewer dimension) gives an unbatched result;
* padding is given to the reference as explicit ``(before, after)`` pairs, one per
  spatial dim (use :func:`resolve_padding` to turn the public forms into pairs);
* padding modes have PyTorch's meaning: zeros / reflect / replicate / circular are
  ``np.pad``'s constant / reflect / edge / wrap.
"""
import itertools

import numpy as np

CHANNELS_FIRST = {"NCL": 1, "NCHW": 2, "NCDHW": 3}
CHANNELS_LAST = {"NLC": 1, "NHWC": 2, "NDHWC": 3}
LAYOUTS = {**CHANNELS_FIRST, **CHANNELS_LAST}
DEFAULT_LAYOUT = {1: "NCL", 2: "NCHW", 3: "NCDHW"}
LAST_LAYOUT = {1: "NLC", 2: "NHWC", 3: "NDHWC"}

_NP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _tuple(v, nd, name):
    if isinstance(v, (int, np.integer)):
        return (int(v),) * nd
    v = tuple(int(a) for a in v)
    if len(v) != nd:
        raise ValueError(f"{name} needs {nd} values, got {v}")
    return v


def output_size(in_size, k, stride, pad_before, pad_after, dilation):
    """Output length of one spatial dim (may be < 1 for an impossible problem)."""
    return (in_size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def resolve_padding(padding, in_sizes, k, stride=1, dilation=1):
    """Turn any public padding form into a tuple of (before, after) pairs.

    padding: int; tuple of ints (symmetric per dim); tuple of (before, after) pairs;
    "valid"; "same" (TensorFlow's rule for any stride: out = ceil(in/stride), the odd
    pixel goes after); "causal" (1-D only: ((k-1)*dilation, 0)).
    in_sizes, k: spatial input sizes and kernel sizes (sequences of length nd).
    """
    in_sizes = tuple(int(s) for s in in_sizes)
    nd = len(in_sizes)
    k = _tuple(k, nd, "kernel_size")
    stride = _tuple(stride, nd, "stride")
    dilation = _tuple(dilation, nd, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            pairs = []
            for n, kk, s, d in zip(in_sizes, k, stride, dilation):
                out = -(-n // s)  # ceil(n / s)
                total = max((out - 1) * s + (kk - 1) * d + 1 - n, 0)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        if padding == "causal":
            if nd != 1:
                raise ValueError("'causal' padding is 1-D only")
            return (((k[0] - 1) * dilation[0], 0),)
        raise ValueError(f"unknown padding {padding!r}")
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * nd
    padding = tuple(padding)
    if len(padding) != nd:
        raise ValueError(f"padding needs {nd} entries, got {padding}")
    pairs = []
    for p in padding:
        if isinstance(p, (int, np.integer)):
            pairs.append((int(p), int(p)))
        else:
            b, a = p
            pairs.append((int(b), int(a)))
    return tuple(pairs)


def conv_nd_reference(x, w, bias=None, stride=1, padding_pairs=None, dilation=1, groups=1,
                      padding_mode="zeros", layout="NCHW"):
    """Float64 convolution (cross-correlation, as in PyTorch) for 1-D/2-D/3-D.

    Returns a float64 array in ``layout`` (unbatched if x is unbatched).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    nd = LAYOUTS[layout]
    last = layout in CHANNELS_LAST
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x[None]
    assert x.ndim == nd + 2 and w.ndim == nd + 2, (x.shape, w.shape)

    # Work internally in channels-first: x (N, C, *sp), w (O, C/g, *k).
    if last:
        x = np.moveaxis(x, -1, 1)
        w = np.transpose(w, (nd + 1, nd) + tuple(range(nd)))
    N, C = x.shape[:2]
    O, Cg = w.shape[:2]
    ksize = w.shape[2:]
    assert Cg * groups == C, (C, Cg, groups)
    assert O % groups == 0, (O, groups)
    Og = O // groups

    stride = _tuple(stride, nd, "stride")
    dilation = _tuple(dilation, nd, "dilation")
    if padding_pairs is None:
        padding_pairs = ((0, 0),) * nd
    padding_pairs = tuple((int(b), int(a)) for b, a in padding_pairs)
    assert len(padding_pairs) == nd

    pad_width = ((0, 0), (0, 0)) + padding_pairs
    if padding_mode not in _NP_PAD_MODE:
        raise ValueError(f"unknown padding_mode {padding_mode!r}")
    if padding_mode == "zeros" or N * C == 0:
        xp = np.pad(x, pad_width, mode="constant")
    else:
        xp = np.pad(x, pad_width, mode=_NP_PAD_MODE[padding_mode])

    out_sp = tuple(
        output_size(n, kk, s, b, a, d)
        for n, kk, s, (b, a), d in zip(x.shape[2:], ksize, stride, padding_pairs, dilation)
    )
    assert all(o >= 1 for o in out_sp), out_sp

    y = np.zeros((N, groups, Og) + out_sp, dtype=np.float64)
    xg = xp.reshape((N, groups, Cg) + xp.shape[2:])
    wg = w.reshape((groups, Og, Cg) + tuple(ksize))
    for tap in itertools.product(*(range(kk) for kk in ksize)):
        sl = tuple(
            slice(t * d, t * d + s * (o - 1) + 1, s)
            for t, d, s, o in zip(tap, dilation, stride, out_sp)
        )
        patch = xg[(slice(None), slice(None), slice(None)) + sl]  # (N, g, Cg, *out)
        wt = wg[(slice(None), slice(None), slice(None)) + tap]  # (g, Og, Cg)
        y += np.einsum("ngc...,goc->ngo...", patch, wt)
    y = y.reshape((N, O) + out_sp)
    if bias is not None:
        b = np.asarray(bias, dtype=np.float64).reshape((1, O) + (1,) * nd)
        y = y + b
    if last:
        y = np.moveaxis(y, 1, -1)
    if unbatched:
        y = y[0]
    return np.ascontiguousarray(y)


def aligned_full(shape, dtype, value, offset=0):
    """An array filled with value whose data starts offset elements past a 64-byte
    boundary (NumPy itself aligns only to 16 bytes)."""
    size = np.dtype(dtype).itemsize
    n = int(np.prod(shape))
    buf = np.empty(n * size + 64 + offset * size, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset * size
    a = buf[start:start + n * size].view(dtype).reshape(shape)
    a[...] = value
    return a


def rel_error(a, ref):
    """||a - ref||_F / max(||ref||_F, tiny), computed in float64."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert a.shape == ref.shape, (a.shape, ref.shape)
    num = np.linalg.norm((a - ref).ravel())
    den = max(np.linalg.norm(ref.ravel()), np.finfo(np.float64).tiny)
    return float(num / den)


def to_torch_weight(w, layout):
    """Weight in ``layout``'s convention -> PyTorch's (O, C/g, *k) as a NumPy array."""
    nd = LAYOUTS[layout]
    if layout in CHANNELS_LAST:
        return np.ascontiguousarray(np.transpose(w, (nd + 1, nd) + tuple(range(nd))))
    return w


def weight_shape(layout, out_channels, in_per_group, ksize):
    """Weight shape for ``layout``: (O, C/g, *k) or (*k, C/g, O)."""
    ksize = tuple(ksize)
    if layout in CHANNELS_LAST:
        return ksize + (in_per_group, out_channels)
    return (out_channels, in_per_group) + ksize


def input_shape(layout, n, channels, spatial, batched=True):
    """Input shape for ``layout``: (N, C, *sp) or (N, *sp, C), without N if unbatched."""
    spatial = tuple(spatial)
    shape = (channels,) + spatial if layout in CHANNELS_FIRST else spatial + (channels,)
    return ((n,) + shape) if batched else shape


def output_spatial(in_sizes, ksize, stride, padding_pairs, dilation):
    nd = len(in_sizes)
    stride = _tuple(stride, nd, "stride")
    dilation = _tuple(dilation, nd, "dilation")
    return tuple(
        output_size(n, kk, s, b, a, d)
        for n, kk, s, (b, a), d in zip(in_sizes, ksize, stride, padding_pairs, dilation)
    )


__all__ = [
    "conv_nd_reference", "resolve_padding", "rel_error", "output_size", "output_spatial",
    "to_torch_weight", "weight_shape", "input_shape", "LAYOUTS", "CHANNELS_FIRST",
    "CHANNELS_LAST", "DEFAULT_LAYOUT", "LAST_LAYOUT",
]
