"""Losses: ``forward(pred, target) -> float`` keeps what ``backward() -> dL/dpred`` needs."""
import numpy as np

from .module import Module


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean' or 'sum', got "
                             f"{reduction!r}")
        self.reduction = reduction

    def __call__(self, pred, target):
        return self.forward(pred, target)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits (N, C) or (N, C, d1, ...), as ``nn.CrossEntropyLoss``.
    ``target``: class indices (N,) / (N, d1, ...) or class probabilities with the logits'
    shape. ``label_smoothing`` mixes the target with the uniform distribution.
    ``reduction="mean"`` averages over N * d1 * ... elements; "sum" sums."""

    def __init__(self, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.label_smoothing = float(label_smoothing)

    def forward(self, pred, target):
        z = np.asarray(pred)
        if z.dtype.kind != "f":
            z = z.astype(np.float64)
        if z.ndim < 2:
            raise ValueError(f"CrossEntropyLoss: logits must be (N, C, ...), got {z.shape}")
        C = z.shape[1]
        zl = np.moveaxis(z, 1, -1).reshape(-1, C)
        t = np.asarray(target)
        if t.dtype.kind in "iu":
            idx = t.reshape(-1)
            if idx.shape[0] != zl.shape[0]:
                raise ValueError(f"CrossEntropyLoss: target shape {t.shape} does not match "
                                 f"logits {z.shape}")
            if idx.size and (idx.min() < 0 or idx.max() >= C):
                raise ValueError(f"CrossEntropyLoss: class index out of range [0, {C})")
            td = np.zeros_like(zl)
            td[np.arange(idx.shape[0]), idx] = 1
        else:
            if t.shape != z.shape:
                raise ValueError(f"CrossEntropyLoss: probability target shape {t.shape} must "
                                 f"equal the logits' {z.shape}")
            td = np.moveaxis(t.astype(z.dtype), 1, -1).reshape(-1, C)
        eps = self.label_smoothing
        if eps:
            td = td * z.dtype.type(1 - eps) + z.dtype.type(eps / C)
        m = zl.max(axis=1, keepdims=True)
        e = np.exp(zl - m)
        s = e.sum(axis=1, keepdims=True)
        logp = zl - m - np.log(s)
        per = -(td * logp).sum(axis=1)
        n = zl.shape[0]
        div = n if self.reduction == "mean" else 1
        p = e / s
        grad = (p * td.sum(axis=1, keepdims=True) - td) / z.dtype.type(max(div, 1))
        shape_l = (z.shape[0],) + z.shape[2:] + (C,)
        self._grad = np.ascontiguousarray(np.moveaxis(grad.reshape(shape_l), -1, 1))
        if n == 0:
            return float("nan") if self.reduction == "mean" else 0.0
        return float(per.sum() / div)

    def backward(self, grad_out=1.0):
        return self._grad * self._grad.dtype.type(grad_out)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class MSELoss(_Loss):
    """mean((pred - target)^2) (or the sum with ``reduction="sum"``)."""

    def forward(self, pred, target):
        p = np.asarray(pred)
        if p.dtype.kind != "f":
            p = p.astype(np.float64)
        d = p - np.asarray(target, dtype=p.dtype)
        div = d.size if self.reduction == "mean" else 1
        self._grad = d * p.dtype.type(2.0 / max(div, 1))
        return float(np.vdot(d, d) / div)

    def backward(self, grad_out=1.0):
        return self._grad * self._grad.dtype.type(grad_out)
