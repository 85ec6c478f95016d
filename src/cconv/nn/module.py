"""Module: the base class of every cconv.nn layer (autograd-free, PyTorch-shaped)."""
import numpy as np

from .._memory import cached_arrays


class ParamRef(tuple):
    """A ``(param, grad)`` pair (it unpacks as one) that also names its owner layer
    (``.owner``) and key (``.name``), so an optimizer can bump ``owner.version`` after
    it updates ``param`` in place (the layer then repacks its cached weights)."""

    def __new__(cls, param, grad, owner=None, name=None):
        self = tuple.__new__(cls, (param, grad))
        self.owner = owner
        self.name = name
        return self


def _dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"cconv.nn: dtype must be float32 or float64, got {dt}")
    return dt


class Module:
    """Base class.

    * ``forward(x)`` / ``layer(x)`` computes the output and keeps what ``backward`` needs.
    * ``backward(grad_out) -> grad_in`` ADDS parameter gradients into ``self.grads``.
    * ``params`` / ``grads``: dicts with the same keys; ``buffers``: non-trained state
      (BatchNorm's running statistics) that goes into the state_dict.
    * Children are registered by assigning a Module to an attribute (or via
      ``add_module``); their names form the state_dict keys ("0.weight",
      "block1.1.running_mean", ...), exactly like PyTorch.
    * ``version``: an int bumped whenever the parameters change (optimizer step,
      ``load_state_dict``, ``mark_changed()``); layers key cached weight transforms on it.
    """

    def __init__(self):
        object.__setattr__(self, "_children", {})
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.training = True
        self.version = 0
        # False: backward may skip the gradient w.r.t. the input (e.g. the first layer
        # of a network) and return None.
        self.need_input_grad = True

    # ------------------------------------------------------------------ children
    def __setattr__(self, name, value):
        if isinstance(value, Module) and name not in ("_cached_owner",):
            self.__dict__.setdefault("_children", {})[name] = value
        elif name in self.__dict__.get("_children", {}):
            del self._children[name]
        object.__setattr__(self, name, value)

    def add_module(self, name, module):
        name = str(name)
        if not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} is not a cconv.nn.Module: {module!r}")
        self._children[name] = module
        object.__setattr__(self, name, module)

    def named_children(self):
        return iter(self._children.items())

    def children(self):
        return iter(self._children.values())

    def modules(self):
        yield self
        for c in self._children.values():
            yield from c.modules()

    def named_modules(self, prefix=""):
        yield prefix, self
        for n, c in self._children.items():
            yield from c.named_modules(f"{prefix}.{n}" if prefix else n)

    def _receptive_children(self):
        return list(self._children.values())

    # ------------------------------------------------------------------ running
    def __init_subclass__(cls, **kwargs):
        # each layer's forward / backward (and a loss's __call__) allocates its arrays from
        # the array cache (cconv._memory), as the functional API does
        super().__init_subclass__(**kwargs)
        for name in ("forward", "backward", "__call__"):
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "_cconv_cached_arrays", False):
                wrapped = cached_arrays(fn)
                wrapped._cconv_cached_arrays = True
                setattr(cls, name, wrapped)

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def _add_param(self, name, value):
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)

    def _accumulate(self, name, g):
        self.grads[name] += g

    # ------------------------------------------------------------------ parameters
    def named_parameters(self, prefix=""):
        """Yield ``(name, param, grad)`` in definition order (own parameters first, then
        children's, as PyTorch's ``named_parameters``)."""
        for k, p in self.params.items():
            yield (f"{prefix}{k}", p, self.grads[k])
        for n, c in self._children.items():
            yield from c.named_parameters(f"{prefix}{n}.")

    def parameters(self):
        """Yield ``(param, grad)`` pairs (ParamRef: they also carry ``.owner``)."""
        for k, p in self.params.items():
            yield ParamRef(p, self.grads[k], self, k)
        for c in self._children.values():
            yield from c.parameters()

    def zero_grad(self):
        for m in self.modules():
            for g in m.grads.values():
                g[...] = 0

    def train(self, mode=True):
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def mark_changed(self):
        """Tell the layer (and its children) that its parameters were edited in place, so
        cached weight transforms are rebuilt on the next forward. Replacing a param
        array by another object, or changing its shape or dtype, is detected
        without this call; an in-place edit (``w[...] = ...``, ``w *= 2``) is not."""
        for m in self.modules():
            m.version += 1

    # ------------------------------------------------------------------ state
    def _state_param(self, name, value):
        """The array a parameter has in the state_dict (PyTorch layout). Conv layers in a
        channels-last layout override this."""
        return value

    def _load_param(self, name, value):
        """Convert a state_dict array (PyTorch layout) to this layer's storage layout."""
        return value

    def state_dict(self, prefix=""):
        """A dict of NumPy arrays with PyTorch's key names and layouts (copies)."""
        out = {}
        for k, p in self.params.items():
            out[prefix + k] = np.array(self._state_param(k, p))
        for k, b in self.buffers.items():
            out[prefix + k] = np.array(b)
        for n, c in self._children.items():
            out.update(c.state_dict(f"{prefix}{n}."))
        return out

    def _expected_keys(self, prefix=""):
        keys = [prefix + k for k in self.params] + [prefix + k for k in self.buffers]
        for n, c in self._children.items():
            keys += c._expected_keys(f"{prefix}{n}.")
        return keys

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` (PyTorch key names and layouts, e.g.
        ``{k: v.numpy() for k, v in torch_model.state_dict().items()}``) into the
        parameters and buffers, in place (the arrays keep their identity, so optimizers
        built on ``parameters()`` stay valid). With ``strict`` every key must match.
        Bumps ``version`` on every layer. Returns ``(missing, unexpected)`` key lists."""
        state = {str(k): v for k, v in dict(state).items()}
        expected = self._expected_keys()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in set(expected)]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys "
                           f"{unexpected}")
        for name, m in self.named_modules():
            pre = f"{name}." if name else ""
            for k, p in m.params.items():
                if pre + k in state:
                    v = m._load_param(k, np.asarray(state[pre + k]))
                    if v.shape != p.shape:
                        raise ValueError(f"load_state_dict: {pre + k} has shape "
                                         f"{np.shape(state[pre + k])}, the layer expects "
                                         f"{m._state_param(k, p).shape}")
                    p[...] = v
            for k, b in m.buffers.items():
                if pre + k in state:
                    v = np.asarray(state[pre + k])
                    if v.shape != b.shape:
                        raise ValueError(f"load_state_dict: {pre + k} has shape {v.shape}, "
                                         f"the layer expects {b.shape}")
                    b[...] = v
            m.version += 1
        return missing, unexpected

    def save(self, path):
        """Save ``state_dict()`` as an ``.npz`` file (PyTorch key names and layouts)."""
        np.savez(path, **self.state_dict())

    def load(self, path, strict=True):
        """Load an ``.npz`` written by :meth:`save` (or any dict of PyTorch-named arrays)."""
        with np.load(path) as f:
            return self.load_state_dict({k: f[k] for k in f.files}, strict=strict)

    # ------------------------------------------------------------------ repr
    def extra_repr(self):
        return ""

    def __repr__(self):
        name = type(self).__name__
        if not self._children:
            return f"{name}({self.extra_repr()})"
        lines = [f"{name}("]
        for n, c in self._children.items():
            sub = repr(c).replace("\n", "\n  ")
            lines.append(f"  ({n}): {sub}")
        lines.append(")")
        return "\n".join(lines)


def count_parameters(model):
    """Number of trainable scalars in ``model`` (buffers such as BatchNorm's running
    statistics are not parameters, as in PyTorch's ``sum(p.numel() for p in
    model.parameters())``)."""
    return int(sum(p.size for _, p, _ in model.named_parameters()))
