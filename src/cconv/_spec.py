"""Argument normalisation: every public call becomes one frozen ConvSpec.

All validation lives here. Errors name the function, the argument, the values and
the arithmetic that failed; they are raised before any work starts.
"""
import operator
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

LAYOUTS = {
    1: ("NCL", "NLC"),
    2: ("NCHW", "NHWC"),
    3: ("NCDHW", "NDHWC"),
}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
ALGORITHMS = ("auto", "direct", "im2col", "depthwise", "winograd", "winograd_f2", "winograd_f4")
_DIM_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclass(frozen=True)
class ConvSpec:
    """A fully resolved convolution problem (forward direction)."""

    fname: str
    nd: int
    layout: str
    channels_last: bool
    batched: bool
    N: int
    C: int
    O: int
    groups: int
    in_size: Tuple[int, ...]      # spatial input size, nd entries
    kernel: Tuple[int, ...]
    stride: Tuple[int, ...]
    dilation: Tuple[int, ...]
    pads: Tuple[Tuple[int, int], ...]  # (before, after) per spatial dim
    padding_mode: str
    out_size: Tuple[int, ...]
    dtype: np.dtype
    has_bias: bool

    @property
    def Cg(self):
        return self.C // self.groups

    @property
    def Og(self):
        return self.O // self.groups

    @property
    def out_shape(self):
        """Output shape in the user's layout (unbatched if the input was)."""
        if self.channels_last:
            shape = (self.N,) + self.out_size + (self.O,)
        else:
            shape = (self.N, self.O) + self.out_size
        return shape if self.batched else shape[1:]

    @property
    def macs(self):
        """Multiply-accumulates of the forward convolution."""
        return self.N * self.O * self.Cg * int(np.prod(self.kernel)) * int(np.prod(self.out_size))

    def as3d(self, values, fill):
        """Left-pad a per-dim tuple to 3 spatial dims (D, H, W)."""
        return (fill,) * (3 - self.nd) + tuple(values)


# ----------------------------------------------------------------------------- dtypes

def compute_dtype(fname, arrays):
    """The dtype the computation runs in, following DESIGN.md section 1."""
    for name, a in arrays:
        k = a.dtype.kind
        if k in "fiu":
            continue
        raise TypeError(
            f"{fname}: {name} has dtype {a.dtype}, which cconv cannot convolve "
            "(supported: floating and integer arrays)"
        )
    rt = np.result_type(*[a for _, a in arrays])
    if rt.kind in "iu":
        return np.dtype(np.float64)
    if rt == np.float16:
        return np.dtype(np.float32)
    if rt in (np.float32, np.float64):
        return np.dtype(rt)
    raise TypeError(f"{fname}: dtype {rt} is not supported (use float32 or float64)")


def as_array(fname, name, a):
    if isinstance(a, np.ndarray):
        return a
    try:
        arr = np.asarray(a)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{fname}: {name} could not be converted to an array: {e}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{fname}: {name} converts to dtype {arr.dtype}, not a numeric array")
    return arr


# ----------------------------------------------------------------------------- ints

def _as_int(fname, name, v, nd):
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{fname}: {name} must be an int or a tuple of {nd} ints, got {v!r}")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(
            f"{fname}: {name} must be an int or a tuple of {nd} ints, got {v!r}"
        ) from None


def int_tuple(fname, name, v, nd, minimum):
    """An int or a length-nd sequence of ints, each >= minimum."""
    if isinstance(v, (list, tuple, np.ndarray)):
        vals = list(v)
        if len(vals) != nd:
            raise ValueError(
                f"{fname}: {name} needs {nd} value{'s' if nd > 1 else ''} (one per spatial "
                f"dim), got {len(vals)}: {tuple(v)!r}"
            )
        vals = tuple(_as_int(fname, name, x, nd) for x in vals)
    else:
        vals = (_as_int(fname, name, v, nd),) * nd
    for i, x in enumerate(vals):
        if x < minimum:
            raise ValueError(f"{fname}: {name} must be >= {minimum}, got {x} in dim {i}")
    return vals


# ----------------------------------------------------------------------------- padding

def resolve_padding(fname, padding, nd, in_size, kernel, stride, dilation):
    """Return ((before, after), ...) per spatial dim."""
    if isinstance(padding, str):
        p = padding.lower()
        if p == "valid":
            return ((0, 0),) * nd
        if p == "same":
            pads = []
            for n, k, s, d in zip(in_size, kernel, stride, dilation):
                out = -(-n // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        if p == "causal":
            if nd != 1:
                raise ValueError(f"{fname}: padding='causal' is only for 1-D convolution")
            return (((kernel[0] - 1) * dilation[0], 0),)
        raise ValueError(
            f"{fname}: padding={padding!r} is not one of 'valid', 'same'"
            + (", 'causal'" if nd == 1 else "")
            + ", an int or a tuple"
        )
    if isinstance(padding, (list, tuple, np.ndarray)):
        items = list(padding)
        if len(items) != nd:
            raise ValueError(
                f"{fname}: padding needs {nd} entr{'ies' if nd > 1 else 'y'} (one per spatial "
                f"dim), got {len(items)}: {tuple(items)!r}"
            )
        pads = []
        for i, item in enumerate(items):
            if isinstance(item, (list, tuple, np.ndarray)):
                if len(item) != 2:
                    raise ValueError(
                        f"{fname}: padding entry {i} must be an int or a (before, after) pair, "
                        f"got {tuple(item)!r}"
                    )
                b, a = (_as_int(fname, "padding", x, nd) for x in item)
            else:
                b = a = _as_int(fname, "padding", item, nd)
            pads.append((b, a))
    else:
        p = _as_int(fname, "padding", padding, nd)
        pads = [(p, p)] * nd
    for i, (b, a) in enumerate(pads):
        if b < 0 or a < 0:
            raise ValueError(f"{fname}: padding must be >= 0, got ({b}, {a}) in dim {i}")
    return tuple(pads)


def check_padding_mode(fname, mode, pads, in_size):
    if mode not in PADDING_MODES:
        raise ValueError(f"{fname}: padding_mode={mode!r} is not one of {PADDING_MODES}")
    for i, ((b, a), n) in enumerate(zip(pads, in_size)):
        if mode == "reflect" and max(b, a) >= n and max(b, a) > 0:
            raise ValueError(
                f"{fname}: reflect padding ({b}, {a}) in dim {i} must be smaller than the "
                f"input size {n}"
            )
        if mode == "circular" and max(b, a) > n:
            raise ValueError(
                f"{fname}: circular padding ({b}, {a}) in dim {i} must be at most the input "
                f"size {n}"
            )
        if mode == "replicate" and n == 0 and max(b, a) > 0:
            raise ValueError(f"{fname}: replicate padding of an empty dim {i}")


# ----------------------------------------------------------------------------- forward

def forward_spec(fname, nd, x, weight, bias, stride, padding, dilation, groups,
                 padding_mode, layout, algorithm):
    """Validate a forward call. Returns (spec, x, weight, bias) with the arrays as
    NumPy arrays (not yet converted to the compute dtype)."""
    layouts = LAYOUTS[nd]
    if not isinstance(layout, str) or layout not in layouts:
        raise ValueError(f"{fname}: layout={layout!r} is not one of {layouts}")
    channels_last = layout == layouts[1]
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS + ("fft",):
        raise ValueError(f"{fname}: algorithm={algorithm!r} is not one of {ALGORITHMS}")

    x = as_array(fname, "x", x)
    weight = as_array(fname, "weight", weight)
    arrays = [("x", x), ("weight", weight)]
    if bias is not None:
        bias = as_array(fname, "bias", bias)
        arrays.append(("bias", bias))
    dtype = compute_dtype(fname, arrays)

    dims = "".join(_DIM_NAMES[nd])
    if x.ndim not in (nd + 1, nd + 2):
        want = layout if not channels_last else layout
        raise ValueError(
            f"{fname}: x must be {nd + 2}-D ({', '.join(want)}) or {nd + 1}-D unbatched, "
            f"got {x.ndim}-D with shape {x.shape}"
        )
    batched = x.ndim == nd + 2
    xs = x.shape if batched else (1,) + x.shape
    N = xs[0] if batched else 1
    if channels_last:
        C, in_size = xs[-1], tuple(xs[1:-1])
    else:
        C, in_size = xs[1], tuple(xs[2:])

    if weight.ndim != nd + 2:
        wl = ("O", "C/groups") + tuple("k" + d for d in dims.lower()) if not channels_last else \
            tuple("k" + d for d in dims.lower()) + ("C/groups", "O")
        raise ValueError(
            f"{fname}: weight must be {nd + 2}-D ({', '.join(wl)}), got {weight.ndim}-D with "
            f"shape {weight.shape}"
        )
    if channels_last:
        kernel, Cg_w, O = tuple(weight.shape[:nd]), weight.shape[nd], weight.shape[nd + 1]
        cg_where, o_where = f"weight.shape[{nd}]", f"weight.shape[{nd + 1}]"
    else:
        O, Cg_w, kernel = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
        cg_where, o_where = "weight.shape[1]", "weight.shape[0]"

    if isinstance(groups, (bool, np.bool_)):
        raise TypeError(f"{fname}: groups must be an int, got {groups!r}")
    try:
        groups = operator.index(groups)
    except TypeError:
        raise TypeError(f"{fname}: groups must be an int, got {groups!r}") from None
    if groups < 1:
        raise ValueError(f"{fname}: groups must be >= 1, got {groups}")
    if Cg_w * groups != C:
        raise ValueError(
            f"{fname}: input has {C} channels but weight expects {Cg_w * groups} "
            f"({cg_where}={Cg_w} x groups={groups})"
        )
    if O % groups:
        raise ValueError(
            f"{fname}: weight has {O} output channels ({o_where}), not divisible by "
            f"groups={groups}"
        )
    for i, k in enumerate(kernel):
        if k < 1:
            raise ValueError(f"{fname}: kernel size must be >= 1, got {k} in dim {i} "
                             f"(weight.shape={weight.shape})")

    stride = int_tuple(fname, "stride", stride, nd, 1)
    dilation = int_tuple(fname, "dilation", dilation, nd, 1)
    pads = resolve_padding(fname, padding, nd, in_size, kernel, stride, dilation)
    check_padding_mode(fname, padding_mode, pads, in_size)

    out_size = []
    for i, (n, k, s, d, (b, a)) in enumerate(zip(in_size, kernel, stride, dilation, pads)):
        span = (k - 1) * d + 1
        if n + b + a < span:
            raise ValueError(
                f"{fname}: kernel size {k} (dilation {d}: spans {span}) in dim {i} is larger "
                f"than the padded input {n + b + a} ({n} + {b} + {a}); the output would be empty"
            )
        out_size.append((n + b + a - span) // s + 1)

    if bias is not None and bias.shape != (O,):
        raise ValueError(f"{fname}: bias must have shape ({O},) (one per output channel), "
                         f"got {bias.shape}")

    spec = ConvSpec(
        fname=fname, nd=nd, layout=layout, channels_last=channels_last, batched=batched,
        N=N, C=C, O=O, groups=groups, in_size=in_size, kernel=kernel, stride=stride,
        dilation=dilation, pads=pads, padding_mode=padding_mode, out_size=tuple(out_size),
        dtype=dtype, has_bias=bias is not None,
    )
    return spec, x, weight, bias


def check_out(spec, out, inputs):
    """Validate a user-supplied output array."""
    fname = spec.fname
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fname}: out must be a NumPy array, got {type(out).__name__}")
    if out.shape != spec.out_shape:
        raise ValueError(f"{fname}: out has shape {out.shape}, expected {spec.out_shape}")
    if out.dtype != spec.dtype:
        raise TypeError(f"{fname}: out has dtype {out.dtype}, expected {spec.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{fname}: out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{fname}: out is read-only")
    if not out.dtype.isnative:
        raise ValueError(f"{fname}: out must be in native byte order")
    for name, a in inputs:
        if a is None or not isinstance(a, np.ndarray):
            continue
        try:
            overlap = np.shares_memory(out, a, max_work=10_000)
        except np.exceptions.TooHardError:
            overlap = True
        if overlap:
            raise ValueError(f"{fname}: out overlaps {name}")
