"""Sequential and Residual."""
from .module import Module


class Sequential(Module):
    """Layers applied in order. ``Sequential(a, b, c)`` names the children "0", "1", "2";
    ``Sequential(conv=a, bn=b)`` (or one dict argument) uses the given names. State-dict
    keys follow: "0.weight", "block1.1.running_mean", ... Backward runs the children in
    reverse. Indexing, ``len`` and iteration work as in PyTorch."""

    def __init__(self, *layers, **named):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], dict):
            named = dict(layers[0], **named)
            layers = ()
        if layers and named:
            raise TypeError("Sequential: give positional layers or named layers, not both")
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)
        for name, layer in named.items():
            self.add_module(name, layer)

    def append(self, layer):
        self.add_module(str(len(self._children)), layer)
        return self

    def __len__(self):
        return len(self._children)

    def __iter__(self):
        return iter(self._children.values())

    def __getitem__(self, i):
        if isinstance(i, str):
            return self._children[i]
        items = list(self._children.items())
        if isinstance(i, slice):
            return Sequential(dict(items[i]))
        return items[i][1]

    def forward(self, x):
        for layer in self._children.values():
            x = layer(x)
        return x

    def backward(self, grad_out):
        layers = list(self._children.values())
        if layers and not self.need_input_grad:  # propagate "no input gradient" inwards
            layers[0].need_input_grad = False
        g = grad_out
        for layer in reversed(layers):
            g = layer.backward(g)
        return g


class Residual(Module):
    """y = body(x) + shortcut(x); ``shortcut=None`` is the identity. Children "body" and
    (when given) "shortcut"; backward sums the two input gradients."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut
        else:
            self.__dict__["shortcut"] = None

    def _receptive_children(self):
        return [self.body]

    def forward(self, x):
        y = self.body(x)
        s = x if self.shortcut is None else self.shortcut(x)
        return y + s

    def backward(self, grad_out):
        if not self.need_input_grad:
            self.body.need_input_grad = False
        gb = self.body.backward(grad_out)
        if not self.need_input_grad:
            if self.shortcut is not None:
                self.shortcut.need_input_grad = False
                self.shortcut.backward(grad_out)
            return None
        if self.shortcut is None:
            return gb + grad_out
        return gb + self.shortcut.backward(grad_out)
