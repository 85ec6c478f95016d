"""Tensors with more than 2**31 elements (slow marker): all index arithmetic is 64-bit.

One 8 GiB float32 buffer of 2**31 + 8192 elements is viewed (no copies) as a single
long signal (N=1, C=1), as a large batch and as many channels, in both layouts; a large
stride keeps the output small, and the last outputs read past element 2**31. A second
problem has a small input and an output of more than 2**31 elements (128 channels from
one), and its output then serves as the grad_out of the backward passes.

Values are small integers with a period of 8191 (a prime: an offset that wrapped at
2**31 or 2**32 would read a different value), so the float32 results are exact and
compared bitwise against a NumPy reference computed on the few pixels each output reads
(Winograd: within 1e-5 of the largest value). Peak memory: about 11 GiB. The cases whose
path copies the whole input (im2col's stride-phase copy of an NCL image, the NCL
depthwise row scratch, the NLC depthwise channel repeat; see _copy_gib) need 16-20 GiB:
they run (on one thread) only with CCONV_TEST_HUGE=1. Everything is skipped when less
than 12 GiB is available.
"""
import os
import sys
import time

import numpy as np
import pytest

import cconv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.maxsize < 2**40, reason="needs a 64-bit platform"),
]

BIG = 2**31 + 8192          # = 8192 * 262145
PERIOD = 8191


def _available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _need_memory(gib=12, beyond_input=False):
    """Skip unless `gib` GiB are free (beyond_input: on top of the 8 GiB input already
    allocated, i.e. `gib` more must be free now)."""
    avail = _available_bytes()
    if avail < gib * 2**30:
        what = "more " if beyond_input else ""
        pytest.skip(f"needs {gib:.1f} GiB {what}of free memory, "
                    f"{avail / 2**30:.1f} GiB available")


def _periodic(n, dtype=np.float32):
    """x[i] = (i % 8191) - 4095, filled in 64 MiB chunks (no temporaries of size n)."""
    reps = 2048
    block = np.tile(np.arange(PERIOD, dtype=dtype) - (PERIOD // 2), reps)
    x = np.empty(n, dtype)
    step = block.size  # a multiple of the period: each chunk starts at phase 0
    for s in range(0, n, step):
        e = min(s + step, n)
        x[s:e] = block[: e - s]
    return x


@pytest.fixture(scope="class")
def big_input():
    """A one-element list holding the 8 GiB buffer: teardown empties it, so the memory
    goes even if a test's frame (kept by a skip or a failure) still holds the list."""
    _need_memory(12)
    t0 = time.perf_counter()
    holder = [_periodic(BIG)]
    print(f"\n[large] filled {BIG} float32 ({holder[0].nbytes / 2**30:.2f} GiB) in "
          f"{time.perf_counter() - t0:.1f} s")
    yield holder
    holder.clear()


def _reference_ncl(x3, w, stride, pad, dil, groups):
    """float64 conv1d reading only the pixels the outputs need: out[n, o, j] =
    sum_{c in o's group, t} w[o, c, t] * x[n, c, j*stride + t*dil - pad] (zero padding)."""
    N, C, L = x3.shape
    O, Cg, K = w.shape
    Og = O // groups
    OL = (L + 2 * pad - dil * (K - 1) - 1) // stride + 1
    out = np.zeros((N, O, OL))
    j = np.arange(OL, dtype=np.int64)
    o = np.arange(O)
    for t in range(K):
        idx = j * stride + t * dil - pad
        ok = (idx >= 0) & (idx < L)
        xs = x3[:, :, idx[ok]].astype(np.float64)        # (N, C, valid outputs)
        for c in range(Cg):
            # input channel of output o for its c-th weight: (o // Og) * Cg + c
            out[:, :, ok] += w[:, c, t].astype(np.float64)[None, :, None] * \
                xs[:, (o // Og) * Cg + c, :]
    return out


# (name, shape of the NCL view, groups): one long signal, two long channels (a dense
# problem: the direct loop nest), a big batch, many channels (depthwise)
VIEWS = [("signal", (1, 1, BIG), 1), ("two_channels", (1, 2, BIG // 2), 1),
         ("batch", (262145, 1, 8192), 1), ("channels", (1, 262145, 8192), 262145)]
STRIDE, PAD, DIL, K = 4096, 7, 5, 3


def _copy_gib(view, layout, algorithm):
    """Workspace beyond the 8 GiB input, in GiB, at one thread, for the channels-first
    paths that copy whole images or rows: im2col's padded-grid path keeps a zero-padded
    copy of one image split into its stride phases (4096 phases of the padded output
    grid here: 8 GiB for the long rows, 12 GiB for the 262145 short channels), the
    depthwise kernels (which "auto" and "direct" run when groups == C) copy whole input
    rows into their scratch."""
    if layout != "NCL":
        return 0
    depthwise_path = (view in ("signal", "channels") and algorithm != "im2col")
    if algorithm in ("im2col", "auto") and not depthwise_path:
        return {"signal": 8.1, "two_channels": 8.1, "channels": 12.1}.get(view, 0)
    if depthwise_path and view == "signal":
        return 8.1
    return 0


# Cases that need more than ~14 GiB in all run only with CCONV_TEST_HUGE=1 (they passed
# at a 16-20 GiB peak on the 24 GiB development machine).
HUGE = os.environ.get("CCONV_TEST_HUGE", "0") not in ("", "0")


class TestBigInput:  # a class: its 8 GiB fixture is freed before TestBigOutput starts
    @pytest.mark.parametrize("layout", ["NCL", "NLC"])
    @pytest.mark.parametrize("view,shape,groups", VIEWS, ids=[v[0] for v in VIEWS])
    @pytest.mark.parametrize("algorithm", ["auto", "direct", "im2col", "depthwise"])
    def test_small_output(self, big_input, layout, view, shape, groups, algorithm):
        N, C, L = shape
        assert N * C * L == BIG > 2**31
        if algorithm == "depthwise" and groups != C:
            pytest.skip("not a depthwise problem")
        extra = _copy_gib(view, layout, algorithm)
        if extra > 6 and not HUGE:
            pytest.skip(f"this path copies the input ({extra} GiB more): "
                        "set CCONV_TEST_HUGE=1 to run it")
        if extra:
            _need_memory(2 + extra, beyond_input=True)
        O = C if groups == C else 1
        rng = np.random.default_rng([len(view), C, ord(layout[1])])
        w = rng.integers(-3, 4, (O, C // groups, K)).astype(np.float32)  # (O, C/groups, k)
        if layout == "NCL":
            x = big_input[0].reshape(shape)
            x_ncl, wl = x, w
        else:  # the same buffer read as (N, L, C): a different tensor, a valid one
            x = big_input[0].reshape(N, L, C)
            x_ncl = x.transpose(0, 2, 1)
            wl = np.ascontiguousarray(w.transpose(2, 1, 0))      # (k, C/groups, O)
        t0 = time.perf_counter()
        # one thread where a path copies whole rows: one copy at a time
        with cconv.num_threads(1 if extra else cconv.get_num_threads()):
            y = cconv.conv1d(x, wl, None, STRIDE, PAD, DIL, groups, layout=layout,
                             algorithm=algorithm)
        dt = time.perf_counter() - t0
        ref = _reference_ncl(x_ncl, w, STRIDE, PAD, DIL, groups)
        got = y if layout == "NCL" else y.transpose(0, 2, 1)
        assert got.shape == ref.shape
        # in the signal view the last outputs read past element 2**31 of the buffer
        np.testing.assert_array_equal(got, ref.astype(np.float32))
        print(f"[large] {view} {layout} {algorithm}: x {x.shape} -> y {y.shape} in {dt:.2f} s")


O_BIG = 128
L_SMALL = 2**24 + 3          # O_BIG * L_SMALL = 2**31 + 384 output elements


@pytest.fixture(scope="class")
def big_output():
    """A one-element list holding the 8 GiB output buffer (see big_input)."""
    _need_memory(12)
    holder = [np.empty(O_BIG * L_SMALL, np.float32)]
    yield holder
    holder.clear()


def _big_output_weights():
    """(O, 3) small integers, the middle tap distinct per output channel."""
    o = np.arange(O_BIG)
    return np.stack([o % 5 - 2, o - O_BIG // 2, (7 * o) % 5 - 2], axis=1).astype(np.float32)


class TestBigOutput:
    @pytest.mark.parametrize("layout", ["NCL", "NLC"])
    @pytest.mark.parametrize("algorithm",
                             ["auto", "direct", "im2col", "depthwise", "winograd"])
    def test_output_and_its_backward(self, big_output, layout, algorithm):
        """1 channel in, 128 out, 3 taps, stride 1, padding 1: 2**31 + 384 outputs written
        through `out=` (pre-filled with NaN); then the backward passes with that
        2**31-element tensor as grad_out."""
        if layout == "NLC" and algorithm in ("direct", "depthwise"):
            # the channels-last depthwise kernels repeat the input channels M = 128
            # times first: another tensor the size of the output
            if not HUGE:
                pytest.skip("this path copies the input 128 times (8 GiB more): "
                            "set CCONV_TEST_HUGE=1 to run it")
            _need_memory(10, beyond_input=True)
        x1 = _periodic(L_SMALL)
        w1 = _big_output_weights()                                  # (O, k)
        if layout == "NCL":
            x, w = x1.reshape(1, 1, L_SMALL), w1.reshape(O_BIG, 1, 3)
            out = big_output[0].reshape(1, O_BIG, L_SMALL)
        else:
            x, w = x1.reshape(1, L_SMALL, 1), np.ascontiguousarray(w1.T).reshape(3, 1, O_BIG)
            out = big_output[0].reshape(1, L_SMALL, O_BIG)
        assert out.size > 2**31
        out.fill(np.nan)
        t0 = time.perf_counter()
        y = cconv.conv1d(x, w, None, 1, 1, 1, 1, layout=layout, algorithm=algorithm, out=out)
        dt = time.perf_counter() - t0
        assert y is out
        # integer sums below 2**24: exact in float32, except through Winograd's transforms
        exact = algorithm in ("direct", "im2col", "depthwise")
        xp = np.pad(x1.astype(np.float64), 1)
        w64 = w1.astype(np.float64)
        worst = 0.0
        step = 2**20
        for s in range(0, L_SMALL, step):
            e = min(s + step, L_SMALL)
            ref = sum(w64[:, t, None] * xp[None, s + t:e + t] for t in range(3))  # (O, n)
            got = out[0, :, s:e] if layout == "NCL" else out[0, s:e, :].T
            if exact:
                np.testing.assert_array_equal(got, ref.astype(np.float32),
                                              err_msg=f"pixels {s}:{e}")
            else:
                assert np.isfinite(got).all(), f"pixels {s}:{e}"
                worst = max(worst, float(np.max(np.abs(got - ref)) / np.max(np.abs(ref))))
        assert worst < 1e-5, worst
        print(f"[large] output {out.shape} {layout} {algorithm} in {dt:.2f} s"
              + ("" if exact else f" (max error / max |y| = {worst:.1e})"))
        if algorithm in ("depthwise", "winograd"):  # forward-only names
            return
        # Backward with the 2**31-element tensor as grad_out. A dense grad_out would make
        # grad_weight a float32 sum over 2**24 pixels (one FMA chain: ~2e-2 relative
        # error here), too coarse to see a few misplaced terms; so grad_out is zero but
        # for a few small integers, placed past element 2**31 in both layouts (NCL:
        # channel 127, the last 384 pixels; NLC: the last 3 pixels) and elsewhere. Then
        # both gradients are exact small-integer sums: compared bitwise.
        L = L_SMALL
        out.fill(0)
        pts = [(127, L - 1), (127, L - 200), (127, L - 384), (3, L - 1), (64, L - 2),
               (100, L - 3), (0, 0), (64, L // 2), (127, 0), (5, 12345)]
        vals = np.arange(1, len(pts) + 1, dtype=np.float32) * np.array([1, -1] * 5)
        for (o, m), v in zip(pts, vals):
            if layout == "NCL":
                out[0, o, m] = v
            else:
                out[0, m, o] = v
        assert any(o * L + m >= 2**31 for o, m in pts)          # NCL offsets
        assert any(m * O_BIG + o >= 2**31 for o, m in pts)      # NLC offsets
        t0 = time.perf_counter()
        dx = cconv.conv1d_grad_input(out, w, x.shape, 1, 1, 1, 1, layout=layout,
                                     algorithm=algorithm).reshape(-1)
        dw = cconv.conv1d_grad_weight(x, out, w.shape, 1, 1, 1, 1, layout=layout,
                                      algorithm=algorithm)
        dt = time.perf_counter() - t0
        dw = dw.reshape(O_BIG, 3) if layout == "NCL" else dw.reshape(3, O_BIG).T
        # y[o, m] = sum_t w[o, t] xp[m + t]  =>  dx[m + t - 1] += g[o, m] w[o, t],
        # dw[o, t] += g[o, m] xp[m + t]
        ref_dx = np.zeros(L)
        ref_dw = np.zeros((O_BIG, 3))
        for (o, m), v in zip(pts, vals.astype(np.float64)):
            for t in range(3):
                if 0 <= m + t - 1 < L:
                    ref_dx[m + t - 1] += v * w64[o, t]
                ref_dw[o, t] += v * xp[m + t]
        np.testing.assert_array_equal(dx, ref_dx.astype(np.float32))
        np.testing.assert_array_equal(dw, ref_dw.astype(np.float32))
        print(f"[large] backward, grad_out {out.shape} {layout} {algorithm} in {dt:.2f} s")
