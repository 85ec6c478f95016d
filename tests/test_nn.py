"""cconv.nn layers: float64 central finite differences for every layer's backward,
state_dict / save / load, the repack (version counter) rule, shape arithmetic."""
import numpy as np
import pytest

import cconv
from cconv import nn, optim
from nn_models import cifar_cnn, residual_block

F64 = np.float64


def _fd_check(f, arr, analytic, rng, n_max=24, eps=1e-6, tol=1e-6, changed=None):
    """Central differences of scalar f() w.r.t. entries of arr (in place) vs analytic.
    ``changed``: called after each in-place edit (a layer's mark_changed: the repack rule)."""
    changed = changed or (lambda: None)
    flat = arr.reshape(-1)
    idx = np.arange(flat.size) if flat.size <= n_max else rng.choice(flat.size, n_max, False)
    an = np.asarray(analytic).reshape(-1)
    for i in idx:
        old = flat[i]
        flat[i] = old + eps
        changed()
        fp = f()
        flat[i] = old - eps
        changed()
        fm = f()
        flat[i] = old
        changed()
        num = (fp - fm) / (2 * eps)
        assert abs(num - an[i]) <= tol * max(1.0, abs(num)), (i, num, an[i])


def check_layer(layer, x, seed=0, tol=1e-6):
    """Gradients of sum(layer(x) * R) w.r.t. x and every parameter."""
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=F64)
    y = layer(x)
    R = rng.standard_normal(np.shape(y))
    layer.zero_grad()
    layer(x)
    gx = layer.backward(R.copy())
    assert gx.shape == x.shape
    grads = {k: g.copy() for k, _, g in layer.named_parameters()}

    def f():
        return float(np.sum(layer(x) * R))

    _fd_check(f, x, gx, rng, tol=tol)
    for name, p, _ in layer.named_parameters():
        _fd_check(f, p, grads[name], rng, tol=tol, changed=layer.mark_changed)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------- layers

CONV_CASES = [
    ("Conv1d", lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1, dtype=F64), (2, 3, 9)),
    ("Conv1d-NLC", lambda: nn.Conv1d(3, 4, 3, dilation=2, padding="same", layout="NLC",
                                     dtype=F64), (2, 9, 3)),
    ("Conv2d", lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=F64),
     (2, 4, 7, 6)),
    ("Conv2d-reflect", lambda: nn.Conv2d(3, 5, 3, padding=1, padding_mode="reflect",
                                         dtype=F64), (2, 3, 6, 5)),
    ("Conv2d-NHWC", lambda: nn.Conv2d(3, 5, (3, 2), stride=(1, 2), padding=1, layout="NHWC",
                                      dtype=F64), (2, 6, 5, 3)),
    ("Conv2d-depthwise", lambda: nn.Conv2d(4, 8, 3, padding=1, groups=4, bias=False,
                                           dtype=F64), (2, 4, 5, 5)),
    ("Conv3d", lambda: nn.Conv3d(2, 3, 2, stride=1, padding=1, dtype=F64), (2, 2, 3, 4, 3)),
    ("ConvTranspose1d", lambda: nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1,
                                                   output_padding=1, dtype=F64), (2, 3, 5)),
    ("ConvTranspose2d", lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2,
                                                   dtype=F64), (2, 4, 4, 3)),
    ("ConvTranspose2d-NHWC", lambda: nn.ConvTranspose2d(3, 2, 2, stride=2, layout="NHWC",
                                                        dtype=F64), (2, 3, 4, 3)),
    ("ConvTranspose3d", lambda: nn.ConvTranspose3d(2, 3, 2, stride=2, dtype=F64),
     (1, 2, 2, 3, 2)),
    ("DepthwiseSeparable", lambda: nn.DepthwiseSeparableConv2d(3, 5, 3, padding=1,
                                                                depth_multiplier=2, dtype=F64),
     (2, 3, 5, 4)),
    ("Linear", lambda: nn.Linear(5, 3, dtype=F64), (2, 4, 5)),
    ("Linear-nobias", lambda: nn.Linear(5, 3, bias=False, dtype=F64), (3, 5)),
]


@pytest.mark.parametrize("name,make,shape", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_param_layer_finite_differences(name, make, shape):
    layer = make()
    layer.params  # noqa: B018
    check_layer(layer, randn(*shape))


def _bn_with_stats(cls, C, dtype=F64, **kw):
    bn = cls(C, dtype=dtype, **kw)
    rng = np.random.default_rng(3)
    if bn.affine:
        bn.params["weight"][...] = rng.uniform(0.5, 1.5, C)
        bn.params["bias"][...] = rng.standard_normal(C)
    bn.buffers["running_mean"][...] = rng.standard_normal(C)
    bn.buffers["running_var"][...] = rng.uniform(0.5, 2, C)
    return bn


BN_CASES = [
    ("BN1d-2D", lambda: _bn_with_stats(nn.BatchNorm1d, 4), (6, 4), True),
    ("BN1d-3D", lambda: _bn_with_stats(nn.BatchNorm1d, 3), (4, 3, 5), True),
    ("BN2d", lambda: _bn_with_stats(nn.BatchNorm2d, 3), (3, 3, 4, 5), True),
    ("BN2d-NHWC", lambda: _bn_with_stats(nn.BatchNorm2d, 3, layout="NHWC"), (3, 4, 5, 3), True),
    ("BN2d-eval", lambda: _bn_with_stats(nn.BatchNorm2d, 3), (3, 3, 4, 5), False),
    ("BN2d-eval-NHWC", lambda: _bn_with_stats(nn.BatchNorm2d, 3, layout="NHWC"), (3, 4, 5, 3),
     False),
    ("BN2d-eval-noaffine", lambda: _bn_with_stats(nn.BatchNorm2d, 3, affine=False),
     (2, 3, 4, 5), False),
    ("BN2d-long-rows", lambda: _bn_with_stats(nn.BatchNorm2d, 2), (2, 2, 5, 7), True),
    ("BN2d-momentum-None", lambda: _bn_with_stats(nn.BatchNorm2d, 2, momentum=None),
     (2, 2, 3, 3), True),
]


@pytest.mark.parametrize("name,make,shape,training", BN_CASES, ids=[c[0] for c in BN_CASES])
def test_batchnorm_finite_differences(name, make, shape, training):
    bn = make()
    bn.train(training)
    check_layer(bn, randn(*shape) * 2 + 1)


def test_batchnorm_statistics_rule():
    """Biased variance normalises; running stats get the unbiased one with momentum."""
    bn = nn.BatchNorm2d(3, momentum=0.2, dtype=F64)
    x = randn(4, 3, 5, 6) * 3 + 2
    y = bn(x)
    mean = x.mean(axis=(0, 2, 3))
    var_b = x.var(axis=(0, 2, 3))
    var_u = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(y, (x - mean[:, None, None]) / np.sqrt(var_b[:, None, None] + 1e-5),
                               atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, 0.2 * mean, atol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.8 + 0.2 * var_u, atol=1e-12)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    y = bn(x)
    np.testing.assert_allclose(y, (x - bn.running_mean[:, None, None]) /
                               np.sqrt(bn.running_var[:, None, None] + 1e-5), atol=1e-12)
    with pytest.raises(ValueError, match="more than 1 value"):
        nn.BatchNorm1d(3).train()(np.ones((1, 3)))


@pytest.mark.parametrize("layout", [None, "NHWC"])
def test_batchnorm_training_keeps_only_its_input(layout):
    """The training forward holds no activation-sized array besides its input (backward
    recomputes the normalised values), so writing over its output in place (as a following
    in-place op would) leaves the gradients unchanged."""
    C = 4
    shape = (2, 9, 11, C) if layout else (2, C, 9, 11)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 2 - 1).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    grads = []
    for overwrite in (False, True):
        bn = _bn_with_stats(nn.BatchNorm2d, C, layout=layout, dtype=np.float32)
        y = bn(x)
        held = [a for a in (*bn._cache, *(bn._saved_input or ()))
                if isinstance(a, np.ndarray) and a.size == x.size]
        assert len(held) == 1 and held[0] is x
        if overwrite:
            y[...] = np.nan
        dx = bn.backward(g)
        grads.append((dx, bn.grads["weight"].copy(), bn.grads["bias"].copy()))
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(grads[1][0]).all()


@pytest.mark.parametrize("layout", [None, "NHWC"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_fast_paths_against_float64(layout, training, dtype):
    """The threaded kernels (row lengths with 8-lane tails, several row blocks) against the
    float64 formula, and bitwise the same for 1 and 2 threads."""
    C = 5
    shape = (3, 41, 37, C) if layout else (3, C, 41, 37)
    axes = (0, 1, 2) if layout else (0, 2, 3)
    bshape = (1, 1, 1, C) if layout else (1, C, 1, 1)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    outs = []
    for threads in (1, 2):
        bn = _bn_with_stats(nn.BatchNorm2d, C, layout=layout, dtype=dtype)
        bn.train(training)
        with cconv.num_threads(threads):
            y = bn(x)
            dx = bn.backward(g)
        outs.append((y, dx, bn.grads["weight"].copy(), bn.grads["bias"].copy()))
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(a, b)
    bn = _bn_with_stats(nn.BatchNorm2d, C, layout=layout, dtype=dtype)
    x64, g64 = x.astype(F64), g.astype(F64)
    gamma = bn.params["weight"].astype(F64).reshape(bshape)
    beta = bn.params["bias"].astype(F64).reshape(bshape)
    if training:
        mean, var = x64.mean(axis=axes, keepdims=True), x64.var(axis=axes, keepdims=True)
    else:
        mean = bn.running_mean.astype(F64).reshape(bshape)
        var = bn.running_var.astype(F64).reshape(bshape)
    xhat = (x64 - mean) / np.sqrt(var + bn.eps)
    y_ref = xhat * gamma + beta
    dbeta = g64.sum(axis=axes)
    dgamma = (g64 * xhat).sum(axis=axes)
    n = x.size // C
    scale = gamma / np.sqrt(var + bn.eps)
    if training:
        dx_ref = (g64 - xhat * dgamma.reshape(bshape) / n - dbeta.reshape(bshape) / n) * scale
    else:
        dx_ref = g64 * scale
    tol = 2e-5 if dtype == np.float32 else 1e-12
    y, dx, dw, db = outs[0]
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(dw, dgamma, rtol=tol * 10, atol=tol * 100)
    np.testing.assert_allclose(db, dbeta, rtol=tol * 10, atol=tol * 100)


ELEMENTWISE = [
    ("ReLU", nn.ReLU, (3, 4, 5)),
    ("LeakyReLU", lambda: nn.LeakyReLU(0.2), (3, 4, 5)),
    ("GELU", nn.GELU, (3, 4, 5)),
    ("GELU-tanh", lambda: nn.GELU("tanh"), (3, 4, 5)),
    ("MaxPool2d", lambda: nn.MaxPool2d(2), (2, 3, 6, 4)),
    ("MaxPool2d-overlap-pad", lambda: nn.MaxPool2d(3, 2, padding=1), (2, 2, 7, 6)),
    ("MaxPool2d-ceil-dil", lambda: nn.MaxPool2d(2, 2, dilation=2, ceil_mode=True), (1, 2, 7, 8)),
    ("MaxPool2d-NHWC", lambda: nn.MaxPool2d((2, 3), (1, 2), layout="NHWC"), (2, 5, 7, 3)),
    ("AvgPool2d", lambda: nn.AvgPool2d(2), (2, 3, 6, 4)),
    ("AvgPool2d-pad", lambda: nn.AvgPool2d(3, 2, padding=1), (2, 2, 7, 6)),
    ("AvgPool2d-nopadcount-ceil", lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True,
                                                       count_include_pad=False), (1, 2, 6, 7)),
    ("AdaptiveAvgPool2d-1", lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 5)),
    ("AdaptiveAvgPool2d-3x2", lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    ("AdaptiveAvgPool2d-NHWC", lambda: nn.AdaptiveAvgPool2d((2, None), layout="NHWC"),
     (2, 5, 3, 4)),
    ("Flatten", nn.Flatten, (2, 3, 4)),
    ("Identity", nn.Identity, (2, 3)),
    ("Dropout-eval", lambda: nn.Dropout(0.3).eval(), (2, 3)),
]


@pytest.mark.parametrize("name,make,shape", ELEMENTWISE, ids=[c[0] for c in ELEMENTWISE])
def test_parameterless_finite_differences(name, make, shape):
    check_layer(make(), randn(*shape))


def test_dropout_training():
    d = nn.Dropout(0.25, rng=np.random.default_rng(0))
    x = np.ones((400, 50))
    y = d(x)
    keep = y != 0
    assert abs(keep.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[keep], 1 / 0.75)
    g = d.backward(np.full_like(x, 2.0))
    np.testing.assert_allclose(g, 2 * y)


def test_containers_finite_differences():
    rng = np.random.default_rng(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=F64, rng=rng), nn.BatchNorm2d(4, dtype=F64),
        nn.GELU(), nn.MaxPool2d(2),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, dtype=F64, rng=rng),
                                  nn.LeakyReLU()),
                    nn.Conv2d(4, 4, 1, dtype=F64, rng=rng)),
        nn.Residual(nn.Conv2d(4, 4, 1, dtype=F64, rng=rng)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3, dtype=F64, rng=rng))
    check_layer(model, randn(3, 2, 6, 6))


@pytest.mark.parametrize("kind", ["index", "prob", "smooth", "spatial", "sum"])
def test_cross_entropy(kind):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4))
    t = rng.integers(0, 4, 5)
    loss = nn.CrossEntropyLoss()
    if kind == "prob":
        t = rng.dirichlet(np.ones(4), 5)
    elif kind == "smooth":
        loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    elif kind == "spatial":
        z = rng.standard_normal((2, 4, 3))
        t = rng.integers(0, 4, (2, 3))
    elif kind == "sum":
        loss = nn.CrossEntropyLoss(reduction="sum")
    v = loss(z, t)
    g = loss.backward()
    _fd_check(lambda: loss.forward(z, t), z, g, rng)
    if kind == "index":
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        assert v == pytest.approx(-logp[np.arange(5), t].mean(), rel=1e-12)
    torch = pytest.importorskip("torch")
    tl = torch.nn.CrossEntropyLoss(
        reduction="sum" if kind == "sum" else "mean",
        label_smoothing=0.1 if kind == "smooth" else 0.0)
    tz = torch.tensor(z, requires_grad=True)
    tt = torch.tensor(t)
    out = tl(tz, tt)
    out.backward()
    assert v == pytest.approx(out.item(), rel=1e-12)
    np.testing.assert_allclose(g, tz.grad.numpy(), atol=1e-14)


def test_mse():
    rng = np.random.default_rng(0)
    p, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    loss = nn.MSELoss()
    assert loss(p, t) == pytest.approx(((p - t) ** 2).mean())
    _fd_check(lambda: loss.forward(p, t), p, loss.backward(), rng)
    loss = nn.MSELoss("sum")
    assert loss(p, t) == pytest.approx(((p - t) ** 2).sum())
    np.testing.assert_allclose(loss.backward(), 2 * (p - t))


def test_backward_accumulates_and_zero_grad():
    conv = nn.Conv2d(2, 3, 3, dtype=F64, rng=np.random.default_rng(0))
    x = randn(2, 2, 5, 5)
    g = np.ones((2, 3, 3, 3))
    conv(x)
    conv.backward(g)
    once = conv.grads["weight"].copy()
    conv(x)
    conv.backward(g)
    np.testing.assert_allclose(conv.grads["weight"], 2 * once)
    conv.zero_grad()
    assert not conv.grads["weight"].any() and not conv.grads["bias"].any()
    conv.need_input_grad = False
    conv(x)
    assert conv.backward(g) is None
    np.testing.assert_allclose(conv.grads["weight"], once)


def test_parameters_api_and_modes():
    m = residual_block(2, 4, 2)
    names = [n for n, _, _ in m.named_parameters()]
    assert names == ["block.body.0.weight", "block.body.1.weight", "block.body.1.bias",
                     "block.body.3.weight", "block.body.4.weight", "block.body.4.bias",
                     "block.shortcut.0.weight", "block.shortcut.1.weight",
                     "block.shortcut.1.bias"]
    pairs = list(m.parameters())
    assert len(pairs) == len(names)
    for (p, g), (_, p2, g2) in zip(pairs, m.named_parameters()):
        assert p is p2 and g is g2 and p.shape == g.shape
    m.eval()
    assert all(not l.training for l in m.modules())
    m.train()
    assert all(l.training for l in m.modules())
    assert "block.body.1.running_mean" in m.state_dict()
    s = nn.Sequential(conv=nn.Conv2d(1, 2, 3), act=nn.ReLU())
    assert list(s.state_dict()) == ["conv.weight", "conv.bias"]
    assert s[0] is s.conv and len(s) == 2 and s["act"] is s[1]


# ----------------------------------------------------------------------------- state

def test_state_dict_round_trip_and_save_load(tmp_path):
    a = cifar_cnn(widths=(4, 8, 8), rng=np.random.default_rng(0))
    b = cifar_cnn(widths=(4, 8, 8), rng=np.random.default_rng(1))
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    a(x)  # move the running stats
    a.eval()
    b.eval()
    sd = a.state_dict()
    assert sd["0.weight"].shape == (4, 3, 3, 3)
    assert sd["1.num_batches_tracked"].dtype == np.int64 and int(sd["1.num_batches_tracked"]) == 1
    b.load_state_dict(sd)
    np.testing.assert_array_equal(a(x), b(x))
    path = tmp_path / "m.npz"
    a.save(path)
    c = cifar_cnn(widths=(4, 8, 8), rng=np.random.default_rng(5)).eval()
    c.load(path)
    np.testing.assert_array_equal(a(x), c(x))
    # channels-last model: state_dict in PyTorch's layout, same function
    d = cifar_cnn(widths=(4, 8, 8), layout="NHWC", rng=np.random.default_rng(7)).eval()
    d.load(path)
    assert d[0].params["weight"].shape == (3, 3, 3, 4)
    np.testing.assert_allclose(d(x.transpose(0, 2, 3, 1)), a(x), rtol=1e-5, atol=1e-6)
    for k, v in d.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({k: v for k, v in sd.items() if k != "0.bias"})
    bad = dict(sd)
    bad["0.weight"] = np.zeros((4, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="0.weight"):
        b.load_state_dict(bad)


def test_default_init_and_layouts():
    rng = np.random.default_rng
    c = nn.Conv2d(8, 16, 3, rng=rng(0))
    bound = 1 / np.sqrt(8 * 9)
    assert np.abs(c.params["weight"]).max() <= bound and np.abs(c.params["weight"]).max() > 0.9 * bound
    assert np.abs(c.params["bias"]).max() <= bound
    cl = nn.Conv2d(8, 16, 3, layout="NHWC", rng=rng(0))
    np.testing.assert_array_equal(cl.params["weight"], c.params["weight"].transpose(2, 3, 1, 0))
    t = nn.ConvTranspose2d(8, 16, 3, groups=2, rng=rng(0))
    assert t.params["weight"].shape == (8, 8, 3, 3)
    assert np.abs(t.params["weight"]).max() <= 1 / np.sqrt(8 * 9)
    lin = nn.Linear(50, 10, rng=rng(0))
    assert np.abs(lin.params["weight"]).max() <= 1 / np.sqrt(50)


def test_init_functions():
    rng = np.random.default_rng(0)
    w = np.empty((64, 32, 3, 3))
    nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", rng=rng)
    assert w.std() == pytest.approx(np.sqrt(2 / (32 * 9)), rel=0.05)
    nn.init.kaiming_uniform_(w, nonlinearity="relu", rng=rng)
    assert np.abs(w).max() <= np.sqrt(6 / (32 * 9))
    nn.init.xavier_uniform_(w, rng=rng)
    assert np.abs(w).max() <= np.sqrt(6 / (32 * 9 + 64 * 9))
    nn.init.xavier_normal_(w, rng=rng)
    assert w.std() == pytest.approx(np.sqrt(2 / (32 * 9 + 64 * 9)), rel=0.05)
    m = np.empty((6, 10))
    nn.init.orthogonal_(m, rng=rng)
    np.testing.assert_allclose(m @ m.T, np.eye(6), atol=1e-12)
    m = np.empty((10, 4))
    nn.init.orthogonal_(m, gain=2.0, rng=rng)
    np.testing.assert_allclose(m.T @ m, 4 * np.eye(4), atol=1e-12)
    w = np.empty((3, 3, 4, 8))  # NHWC conv weight: fan_in = 4 * 9
    nn.init.kaiming_normal_(w, layout="NHWC", rng=rng)
    wl = np.empty((3, 3, 4, 8))
    nn.init.orthogonal_(wl, layout="NHWC", rng=rng)
    t = wl.transpose(3, 2, 0, 1).reshape(8, -1)
    np.testing.assert_allclose(t @ t.T, np.eye(8), atol=1e-12)
    nn.init.zeros_(w)
    assert not w.any()


# ----------------------------------------------------------------------------- repack rule

def test_version_counter_and_repack_rule():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, rng=rng, dtype=F64), nn.ReLU(),
                          nn.Conv2d(3, 2, 1, rng=rng, dtype=F64))
    conv = model[0]
    x = randn(2, 2, 6, 6)
    model(x)
    packs, v = conv.repacks, conv.version
    model(x)
    assert conv.repacks == packs and conv.version == v          # nothing changed: reuse
    # optimizer step bumps every layer it touched
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.backward(np.ones((2, 2, 4, 4)))
    opt.step()
    assert conv.version == v + 1 and model[2].version >= 1
    y = model(x)
    assert conv.repacks == packs + 1
    # load_state_dict bumps
    model.load_state_dict(model.state_dict())
    assert conv.version == v + 2
    model(x)
    assert conv.repacks == packs + 2
    # an in-place user edit is not detected until mark_changed()
    conv.params["weight"] *= 2
    v2 = conv.version
    model(x)
    assert conv.repacks == packs + 2
    conv.mark_changed()
    assert conv.version == v2 + 1
    y2 = model(x)
    assert conv.repacks == packs + 3
    # replacing the array is detected without mark_changed()
    conv.params["weight"] = conv.params["weight"] / 2
    y3 = model(x)
    assert conv.repacks == packs + 4
    np.testing.assert_allclose(y3, y, atol=1e-12)
    assert not np.allclose(y2, y)
    # model.mark_changed() reaches every layer
    vs = [m.version for m in model.modules()]
    model.mark_changed()
    assert [m.version for m in model.modules()] == [v + 1 for v in vs]


# ----------------------------------------------------------------------------- shapes

def test_shape_arithmetic():
    assert nn.count_parameters(nn.Conv2d(64, 128, 3)) == (3 * 3 * 64 + 1) * 128 == 73856
    assert cconv.conv_output_shape((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3) == \
        (1, 64, 112, 112)
    assert cconv.conv_output_shape((1, 224, 224, 3), (7, 7, 3, 64), 2, 3, layout="NHWC") == \
        (1, 112, 112, 64)
    assert cconv.conv_output_shape((4, 1, 64), (1, 1, 3), dilation=4) == (4, 1, 56)
    assert cconv.conv_output_shape((8, 32, 10, 10), (32, 1, 3, 3), padding="same") == \
        (8, 32, 10, 10)  # depthwise: groups inferred
    assert cconv.conv_macs((1, 3, 224, 224), (64, 3, 7, 7), 2, 3) == 112 * 112 * 64 * 3 * 49
    with pytest.raises(ValueError, match="channels"):
        cconv.conv_output_shape((1, 3, 8, 8), (4, 2, 3, 3), groups=1)
    assert cconv.receptive_field([(3, 1)] * 3) == (7, 1)
    assert cconv.receptive_field([(7, 2), (3, 2), (3, 1, 2)]) == (7 + 2 * 2 + 2 * 2 * 4, 4)
    model = cifar_cnn()
    rf = cconv.receptive_field(model)
    assert rf.jump == (8, 8) and rf.size == (36, 36)


def test_cifar_cnn_parameter_count():
    model = cifar_cnn()
    assert nn.count_parameters(model) == 289_194
    torch = pytest.importorskip("torch")
    from nn_models import torch_cifar_cnn
    assert sum(p.numel() for p in torch_cifar_cnn().parameters()) == 289_194
    assert list(model.state_dict()) == list(torch_cifar_cnn().state_dict())
    del torch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_2x2_fast_path_matches_general(dtype):
    """MaxPool2d(2) on NCHW runs a dedicated 2x2/2 loop; it must follow the general
    rule (first maximum wins ties, the last NaN wins) and route gradients the same way
    as the general kernel (run here through the NHWC layout) on odd sizes."""
    rng = np.random.default_rng(4)
    x = rng.integers(-2, 3, (2, 3, 7, 9)).astype(dtype)   # many ties
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan                                 # two NaNs in one window
    x[1, 2, 4, 4] = np.inf
    x[1, 1, 2, 2] = -np.inf
    fast = nn.MaxPool2d(2)
    slow = nn.MaxPool2d(2, layout="NHWC")
    y = fast(x)
    ys = slow(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert y.shape == (2, 3, 3, 4)
    np.testing.assert_array_equal(y, ys)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = fast.backward(g)
    dxs = slow.backward(np.ascontiguousarray(g.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(dx, dxs)
    # the window with two NaNs routes its gradient to the later one
    assert dx[0, 0, 1, 0] == g[0, 0, 0, 0] and dx[0, 0, 0, 1] == 0


@pytest.mark.parametrize("layout", [None, "NHWC"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("N", [1, 3])
def test_maxpool_backward_overlapping_windows_exact(layout, threads, N):
    """Overlapping, padded windows: the threaded backward (each thread zeroes and fills its
    own planes or images; channels-last with fewer images than threads, per channel)
    equals a NumPy scatter-add over the recorded winners, exactly
    (small integers), and writes every element of dx (rows and columns no window reaches
    stay zero)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((N, 4, 11, 10))
    x = x if layout is None else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    pool = nn.MaxPool2d(3, 2, padding=1, layout=layout)
    y = pool(x)
    g = rng.integers(-3, 4, y.shape).astype(np.float64)
    with cconv.num_threads(threads):
        dx = pool.backward(g)
    # reference: each output position's gradient to its window's first maximum
    xc = x if layout is None else x.transpose(0, 3, 1, 2)
    gc = g if layout is None else g.transpose(0, 3, 1, 2)
    ref = np.zeros(xc.shape)
    N, C, H, W = xc.shape
    for n in range(N):
        for c in range(C):
            for oh in range(gc.shape[2]):
                for ow in range(gc.shape[3]):
                    best = None
                    for i in range(3):
                        for j in range(3):
                            ih, iw = oh * 2 - 1 + i, ow * 2 - 1 + j
                            if 0 <= ih < H and 0 <= iw < W and (
                                    best is None or xc[n, c, ih, iw] > xc[n, c, best[0], best[1]]):
                                best = (ih, iw)
                    ref[n, c, best[0], best[1]] += gc[n, c, oh, ow]
    ref = ref if layout is None else ref.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(dx, ref)
