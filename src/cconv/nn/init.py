"""Weight initialisers, PyTorch's formulas (``torch.nn.init``), filling arrays in place.

Fans are computed from the array's shape in PyTorch's layout: ``shape[1] * prod(shape[2:])``
in, ``shape[0] * prod(shape[2:])`` out ((O, C/groups, *k) for a convolution, (out, in) for
a Linear). For a channels-last convolution weight ((*k, C/groups, O), cconv's NHWC
layout) pass ``layout="NHWC"`` (or any channels-last name): fans are then
``shape[-2] * prod(shape[:-2])`` in and ``shape[-1] * prod(shape[:-2])`` out.
Every function takes ``rng`` (a ``np.random.Generator``; default: a fresh one) and
returns the array.
"""
import math

import numpy as np

__all__ = ["calculate_gain", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
           "xavier_normal_", "orthogonal_", "zeros_", "ones_", "uniform_", "normal_",
           "constant_"]

_CHANNELS_LAST = ("NLC", "NHWC", "NDHWC", "channels_last")


def _rng(rng):
    return rng if rng is not None else np.random.default_rng()


def _channels_last(layout):
    return layout is not None and layout in _CHANNELS_LAST


def _fans(shape, layout=None):
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"fan in / fan out need at least 2 dims, got shape {shape}")
    if _channels_last(layout) and len(shape) > 2:
        rf = math.prod(shape[:-2])
        return shape[-2] * rf, shape[-1] * rf
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


def calculate_gain(nonlinearity, param=None):
    """PyTorch's ``calculate_gain``."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fill(a, values):
    a[...] = values.astype(a.dtype, copy=False)
    return a


def uniform_(a, low=0.0, high=1.0, *, rng=None):
    return _fill(a, _rng(rng).uniform(low, high, size=a.shape))


def normal_(a, mean=0.0, std=1.0, *, rng=None):
    return _fill(a, _rng(rng).normal(mean, std, size=a.shape))


def constant_(a, value):
    a[...] = value
    return a


def zeros_(a):
    a[...] = 0
    return a


def ones_(a):
    a[...] = 1
    return a


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", *, rng=None,
                     layout=None):
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al.); ``a`` is the leaky-ReLU slope.
    PyTorch's layers use a=sqrt(5), i.e. b = 1/sqrt(fan_in)."""
    fan_in, fan_out = _fans(tensor.shape, layout)
    fan = fan_in if mode == "fan_in" else fan_out
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan) if fan else 0.0
    return uniform_(tensor, -bound, bound, rng=rng)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", *, rng=None,
                    layout=None):
    """N(0, std^2) with std = gain / sqrt(fan)."""
    fan_in, fan_out = _fans(tensor.shape, layout)
    fan = fan_in if mode == "fan_in" else fan_out
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
    return normal_(tensor, 0.0, std, rng=rng)


def xavier_uniform_(a, gain=1.0, *, rng=None, layout=None):
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio)."""
    fan_in, fan_out = _fans(a.shape, layout)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(a, -bound, bound, rng=rng)


def xavier_normal_(a, gain=1.0, *, rng=None, layout=None):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(a.shape, layout)
    return normal_(a, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng=rng)


def orthogonal_(a, gain=1.0, *, rng=None, layout=None):
    """(Semi-)orthogonal matrix (Saxe et al.), PyTorch's construction: the array viewed as
    (shape[0], rest) in PyTorch's layout (for a channels-last conv weight: (O, rest))
    gets orthonormal rows or columns, times ``gain``."""
    if a.ndim < 2:
        raise ValueError(f"orthogonal_: needs at least 2 dims, got shape {a.shape}")
    if _channels_last(layout) and a.ndim > 2:
        # view as PyTorch's layout: (*k, Cg, O) -> (O, Cg, *k)
        perm = (a.ndim - 1, a.ndim - 2) + tuple(range(a.ndim - 2))
        tmp = np.empty(tuple(a.shape[p] for p in perm), a.dtype)
        orthogonal_(tmp, gain, rng=rng)
        a[...] = tmp.transpose(np.argsort(perm))
        return a
    rows = a.shape[0]
    cols = a.size // rows
    flat = _rng(rng).normal(0.0, 1.0, size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(a, (gain * q).reshape(a.shape))
