"""Optimizers: update parameter arrays in place from the gradients beside them.

``params``: the ``(param, grad)`` pairs of ``model.parameters()`` (or a Module, or
a list of dicts ``{"params": pairs, "lr": ...}`` for per-group settings). The update
rules are PyTorch's (``torch.optim.SGD`` / ``Adam`` / ``AdamW``, single-tensor path).
After a step every layer whose parameters changed gets ``version += 1`` (the pairs from
``parameters()`` carry their owner), so conv layers repack their cached weights.
"""
import math

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    def __init__(self, params, defaults):
        if hasattr(params, "parameters"):
            params = params.parameters()
        params = list(params)
        if params and isinstance(params[0], dict):
            groups = params
        else:
            groups = [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups = []
        for g in groups:
            g = dict(g)
            pairs = list(g["params"].parameters() if hasattr(g["params"], "parameters")
                         else g["params"])
            for p in pairs:
                if len(p) != 2:
                    raise TypeError(f"{type(self).__name__}: params must be (param, grad) "
                                    f"pairs, got {p!r}")
            g["params"] = pairs
            for k, v in self.defaults.items():
                g.setdefault(k, v)
            self.param_groups.append(g)
        self.state = {}  # id(param) -> dict

    def zero_grad(self):
        for g in self.param_groups:
            for _, grad in g["params"]:
                grad[...] = 0

    def _bump(self):
        seen = set()
        for g in self.param_groups:
            for pr in g["params"]:
                owner = getattr(pr, "owner", None)
                if owner is not None and id(owner) not in seen:
                    seen.add(id(owner))
                    owner.version += 1

    def step(self):
        for g in self.param_groups:
            for p, grad in g["params"]:
                self._update(p, grad, self.state.setdefault(id(p), {}), g)
        self._bump()

    def _update(self, p, grad, state, group):
        raise NotImplementedError


class SGD(Optimizer):
    """PyTorch's SGD: ``d = g + wd * p``; with momentum ``buf = d`` on the first step,
    then ``buf = momentum * buf + (1 - dampening) * d``; ``d = d + momentum * buf``
    (nesterov) or ``d = buf``; ``p -= lr * d`` (``maximize`` negates g)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, "
                             f"{momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _update(self, p, grad, state, group):
        t = p.dtype.type
        d = -grad if group["maximize"] else grad
        wd, mom = group["weight_decay"], group["momentum"]
        if wd:
            d = d + t(wd) * p
        if mom:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d, dtype=p.dtype, copy=True)
            else:
                buf *= t(mom)
                buf += t(1 - group["dampening"]) * d
            d = d + t(mom) * buf if group["nesterov"] else buf
        p -= t(group["lr"]) * d


class Adam(Optimizer):
    """PyTorch's Adam (L2 ``weight_decay`` added to the gradient; ``amsgrad``)."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{type(self).__name__}: invalid lr={lr}, eps={eps} or "
                             f"betas={betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _update(self, p, grad, state, group):
        t = p.dtype.type
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if wd:
            if self._decoupled:
                p *= t(1 - lr * wd)
            else:
                g = g + t(wd) * p
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p)
            state["exp_avg_sq"] = np.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p)
        state["step"] += 1
        step = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (g - m) * t(1 - b1)          # lerp, as torch
        v *= t(b2)
        v += t(1 - b2) * g * g
        bc1 = 1 - b1 ** step
        bc2_sqrt = math.sqrt(1 - b2 ** step)
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = np.sqrt(v) / t(bc2_sqrt) + t(eps)
        p -= t(lr / bc1) * m / denom


class AdamW(Adam):
    """PyTorch's AdamW: decoupled weight decay ``p *= 1 - lr * weight_decay`` before the
    Adam update (default weight_decay=0.01)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
