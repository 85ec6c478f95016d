"""Time the CIFAR-10 CNN (289,194 parameters) in cconv.nn and in PyTorch, side by side:
a training step (batch 32, 3x32x32, forward + backward + SGD-momentum step, float32) and
eval-mode inference (batch 64). The two libraries take turns, round by round; medians
of --repeat rounds.  python examples/bench_nn.py"""
import argparse
import os
import sys
import time

import numpy as np

import cconv
from cconv import nn, optim

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from nn_models import cifar_cnn, torch_cifar_cnn  # noqa: E402


def _time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns, repeat, pause=0.02):
    """Time each function once per round, the libraries taking turns (so that a slow
    moment of this shared machine hits both), after one warm-up round; a short pause
    between turns lets the other library's worker threads go idle. Returns per-function
    lists of times."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            time.sleep(pause)
            times[i].append(_time_once(fn))
    return times


def _summary(ts):
    return float(np.median(ts)), (max(ts) / min(ts) - 1) * 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    cconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
    xi = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    model = cifar_cnn()
    model[0].need_input_grad = False  # as PyTorch: the input needs no gradient
    imodel = cifar_cnn()
    imodel.eval()
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        model.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()

    def infer():
        imodel(xi)

    fns = {"train": [step], "infer": [infer]}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(args.threads)
        tm = torch_cifar_cnn()
        tmi = torch_cifar_cnn().eval()
        tx, ty, txi = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xi)
        topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)

        def tstep():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tm(tx), ty).backward()
            topt.step()

        def tinfer():
            with torch.no_grad():
                tmi(txi)

        fns["train"].append(tstep)
        fns["infer"].append(tinfer)
    print(f"CIFAR-10 CNN, float32, {args.threads} threads, median of {args.repeat} rounds "
          f"(libraries taking turns; spread = max/min - 1)")
    for what, label in (("train", "train step b32"), ("infer", "inference b64")):
        times = interleaved(fns[what], args.repeat)
        n = 32 if what == "train" else 64
        (cm, cs) = _summary(times[0])
        line = f"{label}: cconv {cm * 1e3:6.1f} ms ({n / cm:5.0f} img/s, spread {cs:3.0f}%)"
        if len(times) > 1:
            tmed, tsp = _summary(times[1])
            ratios = [c / t for c, t in zip(times[0], times[1])]
            line += (f"  PyTorch {tmed * 1e3:6.1f} ms (spread {tsp:3.0f}%)  cconv/PyTorch: "
                     f"{cm / tmed:.2f} (median of per-round ratios {np.median(ratios):.2f})")
        print(line)


if __name__ == "__main__":
    main()
