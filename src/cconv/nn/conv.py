"""Convolution layers over cconv's functional API.

Weights live in the layer's layout: PyTorch's (O, C/groups, *k) (transposed:
(C_in, C_out/groups, *k)) for channels-first, cconv's channels-last layout (*k, C/groups, O)
(transposed: (*k, C_out/groups, C_in)) for ``layout="NHWC"`` / "NLC" / "NDHWC".
``state_dict()`` always holds PyTorch's layout, whatever the layer's layout, so
checkpoints port between layouts and to/from PyTorch.

Repack rule. A (non-transposed) conv layer keeps its weights packed into the im2col
GEMM panels (``cconv.pack_weights`` -> ``PackedWeights``, passed to ``conv*d`` in place
of the weight array; transposed convolutions keep a C-contiguous copy of the compute
dtype) and rebuilds the pack only when the cache key changes. The pack holds a COPY of
the weights, and forward and backward both use it, so they always agree. The key is
``(layer.version, id(weight), weight.shape, weight.dtype, data pointer)``:

* ``version`` is bumped by every optimizer step that touches the layer's parameters (the
  ``(param, grad)`` pairs from ``parameters()`` carry their owner), by
  ``load_state_dict`` / ``load``, and by ``layer.mark_changed()``;
* replacing ``layer.params["weight"]`` by another array is detected (identity / shape /
  dtype / pointer);
* an in-place edit by user code (``layer.params["weight"][...] = w``) is NOT detected:
  call ``layer.mark_changed()`` (or ``model.mark_changed()``) after it. Detecting it
  would mean hashing the weight on every call, as costly as repacking.

``layer.repacks`` counts rebuilds (for tests and profiling). A rebuild hands the old
pack's Winograd transform buffers to the new pack (``PackedWeights._recycle``), so a
training step's transform does not page-fault fresh memory in.
"""
import math

import numpy as np

from .. import backward as _bw
from .. import functional as _fn
from .. import _spec
from .._packed import pack_weights
from . import init
from .module import Module, _dtype

_CHANNELS_LAST = ("NLC", "NHWC", "NDHWC", "channels_last")
_CHANNELS_FIRST = ("NCL", "NCHW", "NCDHW", "channels_first")


def _layout(nd, layout, cls):
    if layout is None:
        return _spec.LAYOUTS[nd][0], False
    if layout in _CHANNELS_LAST:
        return _spec.LAYOUTS[nd][1], True
    if layout in _CHANNELS_FIRST:
        return _spec.LAYOUTS[nd][0], False
    raise ValueError(f"{cls}: layout={layout!r} is not one of {_spec.LAYOUTS[nd]} "
                     f"(or 'channels_first' / 'channels_last')")


def _tuple(v, nd):
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * nd


_FWD = {1: _fn.conv1d, 2: _fn.conv2d, 3: _fn.conv3d}
_BWD = {1: _bw.conv1d_backward, 2: _bw.conv2d_backward, 3: _bw.conv3d_backward}
_TFWD = {1: _bw.conv_transpose1d, 2: _bw.conv_transpose2d, 3: _bw.conv_transpose3d}
_TBWD = {1: _bw.conv_transpose1d_backward, 2: _bw.conv_transpose2d_backward,
         3: _bw.conv_transpose3d_backward}


class _ConvNd(Module):
    nd = 2
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 groups, bias, padding_mode, output_padding, layout, dtype, rng):
        super().__init__()
        cls = type(self).__name__
        nd = self.nd
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{cls}: in_channels={in_channels} and out_channels="
                             f"{out_channels} must be divisible by groups={groups}")
        if self.transposed and padding_mode != "zeros":
            raise ValueError(f"{cls}: only padding_mode='zeros' is supported (as in PyTorch)")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _tuple(kernel_size, nd)
        self.stride = _tuple(stride, nd)
        self.padding = padding if isinstance(padding, str) else \
            (tuple(padding) if isinstance(padding, (tuple, list)) else (int(padding),) * nd)
        self.dilation = _tuple(dilation, nd)
        self.output_padding = _tuple(output_padding, nd)
        self.groups = int(groups)
        self.padding_mode = padding_mode
        self.layout, self.channels_last = _layout(nd, layout, cls)
        self.dtype = _dtype(dtype)
        # PyTorch layout first; channels-last storage is its transpose.
        if self.transposed:
            tshape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            tshape = (out_channels, in_channels // groups) + self.kernel_size
        w = np.empty(tshape, self.dtype)
        self._add_param("weight", self._load_param("weight", w))
        if bias:
            self._add_param("bias", np.empty(out_channels, self.dtype))
        self._perm = (nd + 1, nd) + tuple(range(nd))  # storage -> PyTorch layout
        self.repacks = 0
        self._cache_key = None
        self._cache = None
        self._x = None
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        """PyTorch's default: kaiming_uniform_(a=sqrt(5)) on the weight, i.e.
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (fan_in = weight.shape[1] * prod(k) in PyTorch's
        layout), and the bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        rng = rng if rng is not None else np.random.default_rng()
        w = np.empty(self._state_param("weight", self.params["weight"]).shape, self.dtype)
        init.kaiming_uniform_(w, a=math.sqrt(5), rng=rng)
        self.params["weight"][...] = self._load_param("weight", w)
        if "bias" in self.params:
            fan_in = w.shape[1] * math.prod(w.shape[2:])
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.params["bias"], -bound, bound, rng=rng)
        self.version += 1

    # state_dict conversion (PyTorch layout <-> storage layout)
    def _state_param(self, name, value):
        if name == "weight" and self.channels_last:
            return value.transpose(self._perm)
        return value

    def _load_param(self, name, value):
        if name == "weight" and self.channels_last:
            nd = self.nd
            return np.ascontiguousarray(value.transpose(tuple(range(2, nd + 2)) + (1, 0)))
        return value

    def _packed_weight(self):
        w = self.params["weight"]
        key = (self.version, id(w), w.shape, w.dtype, w.__array_interface__["data"][0])
        if key != self._cache_key:
            if self.transposed:
                self._cache = np.ascontiguousarray(w, dtype=self.dtype)
            else:
                old = self._cache
                self._cache = pack_weights(w, layout=self.layout, groups=self.groups,
                                           dtype=self.dtype)
                self._cache._recycle(old)
            self._cache_key = key
            self.repacks += 1
        return self._cache

    def _weight_array(self, packed):
        return packed if self.transposed else packed.weight

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def forward(self, x):
        x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        w = self._packed_weight()
        b = self.params.get("bias")
        if self.transposed:
            y = _TFWD[self.nd](x, w, b, self.stride, self.padding, self.output_padding,
                               self.groups, self.dilation, layout=self.layout)
        else:
            y = _FWD[self.nd](x, w, b, self.stride, self.padding, self.dilation, self.groups,
                              padding_mode=self.padding_mode, layout=self.layout)
        self._x = x
        return y

    def backward(self, grad_out):
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        need = ("input",) if self.need_input_grad else ()
        need += ("weight",) + (("bias",) if "bias" in self.params else ())
        w = self._weight_array(self._packed_weight())
        if self.transposed:
            gi, gw, gb = _TBWD[self.nd](grad_out, self._x, w, self.stride, self.padding,
                                        self.output_padding, self.groups, self.dilation,
                                        layout=self.layout, need=need)
        else:
            gi, gw, gb = _BWD[self.nd](grad_out, self._x, w, self.stride, self.padding,
                                       self.dilation, self.groups,
                                       padding_mode=self.padding_mode, layout=self.layout,
                                       need=need)
        self.grads["weight"] += gw
        if gb is not None:
            self.grads["bias"] += gb
        return gi

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if "bias" not in self.params:
            s += ", bias=False"
        if self.channels_last:
            s += f", layout={self.layout!r}"
        return s


def _make(nd, transposed):
    if transposed:
        def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                     output_padding=0, groups=1, bias=True, dilation=1,
                     padding_mode="zeros", *, layout=None, dtype=np.float32, rng=None):
            _ConvNd.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                             dilation, groups, bias, padding_mode, output_padding, layout,
                             dtype, rng)
    else:
        def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                     dilation=1, groups=1, bias=True, padding_mode="zeros", *, layout=None,
                     dtype=np.float32, rng=None):
            _ConvNd.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                             dilation, groups, bias, padding_mode, 0, layout, dtype, rng)
    return __init__


class Conv1d(_ConvNd):
    """1-D convolution, PyTorch's ``nn.Conv1d`` arguments plus ``layout`` ("NCL" default
    or "NLC"), ``dtype`` (float32 default) and ``rng``. ``padding`` also takes cconv's
    forms ("same" with any stride, "causal", (before, after) pairs)."""
    nd = 1
    __init__ = _make(1, False)


class Conv2d(_ConvNd):
    """2-D convolution, PyTorch's ``nn.Conv2d`` arguments plus ``layout`` ("NCHW" default
    or "NHWC": weights then stored as (kh, kw, C/groups, O)), ``dtype`` and ``rng``."""
    nd = 2
    __init__ = _make(2, False)


class Conv3d(_ConvNd):
    """3-D convolution (``nn.Conv3d`` arguments; layout "NCDHW" or "NDHWC")."""
    nd = 3
    __init__ = _make(3, False)


class ConvTranspose1d(_ConvNd):
    """1-D transposed convolution, ``nn.ConvTranspose1d`` arguments (weight
    (C_in, C_out/groups, k); channels-last: (k, C_out/groups, C_in))."""
    nd = 1
    transposed = True
    __init__ = _make(1, True)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution, ``nn.ConvTranspose2d`` arguments."""
    nd = 2
    transposed = True
    __init__ = _make(2, True)


class ConvTranspose3d(_ConvNd):
    """3-D transposed convolution, ``nn.ConvTranspose3d`` arguments."""
    nd = 3
    transposed = True
    __init__ = _make(3, True)


class DepthwiseSeparableConv2d(Module):
    """Depthwise ``kernel_size`` convolution (groups = in_channels, ``depth_multiplier``
    outputs per channel) followed by a 1x1 pointwise convolution (MobileNet / Keras
    ``SeparableConv2D``). Children ``depthwise`` and ``pointwise`` (state_dict keys
    "depthwise.weight", "pointwise.weight", "pointwise.bias"). Only the pointwise conv
    has a bias: a depthwise bias would fold into it."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, bias=True, padding_mode="zeros", depth_multiplier=1, *,
                 layout=None, dtype=np.float32, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        mid = in_channels * depth_multiplier
        self.depthwise = Conv2d(in_channels, mid, kernel_size, stride, padding, dilation,
                                groups=in_channels, bias=False, padding_mode=padding_mode,
                                layout=layout, dtype=dtype, rng=rng)
        self.pointwise = Conv2d(mid, out_channels, 1, bias=bias, layout=layout, dtype=dtype,
                                rng=rng)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))

    def backward(self, grad_out):
        if not self.need_input_grad:
            self.depthwise.need_input_grad = False
        return self.depthwise.backward(self.pointwise.backward(grad_out))
