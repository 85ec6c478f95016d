"""Batch normalisation, PyTorch's exact semantics.

Training: normalise with the batch mean and the BIASED batch variance; update
``running_mean`` / ``running_var`` with ``momentum`` (``running = (1 - m) * running + m *
stat``; ``momentum=None``: cumulative average) using the UNBIASED variance
(``var * n / (n - 1)``); ``num_batches_tracked += 1``. Eval: normalise with the running
statistics (or batch statistics if ``track_running_stats=False``).

For ``backward``, the forward keeps a reference to its input (as PyTorch saves it and
as the conv layers keep theirs), not a normalised copy: changing that array in place
between ``forward`` and ``backward`` changes the gradients.
"""
import numpy as np

from .conv import _CHANNELS_LAST, _CHANNELS_FIRST
from .. import _layers
from .._threads import get_num_threads
from .module import Module, _dtype


class _BatchNorm(Module):
    _ndims = (4,)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, layout=None, dtype=np.float32):
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if layout is not None and layout not in _CHANNELS_LAST + _CHANNELS_FIRST:
            raise ValueError(f"{type(self).__name__}: layout={layout!r} is not a known "
                             f"layout ({_CHANNELS_FIRST + _CHANNELS_LAST})")
        self.channels_last = layout in _CHANNELS_LAST
        self.dtype = _dtype(dtype)
        C = self.num_features
        if affine:
            self._add_param("weight", np.ones(C, self.dtype))
            self._add_param("bias", np.zeros(C, self.dtype))
        if track_running_stats:
            self.buffers["running_mean"] = np.zeros(C, self.dtype)
            self.buffers["running_var"] = np.ones(C, self.dtype)
            self.buffers["num_batches_tracked"] = np.zeros((), np.int64)
        self._cache = None
        self._saved_input = None

    @property
    def running_mean(self):
        return self.buffers.get("running_mean")

    @property
    def running_var(self):
        return self.buffers.get("running_var")

    @property
    def num_batches_tracked(self):
        return self.buffers.get("num_batches_tracked")

    def _axis(self, x):
        name = type(self).__name__
        if x.ndim not in self._ndims:
            raise ValueError(f"{name}: expected a {' or '.join(map(str, self._ndims))}-D "
                             f"input, got shape {x.shape}")
        axis = x.ndim - 1 if (self.channels_last and x.ndim > 2) else 1
        if x.shape[axis] != self.num_features:
            raise ValueError(f"{name}: input has {x.shape[axis]} channels (axis {axis}) but "
                             f"num_features={self.num_features}")
        return axis

    def _csum(self, a, axis):
        """Per-channel sum, contiguous inner reductions (pairwise summation)."""
        C = a.shape[axis]
        if axis == a.ndim - 1:
            return a.reshape(-1, C).sum(axis=0)
        return a.reshape(a.shape[0], C, -1).sum(axis=2).sum(axis=0)

    def forward(self, x):
        x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        axis = self._axis(x)
        C = self.num_features
        bshape = [1] * x.ndim
        bshape[axis] = C
        n = x.size // C if C else 0
        batch = self.training or not self.track_running_stats
        self._saved_input = None
        if batch and n <= 1 and self.training:
            raise ValueError(f"{type(self).__name__}: expected more than 1 value per "
                             f"channel in training, got input shape {x.shape}")
        if batch and self.affine and x.dtype in (np.float32, np.float64) and x.size:
            return self._forward_fast(x, axis, tuple(bshape), n)
        if not batch and x.dtype in (np.float32, np.float64) and x.size:
            return self._forward_fixed(x, axis, tuple(bshape), n)
        if batch:
            mean = self._csum(x, axis) / n
            xc = x - mean.reshape(bshape)
            var = self._csum(xc * xc, axis) / n  # biased
            if self.training and self.track_running_stats:
                nbt = self.buffers["num_batches_tracked"]
                nbt += 1
                f = (1.0 / float(nbt)) if self.momentum is None else float(self.momentum)
                rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
                rm *= 1 - f
                rm += f * mean
                rv *= 1 - f
                rv += f * var * (n / (n - 1))
        else:
            mean = self.buffers["running_mean"]
            var = self.buffers["running_var"]
            xc = x - mean.reshape(bshape)
        inv = (1.0 / np.sqrt(var + self.eps)).astype(self.dtype)
        xhat = xc
        xhat *= inv.reshape(bshape)
        if self.affine:
            y = xhat * self.params["weight"].reshape(bshape)
            y += self.params["bias"].reshape(bshape)
        else:
            y = xhat.copy()
        self._cache = (xhat, inv, batch, axis, tuple(bshape), n)
        return y

    def _view3(self, a, axis):
        """(A, C, B) view: channels-first (N, C, spatial) or channels-last (rows, C)."""
        C = self.num_features
        if axis == a.ndim - 1:
            return a.reshape(-1, C, 1)
        return a.reshape(a.shape[0], C, -1)

    def _forward_fast(self, x, axis, bshape, n):
        # batch statistics and normalisation in threaded passes (cconv._layers), sums in
        # float64 over fixed blocks, so the result does not depend on the thread count
        x = np.ascontiguousarray(x)
        C = self.num_features
        y = np.empty(x.shape, x.dtype)
        mc = np.empty(C, x.dtype)
        mean = np.empty(C, np.float64)
        var = np.empty(C, np.float64)
        inv = np.empty(C, x.dtype)
        _layers.bn_train_forward(self._view3(x, axis), self.params["weight"],
                                 self.params["bias"], float(self.eps), self._view3(y, axis),
                                 mc, mean, var, inv, get_num_threads())
        if self.training and self.track_running_stats:
            nbt = self.buffers["num_batches_tracked"]
            nbt += 1
            f = (1.0 / float(nbt)) if self.momentum is None else float(self.momentum)
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            rm *= 1 - f
            rm += (f * mean).astype(rm.dtype)
            rv *= 1 - f
            rv += (f * var * (n / (n - 1))).astype(rv.dtype)
        # backward recomputes xhat = (x - mc) * inv from the input (as PyTorch saves the
        # input): one activation-sized array less per layer, and a forward that no longer
        # writes it (CIFAR CNN training step: see the README)
        self._cache = (None, inv, True, axis, bshape, n)
        self._saved_input = (x, mc)
        return y

    def _forward_fixed(self, x, axis, bshape, n):
        # fixed (running) statistics: one pass y = x * a + b with a = gamma / sqrt(var +
        # eps), b = beta - mean * a, as PyTorch's CPU eval kernel folds them. xhat is not
        # stored: backward recomputes it from the saved input (as PyTorch saves the input)
        x = np.ascontiguousarray(x)
        mean = self.buffers["running_mean"].astype(np.float64)
        inv64 = 1.0 / np.sqrt(self.buffers["running_var"].astype(np.float64) + self.eps)
        a64 = inv64 * self.params["weight"] if self.affine else inv64
        b64 = (self.params["bias"] - mean * a64) if self.affine else -mean * a64
        y = np.empty(x.shape, x.dtype)
        _layers.bn_affine(self._view3(x, axis), a64.astype(x.dtype), b64.astype(x.dtype),
                          self._view3(y, axis), get_num_threads())
        self._cache = (None, inv64.astype(x.dtype), False, axis, bshape, n)
        self._saved_input = (x, mean.astype(x.dtype))
        return y

    def backward(self, grad_out):
        xhat, inv, batch, axis, bshape, n = self._cache
        g = np.asarray(grad_out, dtype=self.dtype)
        if xhat is None and batch:  # batch-statistics fast forward (_forward_fast)
            x, mc = self._saved_input
            g = np.ascontiguousarray(g)
            C = self.num_features
            dgamma = np.empty(C, x.dtype)
            dbeta = np.empty(C, x.dtype)
            dx = np.empty(g.shape, g.dtype) if self.need_input_grad else None
            scale = (self.params["weight"] * inv).astype(x.dtype)
            _layers.bn_train_backward(self._view3(g, axis), self._view3(x, axis), mc, inv,
                                      scale, dgamma, dbeta,
                                      self._view3(dx if dx is not None else g, axis),
                                      dx is not None, get_num_threads())
            self.grads["weight"] += dgamma
            self.grads["bias"] += dbeta
            return dx
        if xhat is None:  # eval-mode fast forward: xhat from the saved input
            x, mean = self._saved_input
            xhat = (x - mean.reshape(bshape)) * inv.reshape(bshape)
        dbeta = self._csum(g, axis)
        dgamma = self._csum(g * xhat, axis)
        if self.affine:
            self.grads["weight"] += dgamma
            self.grads["bias"] += dbeta
            gamma = self.params["weight"]
        else:
            gamma = np.ones(self.num_features, self.dtype)
        if not self.need_input_grad:
            return None
        scale = (gamma * inv).reshape(bshape)
        if not batch:  # running statistics are constants
            return g * scale
        dx = xhat * (dgamma / n).reshape(bshape)
        dx += (dbeta / n).reshape(bshape)
        np.subtract(g, dx, out=dx)
        dx *= scale
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs (``layout="NLC"``: (N, L, C))."""
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs (``layout="NHWC"``: (N, H, W, C))."""
    _ndims = (4,)
