"""Time the CIFAR-10 CNN (289,194 parameters) in cconv.nn and in PyTorch, side by side:
a training step (batch 32, 3x32x32, forward + backward + SGD-momentum step, float32) and
eval-mode inference (batch 64). Median of --repeat runs.  python examples/bench_nn.py"""
import argparse
import os
import sys
import time

import numpy as np

import cconv
from cconv import nn, optim

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from nn_models import cifar_cnn, torch_cifar_cnn  # noqa: E402


def median_time(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    cconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
    xi = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    model = cifar_cnn()
    model[0].need_input_grad = False
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        model.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()

    t_train = median_time(step, args.repeat)
    model.eval()
    t_inf = median_time(lambda: model(xi), args.repeat)
    print(f"cconv.nn  train step b32: {t_train * 1e3:7.1f} ms ({32 / t_train:6.0f} img/s)   "
          f"inference b64: {t_inf * 1e3:7.1f} ms ({64 / t_inf:6.0f} img/s)")
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(args.threads)
    tm = torch_cifar_cnn()
    tx, ty, txi = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xi)
    topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)

    def tstep():
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tm(tx), ty).backward()
        topt.step()

    tt = median_time(tstep, args.repeat)
    tm.eval()
    with torch.no_grad():
        ti = median_time(lambda: tm(txi), args.repeat)
    print(f"PyTorch   train step b32: {tt * 1e3:7.1f} ms ({32 / tt:6.0f} img/s)   "
          f"inference b64: {ti * 1e3:7.1f} ms ({64 / ti:6.0f} img/s)")
    print(f"ratio (PyTorch time / cconv time): train {tt / t_train:.2f}x, inference "
          f"{ti / t_inf:.2f}x")


if __name__ == "__main__":
    main()
