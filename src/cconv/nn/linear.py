"""Linear, Flatten, Dropout, Identity."""
import math

import numpy as np

from . import init
from .module import Module, _dtype


class Linear(Module):
    """y = x @ weight.T + bias; weight (out_features, in_features) as in PyTorch, default
    init U(-1/sqrt(in), 1/sqrt(in)) for both (kaiming_uniform_(a=sqrt(5)))."""

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = _dtype(dtype)
        self._add_param("weight", np.empty((out_features, in_features), self.dtype))
        if bias:
            self._add_param("bias", np.empty(out_features, self.dtype))
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        rng = rng if rng is not None else np.random.default_rng()
        init.kaiming_uniform_(self.params["weight"], a=math.sqrt(5), rng=rng)
        if "bias" in self.params:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0
            init.uniform_(self.params["bias"], -bound, bound, rng=rng)
        self.version += 1

    def forward(self, x):
        x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input has {x.shape[-1]} features (last dim of shape "
                             f"{x.shape}) but in_features={self.in_features}")
        self._x = x
        y = x @ self.params["weight"].T
        if "bias" in self.params:
            y += self.params["bias"]
        return y

    def backward(self, grad_out):
        g = np.asarray(grad_out, dtype=self.dtype)
        x = self._x
        g2 = g.reshape(-1, self.out_features)
        self.grads["weight"] += g2.T @ x.reshape(-1, self.in_features)
        if "bias" in self.params:
            self.grads["bias"] += g2.sum(axis=0)
        if not self.need_input_grad:
            return None
        return g @ self.params["weight"]

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={'bias' in self.params}")


class Flatten(Module):
    """Flatten dims start_dim..end_dim (default: all but the batch), as ``nn.Flatten``.
    After a channels-last layer the order is (H, W, C), not PyTorch's (C, H, W): a Linear
    after it only matches PyTorch's weights when the spatial size is 1x1 (e.g. after a
    global average pool)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        x = np.asarray(x)
        self._shape = x.shape
        s = self.start_dim % x.ndim
        e = self.end_dim % x.ndim
        return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:])

    def backward(self, grad_out):
        return np.asarray(grad_out).reshape(self._shape)


class Dropout(Module):
    """Zero each element with probability p in training and scale the rest by 1/(1-p);
    identity in eval. ``rng``: np.random.Generator for the masks."""

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng()
        self._scale = None

    def forward(self, x):
        x = np.asarray(x)
        if not self.training or self.p == 0:
            self._scale = None
            return x
        if self.p == 1:
            self._scale = np.zeros_like(x)
        else:
            keep = self.rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32
                                   else np.float64) >= self.p
            self._scale = keep * x.dtype.type(1 / (1 - self.p))
        return x * self._scale

    def backward(self, grad_out):
        g = np.asarray(grad_out)
        return g if self._scale is None else g * self._scale

    def extra_repr(self):
        return f"p={self.p}"


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, grad_out):
        return grad_out
