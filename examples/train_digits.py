"""Train the classic small CNN (conv-BN-ReLU blocks, max-pool, global average pool,
linear) on scikit-learn's bundled 8x8 digits with cconv.nn and SGD + momentum.

    pip install ".[examples]"      # scikit-learn, matplotlib, tqdm (tqdm is optional)
    python examples/train_digits.py [--epochs 12] [--threads 2] [--out examples/out]

No download: the 1,797 digits ship with scikit-learn. Prints the test accuracy and the
training speed (images/s), and saves two PNGs: the learned first-layer 3x3 filters and
the loss / accuracy curves.
"""
import argparse
import os
import time

import numpy as np

import cconv
from cconv import nn, optim

try:
    from tqdm import tqdm
except ImportError:  # plain progress fallback
    tqdm = None


def digits_cnn(widths=(32, 64, 128), num_classes=10, rng=None):
    """The CIFAR-10 CNN scaled to 8x8 inputs: 1->32->32 pool(4x4) ->64->64 pool(2x2)
    ->128->128 pool(1x1), global average pool, linear 10."""
    layers, c = [], 1
    for w in widths:
        for _ in range(2):
            layers += [nn.Conv2d(c, w, 3, padding=1, rng=rng), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes, rng=rng)]
    model = nn.Sequential(*layers)
    model[0].need_input_grad = False  # nothing upstream of the first conv
    return model


def progress(iterable, total, desc):
    if tqdm is not None:
        return tqdm(iterable, total=total, desc=desc, leave=False, ncols=80)

    def plain():
        for i, item in enumerate(iterable):
            if i % max(total // 4, 1) == 0:
                print(f"  {desc}: batch {i}/{total}", flush=True)
            yield item
    return plain()


def evaluate(model, x, y, batch=256):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    model.train()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    args = ap.parse_args()
    if args.threads:
        cconv.set_num_threads(args.threads)

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]          # (N, 1, 8, 8) in [0, 1]
    x = (x - x.mean()) / x.std()
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, random_state=args.seed,
                                          stratify=d.target)
    rng = np.random.default_rng(args.seed)
    model = digits_cnn(rng=rng)
    print(f"digits: {len(xtr)} train / {len(xte)} test images, model "
          f"{nn.count_parameters(model):,} parameters, {cconv.get_num_threads()} threads")
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4,
                    nesterov=True)
    steps_per_epoch = int(np.ceil(len(xtr) / args.batch))
    total_steps = args.epochs * steps_per_epoch
    history = {"step": [], "loss": [], "epoch": [], "train_acc": [], "test_acc": []}
    step, seen, train_time = 0, 0, 0.0
    t_start = time.perf_counter()
    for epoch in range(args.epochs):
        perm = rng.permutation(len(xtr))
        t0 = time.perf_counter()
        for b in progress(range(steps_per_epoch), steps_per_epoch, f"epoch {epoch + 1}"):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            # cosine learning-rate schedule
            for g in opt.param_groups:
                g["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * step / total_steps))
            model.zero_grad()
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            model.backward(loss_fn.backward())
            opt.step()
            history["step"].append(step)
            history["loss"].append(loss)
            step += 1
            seen += len(idx)
        train_time += time.perf_counter() - t0
        tr_acc, te_acc = evaluate(model, xtr, ytr), evaluate(model, xte, yte)
        history["epoch"].append(step)
        history["train_acc"].append(tr_acc)
        history["test_acc"].append(te_acc)
        print(f"epoch {epoch + 1:2d}: loss {np.mean(history['loss'][-steps_per_epoch:]):.4f}  "
              f"train acc {tr_acc:.4f}  test acc {te_acc:.4f}", flush=True)
    total = time.perf_counter() - t_start
    t0 = time.perf_counter()
    acc = evaluate(model, xte, yte)
    t_inf = time.perf_counter() - t0
    print(f"test accuracy {acc:.2%} ({int(round(acc * len(xte)))}/{len(xte)})")
    print(f"training: {seen / train_time:,.0f} images/s (fwd + bwd + SGD step), "
          f"inference: {len(xte) / t_inf:,.0f} images/s; total {total:.1f} s")

    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "digits_cnn.npz"))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figures")
        return
    w = model[0].params["weight"][:, 0]                       # (32, 3, 3)
    fig, axes = plt.subplots(4, 8, figsize=(8, 4.4))
    lim = np.abs(w).max()
    for i, ax in enumerate(axes.flat):
        ax.imshow(w[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("first-layer 3x3 filters (red +, blue -)")
    fig.tight_layout()
    p1 = os.path.join(args.out, "digits_filters.png")
    fig.savefig(p1, dpi=100)
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(history["step"], history["loss"], lw=0.6, alpha=0.5, label="batch loss")
    k = steps_per_epoch
    sm = np.convolve(history["loss"], np.ones(k) / k, mode="valid")
    ax1.plot(np.arange(len(sm)) + k - 1, sm, lw=1.5, label="loss (1-epoch mean)")
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy")
    ax2 = ax1.twinx()
    ax2.plot(history["epoch"], history["train_acc"], "g.-", label="train acc")
    ax2.plot(history["epoch"], history["test_acc"], "r.-", label="test acc")
    ax2.set_ylim(0.8, 1.0)
    ax2.set_ylabel("accuracy")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="center right")
    ax1.set_title(f"cconv.nn on sklearn digits: test accuracy {acc:.2%}")
    fig.tight_layout()
    p2 = os.path.join(args.out, "digits_curves.png")
    fig.savefig(p2, dpi=100)
    print(f"saved {p1} and {p2}")


if __name__ == "__main__":
    main()
