"""cconv.nn against torch.nn with the same weights: the CIFAR-10 CNN and a ResNet basic
block, forward (train and eval), loss, every gradient, running statistics, SGD with
momentum; the optimizers' update rules; channels-last models from a PyTorch state_dict."""
import numpy as np
import pytest

from cconv import nn, optim
from nn_models import cifar_cnn, residual_block, torch_cifar_cnn, torch_residual_block

torch = pytest.importorskip("torch")

# float64: both sides compute the same maths in double precision; float32: each side
# rounds differently (GEMM order, BN reductions), so relative errors of ~1e-5 are normal.
TOL = {np.float64: 1e-9, np.float32: 2e-4}
# rel_err floor per dtype (see rel_err): the zero-in-exact-arithmetic bias gradients are
# rounding noise, ~1e-17 in float64 and ~1e-6 in float32.
FLOOR = {np.float64: 1e-4, np.float32: 1e-2}


def rel_err(a, b, floor=1e-4):
    """Relative Frobenius error; the floor keeps quantities that are zero in exact
    arithmetic (the bias of a conv followed by BatchNorm has a zero gradient) from
    turning rounding noise into a large relative error."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), floor))


def _randomise_bn(tmodel, gen):
    with torch.no_grad():
        for m in tmodel.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.2, generator=gen)
                m.running_mean.normal_(0, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)


def _compare_model(model, tmodel, x, target, dtype, layout=None, steps=2):
    tol = TOL[dtype]
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tmodel = tmodel.to(tdt)
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    to_model = (lambda a: a.transpose(0, 2, 3, 1)) if layout == "NHWC" else (lambda a: a)
    from_model = (lambda a: a.transpose(0, 3, 1, 2)) if layout == "NHWC" else (lambda a: a)
    tx = torch.tensor(x, dtype=tdt, requires_grad=True)
    tt = torch.tensor(target)
    xm = np.ascontiguousarray(to_model(x.astype(dtype)))
    errs = {}
    floor = FLOOR[dtype]

    # training: forward, loss, backward, every gradient, running statistics
    model.train()
    tmodel.train()
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for step in range(steps):
        model.zero_grad()
        topt.zero_grad()
        out = model(xm)
        tout = tmodel(tx)
        errs[f"logits{step}"] = rel_err(out, tout.detach().numpy())
        loss = loss_fn(out, target)
        tloss = torch.nn.functional.cross_entropy(tout, tt)
        errs[f"loss{step}"] = abs(loss - tloss.item()) / abs(tloss.item())
        gx = model.backward(loss_fn.backward())
        tloss.backward()
        errs[f"grad_x{step}"] = rel_err(from_model(gx), tx.grad.numpy(), floor)
        tx.grad = None
        tgrads = dict(tmodel.named_parameters())
        for name, p, g in model.named_parameters():
            tg = tgrads[name].grad.numpy()
            if layout == "NHWC" and g.ndim == 4:
                g = g.transpose(3, 2, 0, 1)
            errs[f"grad {name} {step}"] = rel_err(g, tg, floor)
        opt.step()
        topt.step()
        sd = model.state_dict()
        for k, v in tmodel.state_dict().items():
            if k.endswith("num_batches_tracked"):
                assert int(sd[k]) == int(v)
            else:
                errs[f"state {k} {step}"] = rel_err(sd[k], v.numpy())
    # eval mode: running statistics
    model.eval()
    tmodel.eval()
    with torch.no_grad():
        errs["eval logits"] = rel_err(model(xm), tmodel(tx).numpy())
    worst = max(errs, key=errs.get)
    assert errs[worst] <= tol, (worst, errs[worst])
    return errs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", [None, "NHWC"])
def test_cifar_cnn_matches_torch(dtype, layout):
    torch.manual_seed(0)
    tmodel = torch_cifar_cnn()
    _randomise_bn(tmodel, torch.Generator().manual_seed(1))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 32, 32))
    target = rng.integers(0, 10, 4)
    model = cifar_cnn(layout=layout, dtype=dtype)
    _compare_model(model, tmodel, x, target, dtype, layout)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cin,cout,stride", [(8, 16, 2), (8, 8, 1)])
def test_residual_block_matches_torch(dtype, cin, cout, stride):
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(cout * (8 // stride) ** 2, 5))
    tblock = torch_residual_block(cin, cout, stride)
    _randomise_bn(tblock, torch.Generator().manual_seed(1))
    tmodel = torch.nn.Sequential(tblock, head)
    model = nn.Sequential(residual_block(cin, cout, stride, dtype=dtype),
                          nn.Sequential(nn.Flatten(), nn.Linear(cout * (8 // stride) ** 2, 5,
                                                                dtype=dtype)))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, cin, 8, 8))
    _compare_model(model, tmodel, x, rng.integers(0, 5, 3), dtype)


@pytest.mark.parametrize("cls,kw", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
])
def test_optimizers_match_torch(cls, kw):
    rng = np.random.default_rng(0)
    p = [rng.standard_normal((4, 3)), rng.standard_normal(5)]
    g = [np.zeros_like(a) for a in p]
    tp = [torch.tensor(a.copy(), requires_grad=True) for a in p]
    opt = getattr(optim, cls)(list(zip(p, g)), **kw)
    topt = getattr(torch.optim, cls)(tp, **kw)
    for _ in range(5):
        for a, b, c in zip(g, tp, p):
            a[...] = rng.standard_normal(a.shape)
            b.grad = torch.tensor(a.copy())
        opt.step()
        topt.step()
    for a, b in zip(p, tp):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,make,tmake,shape", [
    ("MaxPool2d", lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True),
     lambda: torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True), (2, 3, 8, 9)),
    ("MaxPool2d-dil", lambda: nn.MaxPool2d(2, 1, dilation=2),
     lambda: torch.nn.MaxPool2d(2, 1, dilation=2), (2, 3, 6, 7)),
    ("AvgPool2d", lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
     lambda: torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 8, 9)),
    ("AvgPool2d-incl", lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True),
     lambda: torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True), (2, 3, 8, 9)),
    ("Adaptive", lambda: nn.AdaptiveAvgPool2d((3, 4)), lambda: torch.nn.AdaptiveAvgPool2d((3, 4)),
     (2, 3, 7, 9)),
    ("GELU", nn.GELU, torch.nn.GELU, (4, 5)),
    ("GELU-tanh", lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh"), (4, 5)),
    ("LeakyReLU", lambda: nn.LeakyReLU(0.1), lambda: torch.nn.LeakyReLU(0.1), (4, 5)),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(3, momentum=None, dtype=np.float64),
     lambda: torch.nn.BatchNorm1d(3, momentum=None).double(), (4, 3, 5)),
    ("ConvTranspose2d", lambda: nn.ConvTranspose2d(3, 4, 3, 2, 1, 1, dtype=np.float64),
     lambda: torch.nn.ConvTranspose2d(3, 4, 3, 2, 1, 1).double(), (2, 3, 4, 5)),
])
def test_layers_match_torch(name, make, tmake, shape):
    layer, tlayer = make(), tmake()
    layer.load_state_dict({k: v.numpy() for k, v in tlayer.state_dict().items()})
    x = np.random.default_rng(0).standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    for _ in range(2):
        y = layer(x)
        ty = tlayer(tx)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(y.shape)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(layer.backward(g), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for k, v in tlayer.state_dict().items():
        np.testing.assert_allclose(layer.state_dict()[k], v.numpy(), rtol=1e-12)
