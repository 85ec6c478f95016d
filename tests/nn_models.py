"""Reference architectures for the cconv.nn tests, built twice: with cconv.nn and (when
installed) with torch.nn, with the same module names, so state_dicts are interchangeable."""
import numpy as np

from cconv import nn

CIFAR_WIDTHS = (32, 64, 128)


def cifar_cnn(in_channels=3, num_classes=10, widths=CIFAR_WIDTHS, *, layout=None,
              dtype=np.float32, rng=None):
    """The classic small CIFAR-10 CNN: three stages of two conv3x3-BN-ReLU blocks, each
    stage followed by a 2x2 max-pool, then global average pool and a linear classifier.
    3->32->32 pool ->64->64 pool ->128->128 pool, GAP, linear 10: 289,194 parameters."""
    rng = rng if rng is not None else np.random.default_rng(0)
    layers = []
    c = in_channels
    for w in widths:
        for _ in range(2):
            layers += [nn.Conv2d(c, w, 3, padding=1, layout=layout, dtype=dtype, rng=rng),
                       nn.BatchNorm2d(w, layout=layout, dtype=dtype), nn.ReLU()]
            c = w
        layers.append(nn.MaxPool2d(2, layout=layout))
    layers += [nn.AdaptiveAvgPool2d(1, layout=layout), nn.Flatten(),
               nn.Linear(c, num_classes, dtype=dtype, rng=rng)]
    return nn.Sequential(*layers)


def torch_cifar_cnn(in_channels=3, num_classes=10, widths=CIFAR_WIDTHS):
    import torch.nn as tnn
    layers = []
    c = in_channels
    for w in widths:
        for _ in range(2):
            layers += [tnn.Conv2d(c, w, 3, padding=1), tnn.BatchNorm2d(w), tnn.ReLU()]
            c = w
        layers.append(tnn.MaxPool2d(2))
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c, num_classes)]
    return tnn.Sequential(*layers)


def residual_block(cin, cout, stride, *, layout=None, dtype=np.float64, rng=None):
    """ResNet basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); the shortcut
    is conv1x1-BN when the shape changes."""
    rng = rng if rng is not None else np.random.default_rng(1)
    kw = dict(layout=layout, dtype=dtype)
    body = nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False, rng=rng, **kw), nn.BatchNorm2d(cout, **kw),
        nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False, rng=rng, **kw),
        nn.BatchNorm2d(cout, **kw))
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False, rng=rng, **kw),
                                 nn.BatchNorm2d(cout, **kw))
    return nn.Sequential(block=nn.Residual(body, shortcut), act=nn.ReLU())


def torch_residual_block(cin, cout, stride):
    import torch.nn as tnn

    class Residual(tnn.Module):
        def __init__(self, body, shortcut=None):
            super().__init__()
            self.body = body
            self.shortcut = shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    body = tnn.Sequential(
        tnn.Conv2d(cin, cout, 3, stride, 1, bias=False), tnn.BatchNorm2d(cout), tnn.ReLU(),
        tnn.Conv2d(cout, cout, 3, 1, 1, bias=False), tnn.BatchNorm2d(cout))
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False),
                                  tnn.BatchNorm2d(cout))
    from collections import OrderedDict
    return tnn.Sequential(OrderedDict(block=Residual(body, shortcut), act=tnn.ReLU()))
