"""The array cache (cconv._memory, _arraycache): cconv's arrays take their buffers from it
and give them back when freed; a reused buffer never leaks its old contents into a
result; the handler is only active inside cconv calls; the limit and its errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

cconv = pytest.importorskip("cconv")
from cconv import _memory, backward, nn  # noqa: E402
from reference import rel_error  # noqa: E402

handler_name = np._core.multiarray.get_handler_name
CACHE = "cconv_array_cache"
MiB = 1 << 20


@pytest.fixture
def cache_limit():
    before = cconv.set_array_cache()
    yield
    cconv.set_array_cache(before)


def _poisoned_release(shape, dtype=np.float32):
    """Free a cache-made buffer of `shape` after filling it with NaN, so that the next
    allocation of that size gets NaN-filled memory."""
    a = _memory.cached_arrays(lambda: np.empty(shape, dtype))()
    assert handler_name(a) == CACHE
    a[...] = np.nan
    del a


def test_outputs_use_the_cache_and_user_arrays_do_not(rng, cache_limit):
    x = rng.standard_normal((4, 16, 64, 64)).astype(np.float32)   # output 1 MiB x 4
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    outside = handler_name()
    y = cconv.conv2d(x, w, padding=1)
    assert handler_name(y) == CACHE and y.ctypes.data % 64 == 0
    assert handler_name() == outside            # restored after the call
    assert handler_name(np.empty(4 * MiB, np.uint8)) == outside
    with pytest.raises(ValueError):
        cconv.conv2d(x, w[:, :3], padding=1)   # restored after an error too
    assert handler_name() == outside
    before = cconv.array_cache_info()
    nbytes = y.nbytes
    del y
    after = cconv.array_cache_info()
    assert after["cached"] >= before["cached"] + nbytes
    y2 = cconv.conv2d(x, w, padding=1)
    assert cconv.array_cache_info()["hits"] > after["hits"]
    ref = cconv.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)
    assert rel_error(y2, ref) <= 1e-4   # "auto" may pick Winograd: its float32 bound


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_reused_buffers_never_leak_into_results(rng, layout, cache_limit):
    # every result computed on NaN-filled reused buffers equals the one computed with
    # the cache off (fresh memory)
    N, C, O, H = 4, 24, 32, 40
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    w = rng.standard_normal((O, C, 3, 3)).astype(np.float32)
    if layout == "NHWC":
        x, w = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(
            w.transpose(2, 3, 1, 0))
    calls = {
        "conv2d": lambda: cconv.conv2d(x, w, None, 1, 1, layout=layout),
        "strided": lambda: cconv.conv2d(x, w, None, 2, 1, layout=layout),
        "winograd": lambda: cconv.conv2d(x, w, None, 1, 1, layout=layout,
                                         algorithm="winograd"),
        "backward": lambda: backward.conv2d_backward(
            cconv.conv2d(x, w, None, 1, 1, layout=layout), x, w, 1, 1, layout=layout),
        "transposed": lambda: cconv.conv_transpose2d(
            x, np.ascontiguousarray(np.swapaxes(w, 0, 1)) if layout == "NCHW"
            else np.ascontiguousarray(np.swapaxes(w, 2, 3)), None, 2, 1, layout=layout),
    }
    for name, fn in calls.items():
        cconv.set_array_cache(0)
        fresh = fn()
        cconv.set_array_cache(64 * MiB)
        outs = fresh if isinstance(fresh, tuple) else (fresh,)
        for shape in {o.shape for o in outs} | {x.shape, (N, O, H, H), (N, H, H, O)}:
            for _ in range(3):
                _poisoned_release(shape)
        got = fn()
        for g, f in zip(got if isinstance(got, tuple) else (got,), outs):
            np.testing.assert_array_equal(g, f, err_msg=name)


def test_layers_train_on_reused_buffers(cache_limit):
    # the CIFAR CNN's training steps give the same parameters with and without the cache
    from nn_models import cifar_cnn

    def train(limit):
        cconv.set_array_cache(limit)
        r = np.random.default_rng(3)
        model = cifar_cnn(rng=r)
        x = r.standard_normal((16, 3, 32, 32)).astype(np.float32)
        loss = nn.CrossEntropyLoss()
        for _ in range(3):
            for shape in ((16, 32, 32, 32), (16, 64, 16, 16), (16, 32, 16, 16)):
                _poisoned_release(shape)
            model.zero_grad()
            loss(model(x), np.arange(16) % 10)
            model.backward(loss.backward())
            for p, g in model.parameters():
                p -= 0.01 * g
            model.mark_changed()
        return [p.copy() for p, _ in model.parameters()]

    for a, b in zip(train(0), train(64 * MiB)):
        np.testing.assert_array_equal(a, b)


def test_zeros_and_resize_through_the_cache(cache_limit):
    cconv.set_array_cache(64 * MiB)
    shape = (3 * MiB // 4,)
    _poisoned_release(shape)
    z = _memory.cached_arrays(lambda: np.zeros(shape, np.float32))()
    assert handler_name(z) == CACHE and not z.any()   # calloc clears a reused block
    a = _memory.cached_arrays(lambda: np.arange(300_000, dtype=np.float64))()
    _memory.cached_arrays(a.resize)((500_000,), refcheck=False)  # realloc: grows
    np.testing.assert_array_equal(a[:300_000], np.arange(300_000))
    _memory.cached_arrays(a.resize)((1000,), refcheck=False)     # and shrinks
    np.testing.assert_array_equal(a, np.arange(1000))


def test_limit_bounds_the_cache_and_zero_releases_it(cache_limit):
    cconv.set_array_cache(3 * MiB)
    # four live 1 MiB + 4 B arrays (rounded up to 1 MiB + 64 KiB), then freed: two fit
    arrays = _memory.cached_arrays(lambda: [np.empty(MiB // 4 + 1, np.float32)
                                            for _ in range(4)])()
    del arrays
    info = cconv.array_cache_info()
    assert 0 < info["cached"] <= 3 * MiB and info["blocks"] == 2
    assert cconv.set_array_cache(0) == 3 * MiB
    assert cconv.array_cache_info()["cached"] == 0
    _poisoned_release((MiB,))
    assert cconv.array_cache_info()["cached"] == 0   # nothing kept at limit 0
    assert cconv.set_array_cache() == 0


@pytest.mark.parametrize("bad, exc, msg", [(-1, ValueError, "max_bytes must be >= 0, got -1"),
                                           (1.5, TypeError, "max_bytes must be an int"),
                                           ("1", TypeError, "max_bytes must be an int")])
def test_limit_errors(bad, exc, msg, cache_limit):
    with pytest.raises(exc, match=msg):
        cconv.set_array_cache(bad)


@pytest.mark.parametrize("value, expect", [("64", str(64 * MiB)), ("0", "0"),
                                           ("-3", "ValueError"), ("lots", "ValueError")])
def test_limit_from_environment(value, expect):
    code = ("import cconv\ntry:\n    print(cconv.set_array_cache())\n"
            "except ValueError as e:\n    print('ValueError', e)")
    env = dict(os.environ, CCONV_ARRAY_CACHE_MB=value)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True)
    text = out.stdout + out.stderr
    assert expect in text, text
    if expect == "ValueError":
        assert "CCONV_ARRAY_CACHE_MB must be a number of MiB >= 0" in text


def test_user_module_subclasses_run_with_the_cache(cache_limit):
    # Module.__init_subclass__ wraps a subclass's forward / backward once (not again
    # for a subclass of it), as the README says
    class Double(nn.Module):
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return g * 2

    class Quad(Double):
        pass

    x = np.ones(MiB // 2, np.float32)   # 2 MiB
    for layer in (Double(), Quad()):
        assert handler_name(layer(x)) == CACHE
        assert handler_name(layer.backward(x)) == CACHE
    assert Quad.forward is Double.forward and Double.forward._cconv_cached_arrays
    assert handler_name(x * 2) != CACHE
