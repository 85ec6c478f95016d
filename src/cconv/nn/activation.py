"""Element-wise activations (vectorised NumPy)."""
import math

import numpy as np

from .. import _layers
from .._threads import get_num_threads
from .module import Module

_erf_py = np.frompyfunc(math.erf, 1, 1)
_scipy_erf = None


def _erf_fallback(x):
    x = np.asarray(x)
    if x.dtype == np.float32:
        # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32's resolution)
        s = np.sign(x)
        a = np.abs(x)
        t = 1.0 / (1.0 + 0.3275911 * a)
        y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t
                    - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
        return (s * y).astype(np.float32)
    return _erf_py(x).astype(x.dtype)


def _erf(x):
    """Exact erf from SciPy when it is installed (not a dependency), imported on first use:
    importing SciPy at `import cconv` would cost ~0.2 s and load another BLAS thread pool."""
    global _scipy_erf
    if _scipy_erf is None:
        try:
            from scipy.special import erf
        except ImportError:  # pragma: no cover
            erf = _erf_fallback
        _scipy_erf = erf
    return _scipy_erf(x)


class ReLU(Module):
    """max(x, 0); the gradient is passed where x > 0 (PyTorch's rule). float32/float64
    run in one threaded pass (cconv._layers) that keeps the output, not a mask: the
    output is > 0 exactly where the input is."""

    def forward(self, x):
        x = np.asarray(x)
        if x.dtype in (np.float32, np.float64):
            xc = np.ascontiguousarray(x)
            y = np.empty(xc.shape, xc.dtype)
            if y.size:
                _layers.relu_forward(xc.reshape(-1), y.reshape(-1), get_num_threads())
            self._y, self._mask = y, None
            return y
        self._y, self._mask = None, x > 0
        return np.maximum(x, 0)

    def backward(self, grad_out):
        g = np.asarray(grad_out)
        if self._y is not None and g.dtype == self._y.dtype and g.shape == self._y.shape:
            gc = np.ascontiguousarray(g)
            dx = np.empty(gc.shape, gc.dtype)
            if dx.size:
                _layers.relu_backward(gc.reshape(-1), self._y.reshape(-1), dx.reshape(-1),
                                      get_num_threads())
            return dx
        mask = self._mask if self._y is None else self._y > 0
        return np.where(mask, g, g.dtype.type(0))


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        x = np.asarray(x)
        self._mask = x > 0
        return np.where(self._mask, x, x * x.dtype.type(self.negative_slope))

    def backward(self, grad_out):
        g = np.asarray(grad_out)
        return np.where(self._mask, g, g * g.dtype.type(self.negative_slope))

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class GELU(Module):
    """x * Phi(x) (``approximate="none"``, exact erf) or the tanh approximation
    (``approximate="tanh"``), as PyTorch's ``nn.GELU``."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        x = np.asarray(x)
        self._x = x
        t = x.dtype.type
        if self.approximate == "tanh":
            k = t(math.sqrt(2 / math.pi))
            self._th = np.tanh(k * (x + t(0.044715) * x * x * x))
            return t(0.5) * x * (t(1) + self._th)
        self._cdf = t(0.5) * (t(1) + _erf(x * t(1 / math.sqrt(2))))
        return x * self._cdf

    def backward(self, grad_out):
        g = np.asarray(grad_out)
        x = self._x
        t = x.dtype.type
        if self.approximate == "tanh":
            k = t(math.sqrt(2 / math.pi))
            th = self._th
            d = t(0.5) * (t(1) + th) + t(0.5) * x * (t(1) - th * th) * k * \
                (t(1) + t(3 * 0.044715) * x * x)
        else:
            pdf = np.exp(t(-0.5) * x * x) * t(1 / math.sqrt(2 * math.pi))
            d = self._cdf + x * pdf
        return g * d

    def extra_repr(self):
        return f"approximate={self.approximate!r}"
