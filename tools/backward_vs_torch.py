"""Backward passes and transposed convolution, cconv vs PyTorch side by side in one
process (float32, median of --repeat runs): both of `python -m cconv bench`'s gradient
suites (src/cconv/_bench_grad.py holds the shapes and the timing).

    python tools/backward_vs_torch.py [--threads 2] [--repeat 7] [--layout NCHW]

--layout NHWC runs cconv on channels-last arrays (weights (kh, kw, C/groups, O)) against
PyTorch on channels_last tensors (conv_transpose1d: NLC against PyTorch's NCL, which has
no channels-last 1-D format).
"""
import argparse

from cconv._bench_grad import run_grad_bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW")
    a = ap.parse_args()
    run_grad_bench("backward", a.layout, a.repeat, a.threads)
    print()
    run_grad_bench("transposed", a.layout, a.repeat, a.threads)


if __name__ == "__main__":
    main()
