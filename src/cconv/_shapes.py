"""Shape arithmetic without running anything: output shapes, MAC counts, receptive fields.

Every function validates through the same ``_spec.forward_spec`` as ``conv*d`` (on
zero-stride dummy arrays, so nothing is allocated), so a shape that ``conv2d`` would
reject is rejected here with the same message.
"""
import collections

import numpy as np

from . import _spec

_DEFAULT_LAYOUT = {1: "NCL", 2: "NCHW", 3: "NCDHW"}
_NAMES = {1: "conv1d", 2: "conv2d", 3: "conv3d"}


def _spec_of(fname, input_shape, weight_shape, stride, padding, dilation, layout, groups):
    weight_shape = tuple(int(s) for s in weight_shape)
    input_shape = tuple(int(s) for s in input_shape)
    nd = len(weight_shape) - 2
    if nd not in (1, 2, 3):
        raise ValueError(f"{fname}: weight_shape must have 3, 4 or 5 entries (1-, 2- or 3-D "
                         f"convolution), got {weight_shape}")
    if layout is None:
        layout = _DEFAULT_LAYOUT[nd]
    channels_last = layout in _spec.LAYOUTS[nd][1:]
    if groups is None:
        # infer: input channels / weight's channels per group
        batched = len(input_shape) == nd + 2
        C = input_shape[-1] if channels_last else input_shape[1 if batched else 0]
        Cg = weight_shape[nd] if channels_last else weight_shape[1]
        groups = C // Cg if Cg and C % Cg == 0 and C >= Cg else 1
    x = _spec._dummy(input_shape, np.float32)
    w = _spec._dummy(weight_shape, np.float32)
    spec, *_ = _spec.forward_spec(fname, nd, x, w, None, stride, padding, dilation, groups,
                                  "zeros", layout, "auto")
    return spec


def conv_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1, *,
                      layout=None, groups=None):
    """Shape of ``conv{1,2,3}d(x, w, ...)`` for x of ``input_shape`` and w of
    ``weight_shape``, computed without running the convolution.

    The dimensionality comes from ``weight_shape`` (3, 4 or 5 entries); ``layout``
    defaults to PyTorch's ("NCL" / "NCHW" / "NCDHW"); ``groups`` defaults to
    input channels / weight.shape[1] (the only value that fits). An unbatched
    ``input_shape`` gives an unbatched result. Invalid arguments raise the same
    ValueError as the convolution itself.

    >>> conv_output_shape((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    (1, 64, 112, 112)
    """
    spec = _spec_of("conv_output_shape", input_shape, weight_shape, stride, padding,
                    dilation, layout, groups)
    shape = spec.out_shape
    return tuple(int(s) for s in shape)


def conv_macs(input_shape, weight_shape, stride=1, padding=0, dilation=1, *,
              layout=None, groups=None):
    """Multiply-accumulates of the direct convolution (N * O * C/groups * prod(kernel) *
    prod(output spatial)); arguments as in :func:`conv_output_shape`. FLOPs are 2x this
    (plus N * O * pixels for a bias)."""
    spec = _spec_of("conv_macs", input_shape, weight_shape, stride, padding, dilation,
                    layout, groups)
    return int(spec.macs)


ReceptiveField = collections.namedtuple("ReceptiveField", ["size", "jump"])
ReceptiveField.__doc__ = """size: input pixels one output pixel sees (per dim);
jump: input pixels between neighbouring output pixels (the product of the strides)."""


def _as_tuple(v, nd):
    if isinstance(v, (tuple, list)):
        return tuple(int(a) for a in v)
    return (int(v),) * nd


def _flatten_layers(layers):
    for layer in layers:
        if isinstance(layer, (tuple, list, dict)):
            yield layer
            continue
        if getattr(layer, "kernel_size", None) is not None:
            yield layer
        elif getattr(layer, "_receptive_children", None) is not None:
            yield from _flatten_layers(layer._receptive_children())
        # element-wise layers (activations, norms, ...) do not change the field


def receptive_field(layers):
    """Receptive field of a stack of layers applied one after the other.

    ``layers``: an iterable whose items are ``cconv.nn`` layers (convolutions and
    pooling count, containers are walked in order, element-wise layers are skipped; a
    Residual counts its body), or tuples ``(kernel, stride)`` /
    ``(kernel, stride, dilation)`` / dicts with those keys (ints or per-dim tuples).
    A model (e.g. ``nn.Sequential``) may be passed directly.

    Returns ``ReceptiveField(size, jump)``: ints when every item is 1-D/ints, else
    per-dim tuples. Rule: ``size += (k - 1) * dilation * jump; jump *= stride``.
    Adaptive / global pooling is not a fixed window and is skipped.

    >>> receptive_field([(3, 1), (3, 1), (3, 1)])
    ReceptiveField(size=7, jump=1)
    """
    if hasattr(layers, "_receptive_children"):
        layers = [layers]
    items = []
    nd = 1
    for layer in _flatten_layers(layers):
        if isinstance(layer, dict):
            k, s, d = layer["kernel"], layer.get("stride", 1), layer.get("dilation", 1)
        elif isinstance(layer, (tuple, list)):
            if not 1 <= len(layer) <= 3:
                raise ValueError(f"receptive_field: a layer tuple is (kernel, stride[, "
                                 f"dilation]), got {layer!r}")
            k, s, d = (tuple(layer) + (1, 1))[:3]
        else:
            k = layer.kernel_size
            s = getattr(layer, "stride", 1)
            d = getattr(layer, "dilation", 1)
            if getattr(layer, "transposed", False):
                raise ValueError("receptive_field: transposed convolutions upsample; the "
                                 "field of a stack containing one is not defined here")
        for v in (k, s, d):
            if isinstance(v, (tuple, list)):
                nd = max(nd, len(v))
        items.append((k, s, d))
    size = np.ones(nd, dtype=np.int64)
    jump = np.ones(nd, dtype=np.int64)
    scalar = True
    for k, s, d in items:
        if any(isinstance(v, (tuple, list)) for v in (k, s, d)):
            scalar = False
        k, s, d = (np.array(_as_tuple(v, nd)) for v in (k, s, d))
        size = size + (k - 1) * d * jump
        jump = jump * s
    if scalar and nd == 1:
        return ReceptiveField(int(size[0]), int(jump[0]))
    return ReceptiveField(tuple(int(v) for v in size), tuple(int(v) for v in jump))
