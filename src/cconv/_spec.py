"""Argument normalisation: every public call becomes one frozen ConvSpec.

All validation lives here. Errors name the function, the argument, the values and
the arithmetic that failed; they are raised before any work starts.
"""
import math
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
ALGORITHMS = ("auto", "direct", "im2col", "depthwise", "winograd", "winograd_f2", "winograd_f4",
              "fft")
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
        return self.N * self.O * self.Cg * math.prod(self.kernel) * math.prod(self.out_size)

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


def check_groups(fname, groups):
    """groups as a Python int >= 1 (bools and non-integers are TypeErrors)."""
    if isinstance(groups, (bool, np.bool_)):
        raise TypeError(f"{fname}: groups must be an int, got {groups!r}")
    try:
        groups = operator.index(groups)
    except TypeError:
        raise TypeError(f"{fname}: groups must be an int, got {groups!r}") from None
    if groups < 1:
        raise ValueError(f"{fname}: groups must be >= 1, got {groups}")
    return groups


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

# Validated forward specs, keyed by everything the validation reads (array shapes and
# dtypes and the exact arguments): a repeated call (a layer in a loop) skips about 6 us
# of checks. Arguments only count when their types are exactly int / str / tuples of
# them (so True, 1.0 or np.int64(1) always take the full checks); only calls that
# passed validation are stored.
_SPEC_CACHE = {}
_SPEC_CACHE_MAX = 256


class _Uncacheable(Exception):
    pass


def _arg_key(v):
    t = type(v)
    if t is int or t is str:
        return v
    if t is tuple:
        return tuple(_arg_key(e) for e in v)
    raise _Uncacheable


def _forward_key(fname, nd, x, weight, bias, stride, padding, dilation, groups,
                 padding_mode, layout, algorithm):
    if type(x) is not np.ndarray or type(weight) is not np.ndarray or not (
            bias is None or type(bias) is np.ndarray):
        return None
    try:
        return (fname, nd, x.shape, x.dtype, weight.shape, weight.dtype,
                None if bias is None else (bias.shape, bias.dtype), _arg_key(stride),
                _arg_key(padding), _arg_key(dilation), _arg_key(groups),
                _arg_key(padding_mode), _arg_key(layout), _arg_key(algorithm))
    except _Uncacheable:
        return None


_NO_KEY = object()


def forward_spec(fname, nd, x, weight, bias, stride, padding, dilation, groups,
                 padding_mode, layout, algorithm, key=_NO_KEY):
    """Validate a forward call. Returns (spec, x, weight, bias) with the arrays as
    NumPy arrays (not yet converted to the compute dtype). key: the call's
    _forward_key when the caller has it already."""
    if key is _NO_KEY:
        key = _forward_key(fname, nd, x, weight, bias, stride, padding, dilation, groups,
                           padding_mode, layout, algorithm)
    spec = _SPEC_CACHE.get(key) if key is not None else None
    if spec is not None:
        return spec, x, weight, bias
    spec, x, weight, bias = _forward_spec(fname, nd, x, weight, bias, stride, padding,
                                          dilation, groups, padding_mode, layout, algorithm)
    if key is not None:
        if len(_SPEC_CACHE) >= _SPEC_CACHE_MAX:
            _SPEC_CACHE.clear()
        _SPEC_CACHE[key] = spec
    return spec, x, weight, bias


def _forward_spec(fname, nd, x, weight, bias, stride, padding, dilation, groups,
                  padding_mode, layout, algorithm):
    layouts = LAYOUTS[nd]
    if not isinstance(layout, str) or layout not in layouts:
        raise ValueError(f"{fname}: layout={layout!r} is not one of {layouts}")
    channels_last = layout == layouts[1]
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
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

    groups = check_groups(fname, groups)
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


# ----------------------------------------------------------------------------- backward
#
# A backward call is validated as the forward convolution it differentiates: the
# missing array (x for grad_input, weight for grad_weight) is stood in for by a
# zero-strided dummy of the given shape, so every shape rule and message is the
# forward's; then grad_out must have exactly the forward's output shape.

BACKWARD_ALGORITHMS = ("auto", "direct", "im2col")
NEEDS = ("input", "weight", "bias")


def _shape_arg(fname, name, shape, ndims):
    """A shape argument: a sequence of ndims non-negative ints (ndims: allowed lengths)."""
    if isinstance(shape, np.ndarray):
        shape = shape.tolist()
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{fname}: {name} must be a tuple of ints, got {shape!r}")
    vals = []
    for v in shape:
        if isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{fname}: {name} must be a tuple of ints, got {tuple(shape)!r}")
        try:
            vals.append(operator.index(v))
        except TypeError:
            raise TypeError(f"{fname}: {name} must be a tuple of ints, got {tuple(shape)!r}") \
                from None
    if len(vals) not in ndims:
        raise ValueError(
            f"{fname}: {name} must have {' or '.join(map(str, ndims))} entries, got "
            f"{len(vals)}: {tuple(vals)!r}")
    if any(v < 0 for v in vals):
        raise ValueError(f"{fname}: {name} must be non-negative, got {tuple(vals)!r}")
    return tuple(vals)


def _dummy(shape, dtype):
    return np.broadcast_to(np.zeros((), dtype), shape)


def _check_algorithm(fname, algorithm):
    if not isinstance(algorithm, str) or algorithm not in BACKWARD_ALGORITHMS:
        raise ValueError(
            f"{fname}: algorithm={algorithm!r} is not available for backward passes and "
            f"transposed convolutions; use one of {BACKWARD_ALGORITHMS}")


def _check_grad_out(spec, grad_out, what="grad_out"):
    want = spec.out_shape
    if grad_out.shape != want:
        raise ValueError(
            f"{spec.fname}: {what} has shape {grad_out.shape}, expected {want} (the forward "
            f"output for input spatial size {spec.in_size}, kernel {spec.kernel}, stride "
            f"{spec.stride}, padding {spec.pads}, dilation {spec.dilation})")


def grad_input_spec(fname, nd, grad_out, weight, input_shape, stride, padding, dilation,
                    groups, padding_mode, layout, algorithm):
    """Validate convN d_grad_input. Returns (spec, grad_out, weight)."""
    _check_algorithm(fname, algorithm)
    grad_out = as_array(fname, "grad_out", grad_out)
    weight = as_array(fname, "weight", weight)
    dtype = compute_dtype(fname, [("grad_out", grad_out), ("weight", weight)])
    input_shape = _shape_arg(fname, "input_shape", input_shape, (nd + 1, nd + 2))
    spec, _, _, _ = forward_spec(fname, nd, _dummy(input_shape, dtype), weight, None, stride,
                                 padding, dilation, groups, padding_mode, layout, "auto")
    _check_grad_out(spec, grad_out)
    return spec, grad_out, weight


def grad_weight_spec(fname, nd, x, grad_out, weight_shape, stride, padding, dilation, groups,
                     padding_mode, layout, algorithm):
    """Validate convNd_grad_weight. Returns (spec, x, grad_out)."""
    _check_algorithm(fname, algorithm)
    x = as_array(fname, "x", x)
    grad_out = as_array(fname, "grad_out", grad_out)
    dtype = compute_dtype(fname, [("x", x), ("grad_out", grad_out)])
    weight_shape = _shape_arg(fname, "weight_shape", weight_shape, (nd + 2,))
    spec, x, _, _ = forward_spec(fname, nd, x, _dummy(weight_shape, dtype), None, stride,
                                 padding, dilation, groups, padding_mode, layout, "auto")
    _check_grad_out(spec, grad_out)
    return spec, x, grad_out


def check_need(fname, need):
    if isinstance(need, str):
        need = (need,)
    try:
        need = tuple(need)
    except TypeError:
        raise TypeError(f"{fname}: need must be a tuple of names from {NEEDS}, got {need!r}") \
            from None
    for n in need:
        if n not in NEEDS:
            raise ValueError(f"{fname}: need contains {n!r}, not one of {NEEDS}")
    return frozenset(need)


def backward_spec(fname, nd, grad_out, x, weight, stride, padding, dilation, groups,
                  padding_mode, layout, need):
    """Validate convNd_backward. Returns (spec, grad_out, x, weight, need)."""
    need = check_need(fname, need)
    grad_out = as_array(fname, "grad_out", grad_out)
    spec, x, weight, _ = forward_spec(fname, nd, x, weight, None, stride, padding, dilation,
                                      groups, padding_mode, layout, "auto")
    dtype = compute_dtype(fname, [("grad_out", grad_out), ("x", x), ("weight", weight)])
    if dtype != spec.dtype:
        spec = _replace(spec, dtype=dtype)
    _check_grad_out(spec, grad_out)
    return spec, grad_out, x, weight, need


def _replace(spec, **kw):
    import dataclasses
    return dataclasses.replace(spec, **kw)


# ----------------------------------------------------------------------------- transposed
#
# conv_transposeNd(x, w) is the gradient w.r.t. the input of the convolution convNd(y, w)
# that maps the transposed output y back to x's size. TransposeSpec holds that
# convolution ("conv": its input is the transposed output, its output has x's size)
# and the output_padding that fixed the transposed output size.

@dataclass(frozen=True)
class TransposeSpec:
    fname: str
    conv: ConvSpec          # the convolution whose input gradient this is
    output_padding: Tuple[int, ...]

    @property
    def out_shape(self):
        """The transposed convolution's output shape (the conv's input shape)."""
        c = self.conv
        shape = (c.N,) + c.in_size + (c.C,) if c.channels_last else (c.N, c.C) + c.in_size
        return shape if c.batched else shape[1:]

    @property
    def in_shape(self):
        """The transposed convolution's input shape (the conv's output shape)."""
        return self.conv.out_shape

    @property
    def dtype(self):
        return self.conv.dtype


def transpose_spec(fname, nd, x, weight, bias, stride, padding, output_padding, groups,
                   dilation, layout, algorithm):
    """Validate a conv_transposeNd call (or its backward, with a dummy x / weight).
    Returns (tspec, x, weight, bias)."""
    layouts = LAYOUTS[nd]
    if not isinstance(layout, str) or layout not in layouts:
        raise ValueError(f"{fname}: layout={layout!r} is not one of {layouts}")
    channels_last = layout == layouts[1]
    _check_algorithm(fname, algorithm)
    x = as_array(fname, "x", x)
    weight = as_array(fname, "weight", weight)
    arrays = [("x", x), ("weight", weight)]
    if bias is not None:
        bias = as_array(fname, "bias", bias)
        arrays.append(("bias", bias))
    dtype = compute_dtype(fname, arrays)

    if x.ndim not in (nd + 1, nd + 2):
        raise ValueError(
            f"{fname}: x must be {nd + 2}-D ({', '.join(layout)}) or {nd + 1}-D unbatched, "
            f"got {x.ndim}-D with shape {x.shape}")
    batched = x.ndim == nd + 2
    xs = x.shape if batched else (1,) + x.shape
    N = xs[0]
    if channels_last:
        Cin, in_size = xs[-1], tuple(xs[1:-1])
    else:
        Cin, in_size = xs[1], tuple(xs[2:])
    dims = "".join(_DIM_NAMES[nd]).lower()
    if weight.ndim != nd + 2:
        wl = ("C_in", "C_out/groups") + tuple("k" + d for d in dims) if not channels_last \
            else tuple("k" + d for d in dims) + ("C_out/groups", "C_in")
        raise ValueError(
            f"{fname}: weight must be {nd + 2}-D ({', '.join(wl)}), got {weight.ndim}-D with "
            f"shape {weight.shape}")
    if channels_last:
        kernel, Cog, Cin_w = tuple(weight.shape[:nd]), weight.shape[nd], weight.shape[nd + 1]
        cin_where, cog_where = f"weight.shape[{nd + 1}]", f"weight.shape[{nd}]"
    else:
        Cin_w, Cog, kernel = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
        cin_where, cog_where = "weight.shape[0]", "weight.shape[1]"
    groups = check_groups(fname, groups)
    if Cin != Cin_w:
        raise ValueError(
            f"{fname}: input has {Cin} channels but weight expects {Cin_w} ({cin_where})")
    if Cin % groups:
        raise ValueError(
            f"{fname}: input has {Cin} channels ({cin_where}), not divisible by groups={groups}")
    for i, k in enumerate(kernel):
        if k < 1:
            raise ValueError(f"{fname}: kernel size must be >= 1, got {k} in dim {i} "
                             f"(weight.shape={weight.shape})")
    Cout = Cog * groups

    stride = int_tuple(fname, "stride", stride, nd, 1)
    dilation = int_tuple(fname, "dilation", dilation, nd, 1)
    output_padding = int_tuple(fname, "output_padding", output_padding, nd, 0)
    same = isinstance(padding, str) and padding.lower() == "same"
    if isinstance(padding, str) and padding.lower() == "causal":
        raise ValueError(f"{fname}: padding='causal' is not defined for transposed "
                         "convolution; use 'valid', 'same', an int or a tuple")
    if same:
        if any(output_padding):
            raise ValueError(f"{fname}: output_padding={output_padding} cannot be combined "
                             "with padding='same' (which fixes the output size to in*stride)")
        target = tuple(n * s for n, s in zip(in_size, stride))
        pads = resolve_padding(fname, "same", nd, target, kernel, stride, dilation)
    else:
        pads = resolve_padding(fname, padding, nd, in_size, kernel, stride, dilation)
    out_size = []
    ops = []
    for i, (n, k, s, d, (b, a), op) in enumerate(zip(in_size, kernel, stride, dilation, pads,
                                                     output_padding)):
        if op >= s and op >= d:
            raise ValueError(
                f"{fname}: output_padding {op} in dim {i} must be smaller than either stride "
                f"({s}) or dilation ({d})")
        span = (k - 1) * d + 1
        if same:
            L = n * s
            op = L - ((n - 1) * s - b - a + span) if n > 0 else 0
        else:
            L = (n - 1) * s - b - a + span + op
        if n > 0 and L < 1:
            raise ValueError(
                f"{fname}: output size in dim {i} would be {L} = ({n} - 1) x stride {s} - "
                f"padding {b} - {a} + (kernel {k} - 1) x dilation {d} + 1 + output_padding "
                f"{op}; it must be >= 1")
        if n == 0:
            raise ValueError(f"{fname}: x has an empty spatial dim {i} (size 0)")
        out_size.append(L)
        ops.append(op)

    if bias is not None and bias.shape != (Cout,):
        raise ValueError(f"{fname}: bias must have shape ({Cout},) (one per output channel: "
                         f"{cog_where}={Cog} x groups={groups}), got {bias.shape}")
    conv = ConvSpec(
        fname=fname, nd=nd, layout=layout, channels_last=channels_last, batched=batched,
        N=N, C=Cout, O=Cin, groups=groups, in_size=tuple(out_size), kernel=kernel,
        stride=stride, dilation=dilation, pads=pads, padding_mode="zeros",
        out_size=in_size, dtype=dtype, has_bias=bias is not None)
    return TransposeSpec(fname=fname, conv=conv, output_padding=tuple(ops)), x, weight, bias


def transpose_grad_input_spec(fname, nd, grad_out, weight, input_shape, stride, padding,
                              output_padding, groups, dilation, layout, algorithm):
    """conv_transposeNd_grad_input. Returns (tspec, grad_out, weight)."""
    _check_algorithm(fname, algorithm)
    grad_out = as_array(fname, "grad_out", grad_out)
    weight = as_array(fname, "weight", weight)
    dtype = compute_dtype(fname, [("grad_out", grad_out), ("weight", weight)])
    input_shape = _shape_arg(fname, "input_shape", input_shape, (nd + 1, nd + 2))
    tspec, _, _, _ = transpose_spec(fname, nd, _dummy(input_shape, dtype), weight, None,
                                    stride, padding, output_padding, groups, dilation, layout,
                                    algorithm)
    _check_transpose_grad_out(tspec, grad_out)
    return tspec, grad_out, weight


def transpose_grad_weight_spec(fname, nd, x, grad_out, weight_shape, stride, padding,
                               output_padding, groups, dilation, layout, algorithm):
    """conv_transposeNd_grad_weight. Returns (tspec, x, grad_out)."""
    _check_algorithm(fname, algorithm)
    x = as_array(fname, "x", x)
    grad_out = as_array(fname, "grad_out", grad_out)
    dtype = compute_dtype(fname, [("x", x), ("grad_out", grad_out)])
    weight_shape = _shape_arg(fname, "weight_shape", weight_shape, (nd + 2,))
    tspec, x, _, _ = transpose_spec(fname, nd, x, _dummy(weight_shape, dtype), None, stride,
                                    padding, output_padding, groups, dilation, layout,
                                    algorithm)
    _check_transpose_grad_out(tspec, grad_out)
    return tspec, x, grad_out


def transpose_backward_spec(fname, nd, grad_out, x, weight, stride, padding, output_padding,
                            groups, dilation, layout, need):
    """conv_transposeNd_backward. Returns (tspec, grad_out, x, weight, need)."""
    need = check_need(fname, need)
    grad_out = as_array(fname, "grad_out", grad_out)
    tspec, x, weight, _ = transpose_spec(fname, nd, x, weight, None, stride, padding,
                                         output_padding, groups, dilation, layout, "auto")
    dtype = compute_dtype(fname, [("grad_out", grad_out), ("x", x), ("weight", weight)])
    if dtype != tspec.conv.dtype:
        tspec = _replace(tspec, conv=_replace(tspec.conv, dtype=dtype))
    _check_transpose_grad_out(tspec, grad_out)
    return tspec, grad_out, x, weight, need


def _check_transpose_grad_out(tspec, grad_out):
    want = tspec.out_shape
    if grad_out.shape != want:
        c = tspec.conv
        raise ValueError(
            f"{tspec.fname}: grad_out has shape {grad_out.shape}, expected {want} (the "
            f"transposed output for input spatial size {c.out_size}, kernel {c.kernel}, stride "
            f"{c.stride}, padding {c.pads}, output_padding {tspec.output_padding}, dilation "
            f"{c.dilation})")
