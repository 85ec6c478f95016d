"""2-D pooling, vectorised NumPy: a Python loop over the kernel TAPS (kh * kw strided
views of the whole batch), never over pixels.

Output size (PyTorch's rule): ``floor((H + 2p - d(k - 1) - 1) / s) + 1`` (``ceil`` with
``ceil_mode``, where a window starting in the right padding is dropped).
MaxPool2d keeps the winning tap per output (argmax, first maximum wins, NaN wins as in
PyTorch) and its backward routes each gradient to that input.
"""
import numpy as np

from .conv import _CHANNELS_LAST, _CHANNELS_FIRST
from .. import _layers
from .._threads import get_num_threads
from .module import Module


def _pair(v):
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _out_size(n, k, s, p, d, ceil_mode):
    num = n + 2 * p - d * (k - 1) - 1
    if num < 0:
        raise ValueError(f"pooling: window (kernel {k}, dilation {d}) is larger than the "
                         f"padded input {n} + 2*{p}")
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


class _Pool2d(Module):
    def _setup(self, kernel_size, stride, padding, dilation, ceil_mode, layout):
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.ceil_mode = bool(ceil_mode)
        if layout is not None and layout not in _CHANNELS_LAST + _CHANNELS_FIRST:
            raise ValueError(f"{type(self).__name__}: unknown layout {layout!r}")
        self.channels_last = layout in _CHANNELS_LAST
        for k, p in zip(self.kernel_size, self.padding):
            if p > k // 2:
                raise ValueError(f"{type(self).__name__}: padding {p} must be at most half "
                                 f"the kernel size {k}")

    def _axes(self, x):
        if x.ndim not in (3, 4):
            raise ValueError(f"{type(self).__name__}: expected a 3-D or 4-D input, got "
                             f"shape {x.shape}")
        return (x.ndim - 3, x.ndim - 2) if self.channels_last else (x.ndim - 2, x.ndim - 1)

    def _geometry(self, x):
        ah, aw = self._axes(x)
        outs, padded = [], []
        for ax, k, s, p, d in zip((ah, aw), self.kernel_size, self.stride, self.padding,
                                  self.dilation):
            n = x.shape[ax]
            o = _out_size(n, k, s, p, d, self.ceil_mode)
            L = (o - 1) * s + d * (k - 1) + 1  # padded extent the windows read
            outs.append(o)
            padded.append((p, max(0, L - n - p)))
        return (ah, aw), outs, padded

    def _pad(self, x, axes, padded, value):
        if not any(b or a for b, a in padded):
            return x
        width = [(0, 0)] * x.ndim
        for ax, pa in zip(axes, padded):
            width[ax] = pa
        return np.pad(x, width, constant_values=value)

    def _tap(self, ndim, axes, outs, i, j):
        idx = [slice(None)] * ndim
        for ax, o, s, d, t in zip(axes, outs, self.stride, self.dilation, (i, j)):
            idx[ax] = slice(t * d, t * d + (o - 1) * s + 1, s)
        return tuple(idx)

    def _crop(self, dxp, axes, padded, shape):
        idx = [slice(None)] * dxp.ndim
        for ax, (b, _), n in zip(axes, padded, (shape[axes[0]], shape[axes[1]])):
            idx[ax] = slice(b, b + n)
        return dxp[tuple(idx)]

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """PyTorch's ``nn.MaxPool2d`` (kernel_size, stride=kernel_size, padding, dilation,
    ceil_mode) on (N, C, H, W) (or (N, H, W, C) with ``layout="NHWC"``; unbatched too)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                 layout=None):
        super().__init__()
        self._setup(kernel_size, stride, padding, dilation, ceil_mode, layout)

    def forward(self, x):
        x = np.asarray(x)
        axes, outs, padded = self._geometry(x)
        if x.ndim == 4 and x.dtype in (np.float32, np.float64) and x.size:
            # one threaded pass (cconv._layers) that records the winning input position
            xc = np.ascontiguousarray(x)
            shape = ((x.shape[0],) + tuple(outs) + (x.shape[3],) if self.channels_last
                     else x.shape[:2] + tuple(outs))
            y = np.empty(shape, x.dtype)
            arg = np.empty(shape, np.int32)
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (self.kernel_size, self.stride,
                                                      self.padding, self.dilation)
            _layers.maxpool2d_forward(xc, y, arg, kh, kw, sh, sw, ph, pw, dh, dw,
                                      self.channels_last, get_num_threads())
            self._cache = None
            self._fast = (x.shape, arg)
            return y
        self._fast = None
        xp = self._pad(x, axes, padded, -np.inf)
        kh, kw = self.kernel_size
        best = arg = None
        t = 0
        for i in range(kh):
            for j in range(kw):
                v = xp[self._tap(x.ndim, axes, outs, i, j)]
                if best is None:
                    best = v.copy()
                    arg = np.zeros(v.shape, np.uint8 if kh * kw < 256 else np.int32)
                else:
                    m = v > best
                    m |= np.isnan(v)
                    np.copyto(best, v, where=m)
                    np.copyto(arg, t, where=m)
                t += 1
        self._cache = (x.shape, xp.shape, axes, outs, padded, arg)
        return best

    def backward(self, grad_out):
        if getattr(self, "_fast", None) is not None:
            shape, arg = self._fast
            g = np.ascontiguousarray(grad_out)
            if g.dtype not in (np.float32, np.float64):
                g = g.astype(np.float64)
            dx = np.empty(shape, g.dtype)
            _layers.maxpool2d_backward(g, arg, dx, self.channels_last, get_num_threads())
            return dx
        shape, pshape, axes, outs, padded, arg = self._cache
        g = np.asarray(grad_out)
        dxp = np.zeros(pshape, g.dtype)
        kh, kw = self.kernel_size
        zero = g.dtype.type(0)
        t = 0
        for i in range(kh):
            for j in range(kw):
                dxp[self._tap(len(shape), axes, outs, i, j)] += np.where(arg == t, g, zero)
                t += 1
        return np.ascontiguousarray(self._crop(dxp, axes, padded, shape))


class AvgPool2d(_Pool2d):
    """PyTorch's ``nn.AvgPool2d`` (kernel_size, stride, padding, ceil_mode,
    count_include_pad, divisor_override)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, *, layout=None):
        super().__init__()
        self._setup(kernel_size, stride, padding, 1, ceil_mode, layout)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def _divisor(self, x, axes, outs, dtype):
        if self.divisor_override:
            return dtype.type(self.divisor_override)
        counts = []
        for ax, o, k, s, p in zip(axes, outs, self.kernel_size, self.stride, self.padding):
            n = x.shape[ax]
            start = np.arange(o) * s - p
            lo, hi = (-p, n + p) if self.count_include_pad else (0, n)
            counts.append(np.minimum(start + k, hi) - np.maximum(start, lo))
        div = np.outer(counts[0], counts[1]).astype(dtype)
        if self.channels_last:
            div = div[:, :, None]
        return div

    def forward(self, x):
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        axes, outs, padded = self._geometry(x)
        xp = self._pad(x, axes, padded, 0)
        kh, kw = self.kernel_size
        acc = None
        for i in range(kh):
            for j in range(kw):
                v = xp[self._tap(x.ndim, axes, outs, i, j)]
                acc = v.copy() if acc is None else np.add(acc, v, out=acc)
        div = self._divisor(x, axes, outs, x.dtype)
        acc /= div
        self._cache = (x.shape, xp.shape, axes, outs, padded, div)
        return acc

    def backward(self, grad_out):
        shape, pshape, axes, outs, padded, div = self._cache
        g = np.asarray(grad_out) / div
        dxp = np.zeros(pshape, g.dtype)
        kh, kw = self.kernel_size
        for i in range(kh):
            for j in range(kw):
                dxp[self._tap(len(shape), axes, outs, i, j)] += g
        return np.ascontiguousarray(self._crop(dxp, axes, padded, shape))


def _adaptive_matrix(n, o, dtype):
    """(o, n) averaging matrix with PyTorch's adaptive windows
    [floor(i n / o), ceil((i + 1) n / o))."""
    i = np.arange(o)
    start = (i * n) // o
    end = -((-(i + 1) * n) // o)
    cols = np.arange(n)
    m = (cols >= start[:, None]) & (cols < end[:, None])
    return (m / (end - start)[:, None]).astype(dtype)


class AdaptiveAvgPool2d(Module):
    """PyTorch's ``nn.AdaptiveAvgPool2d(output_size)`` (int, pair, None entries keep the
    input size). (1, 1) is a global average pool. General sizes are two small averaging
    matrices applied with matmul (no loop over output cells)."""

    def __init__(self, output_size, *, layout=None):
        super().__init__()
        self.output_size = output_size if isinstance(output_size, (tuple, list)) else \
            (output_size, output_size)
        self.channels_last = layout in _CHANNELS_LAST
        self.kernel_size = None  # not a fixed window (receptive_field skips it)

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim not in (3, 4):
            raise ValueError(f"AdaptiveAvgPool2d: expected a 3-D or 4-D input, got {x.shape}")
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        ah, aw = (x.ndim - 3, x.ndim - 2) if self.channels_last else (x.ndim - 2, x.ndim - 1)
        H, W = x.shape[ah], x.shape[aw]
        oh, ow = (H if o is None else int(o) for o, H in zip(self.output_size, (H, W)))
        self._shape = x.shape
        self._axes = (ah, aw)
        if (oh, ow) == (1, 1):
            self._mats = None
            return x.mean(axis=(ah, aw), keepdims=True)
        ph, pw = _adaptive_matrix(H, oh, x.dtype), _adaptive_matrix(W, ow, x.dtype)
        self._mats = (ph, pw)
        if self.channels_last:
            return np.einsum("ih,...hwc,jw->...ijc", ph, x, pw, optimize=True)
        return ph @ x @ pw.T

    def backward(self, grad_out):
        g = np.asarray(grad_out)
        ah, aw = self._axes
        if self._mats is None:
            n = self._shape[ah] * self._shape[aw]
            return np.ascontiguousarray(np.broadcast_to(g / g.dtype.type(n), self._shape))
        ph, pw = self._mats
        if self.channels_last:
            return np.einsum("ih,...ijc,jw->...hwc", ph, g, pw, optimize=True)
        return ph.T @ g @ pw

    def extra_repr(self):
        return f"output_size={tuple(self.output_size)}"
