"""Algorithm choice: "auto" is resolved here and only here."""
import enum

import numpy as np


class Algorithm(enum.Enum):
    DIRECT = "direct"
    IM2COL = "im2col"
    DEPTHWISE = "depthwise"  # direct depthwise kernels (groups == C), _depthwise.pyx


# Algorithms the library names but does not implement yet: asking for them is a clear
# ValueError, not a silent fallback.
_NOT_YET = {"winograd": "3x3 / 3-tap stride-1 Winograd", "fft": "FFT convolution"}


def choose_forward(spec, algorithm):
    """Return the Algorithm that will run `spec`."""
    if algorithm in _NOT_YET:
        raise ValueError(
            f"{spec.fname}: algorithm={algorithm!r} ({_NOT_YET[algorithm]}) is not available "
            "in this version of cconv; use 'auto', 'direct', 'im2col' or 'depthwise'"
        )
    if algorithm == "depthwise":
        if not is_depthwise(spec):
            raise ValueError(
                f"{spec.fname}: algorithm='depthwise' needs groups == input channels "
                f"(one input channel per group), got groups={spec.groups} with "
                f"C={spec.C} channels ({spec.Cg} per group)"
            )
        return Algorithm.DEPTHWISE
    if algorithm == "direct" and is_depthwise(spec):
        # the dedicated depthwise kernels are the direct algorithm for these problems
        return Algorithm.DEPTHWISE
    if algorithm != "auto":
        return Algorithm(algorithm)
    return _auto_forward(spec)


def is_depthwise(spec):
    """One input channel per group (groups == C), any channel multiplier O / C."""
    return spec.C >= 1 and spec.groups == spec.C


def _auto_forward(spec):
    # Depthwise problems (one input channel per group) do almost no work per GEMM:
    # the dedicated direct kernels, vectorised along W / C, beat a GEMM per group.
    if is_depthwise(spec) and spec.groups > 1:
        return Algorithm.DEPTHWISE
    return Algorithm.IM2COL


def choose_backward(spec, algorithm):
    """The Algorithm for grad_input / grad_weight of the convolution `spec`
    (also a transposed convolution's forward): "im2col" is GEMM + col2im / an
    implicit-GEMM reduction; "direct" is the depthwise loop nest (one input channel per
    group only). "auto" takes "direct" for depthwise-style problems."""
    depthwise = spec.Cg == 1
    if algorithm == "direct":
        if not depthwise:
            raise ValueError(
                f"{spec.fname}: algorithm='direct' computes backward passes only for "
                f"depthwise-style problems (one input channel per group), this one has "
                f"{spec.Cg} (C={spec.C}, groups={spec.groups}); use 'auto' or 'im2col'")
        return Algorithm.DIRECT
    if algorithm == "im2col":
        return Algorithm.IM2COL
    return Algorithm.DIRECT if depthwise and spec.groups > 1 else Algorithm.IM2COL


def explain(spec, algorithm="auto"):
    """A short description of what would run: algorithm, MACs, workspace bound."""
    algo = choose_forward(spec, algorithm)
    k = int(np.prod(spec.kernel))
    return {
        "algorithm": algo.value,
        "macs": spec.macs,
        "gemm_shape_per_group": (
            (int(np.prod(spec.out_size)), spec.Og, spec.Cg * k) if spec.channels_last
            else (spec.Og, int(np.prod(spec.out_size)), spec.Cg * k)
        ),
        "groups": spec.groups,
    }
