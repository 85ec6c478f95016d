"""Weights packed once into the GEMM panels of the im2col algorithm (or transformed once
for Winograd), reused by every call that passes them in place of the weight array
(XNNPACK-style: pack once, run many times). Layers keep one of these and repack only
when their weights change."""
import sys

import numpy as np

from . import _im2col, _spec
from ._threads import get_num_threads


class PackedWeights:
    """Convolution weights plus their packed GEMM panels.

    Made by :func:`cconv.pack_weights`. Accepted as ``weight`` by ``conv1d/2d/3d`` with
    the same layout (another layout is a ValueError). The panels (``panels``) are made
    on first use, for the ISA path and compute dtype active at packing time, and used
    when a call runs the im2col algorithm with the packed groups and compute dtype on
    that path (a pack whose calls all run Winograd or the pixel-row kernels, as a
    training layer's pack used once often does, never makes them); a call that runs
    Winograd transforms the weights once and keeps them here (:meth:`winograd`), so
    ``algorithm="auto"`` (and ``"winograd"``, for its variant) weighs Winograd for packed
    weights without that transform (``_plan.choose_forward(packed=True)``: it may pick
    another Winograd variant, or Winograd where a one-shot call picks im2col); any other
    call uses ``weight`` as usual (same result).
    ``weight`` is a read-only copy taken at packing time: later edits of the original
    array do not reach it (pack again).
    """

    __slots__ = ("weight", "layout", "groups", "nd", "dtype", "isa", "tile", "_panels",
                 "_winograd", "_pixrow", "_spare")

    def __init__(self, weight, layout, groups, nd, isa, tile):
        self.weight = weight
        self.layout = layout
        self.groups = groups
        self.nd = nd
        self.dtype = weight.dtype
        self._panels = None
        self.isa = isa
        self.tile = tile
        self._winograd = None
        self._pixrow = None
        self._spare = {}

    def _recycle(self, old):
        """Take over the Winograd transform buffers of `old`, a pack this one replaces
        (a layer repacking after a weight update): this pack's transforms are written
        into them instead of fresh memory (a 512 -> 512 F(4x4) transform is 38 MB, past
        malloc's reuse, so every repack page-faulted it in: a fifth of a batch-2 training
        forward). `old` drops them and would transform again if it were used. A buffer
        that something else still references (a call on `old` running in another
        thread) is left to it."""
        if old is None or old is self or old._winograd is None:
            return
        kept = old._winograd._packed
        old._winograd = None
        for key in list(kept):
            buf = kept.pop(key)
            if sys.getrefcount(buf) <= 2:  # buf and getrefcount's argument only
                self._spare[key] = buf

    def winograd(self):
        """The Winograd-transformed weights of this packing (a :class:`WinogradWeights`
        made on first use, sharing the read-only ``weight``): a call that runs
        Winograd with packed weights transforms them once, not every time."""
        if self._winograd is None:
            from .functional import WinogradWeights
            self._winograd = WinogradWeights(self.weight, self.layout, "winograd",
                                             copy=False)
            self._winograd._spare, self._spare = self._spare, {}
        return self._winograd

    @property
    def panels(self):
        """The im2col GEMM panels (read-only), packed on first use. Only valid while
        ``usable`` holds (the calls check it first)."""
        if self._panels is None:
            channels_last = self.layout == _spec.LAYOUTS[self.nd][1]
            p = _im2col.pack_weights(_weight5(self.weight, self.layout, self.nd), self.groups,
                                     channels_last, get_num_threads())
            p.setflags(write=False)
            self._panels = p
        return self._panels

    def pixrow_panels(self):
        """The NR-column weight panels of the channels-first pixel-row kernels (made on
        first use, for the ISA path and dtype of ``panels``): a call that runs them with
        packed weights packs these once, not every time."""
        if self._pixrow is None:
            p = _im2col.pack_weights(_weight5(self.weight, self.layout, self.nd), self.groups,
                                     False, get_num_threads(), pixrow=True)
            p.setflags(write=False)
            self._pixrow = p
        return self._pixrow

    @property
    def shape(self):
        return self.weight.shape

    @property
    def ndim(self):
        return self.weight.ndim

    def __repr__(self):
        return (f"PackedWeights(shape={self.shape}, layout={self.layout!r}, groups={self.groups}, "
                f"dtype={self.dtype}, isa={self.isa!r}, tile={self.tile})")

    def usable(self, dtype):
        """Whether the panels fit a call computing in `dtype` on the active ISA path."""
        return (dtype == self.dtype and self.isa == _im2col.isa_active()
                and self.tile == _im2col.tile_shape(dtype))


def _weight5(w, layout, nd):
    """The weight as cconv's 5-D kernel layout (a view)."""
    channels_last = layout == _spec.LAYOUTS[nd][1]
    k = w.shape[:nd] if channels_last else w.shape[2:]
    k3 = (1,) * (3 - nd) + tuple(k)
    return w.reshape(k3 + w.shape[nd:] if channels_last else w.shape[:2] + k3)


def pack_weights(weight, *, layout="NCHW", groups=1, dtype=None):
    """Pack convolution weights once for repeated ``conv1d/2d/3d`` calls. Only the copy
    of the weights is made here; the panels each algorithm needs are made by the first
    call that runs it, and kept.

    weight: in the layout's weight convention ((O, C/groups, *k) for NCL/NCHW/NCDHW,
    (*k, C/groups, O) for NLC/NHWC/NDHWC). dtype: the compute dtype (float32 or
    float64; default: the weight's, with integers as float64 and float16 as float32).
    Returns a :class:`PackedWeights`.
    """
    fname = "pack_weights"
    nd = next((n for n, ls in _spec.LAYOUTS.items() if layout in ls), None)
    if nd is None:
        raise ValueError(f"{fname}: layout={layout!r} is not one of "
                         f"{sum(_spec.LAYOUTS.values(), ())}")
    w = _spec.as_array(fname, "weight", weight)
    if w.ndim != nd + 2:
        raise ValueError(f"{fname}: weight for layout {layout} must be {nd + 2}-D, got shape "
                         f"{w.shape}")
    dt = _spec.compute_dtype(fname, [("weight", w)]) if dtype is None else np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{fname}: dtype must be float32 or float64, got {dt}")
    channels_last = layout == _spec.LAYOUTS[nd][1]
    O = w.shape[-1] if channels_last else w.shape[0]
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{fname}: groups must be an int >= 1, got {groups!r}")
    if O % groups:
        raise ValueError(f"{fname}: {O} output channels are not divisible by groups={groups}")
    w = np.array(w, dtype=dt, order="C", copy=True)
    w.setflags(write=False)
    return PackedWeights(w, layout, groups, nd, _im2col.isa_active(), _im2col.tile_shape(dt))
