"""conv2d forward over real network layers (the public suite)."""
import numpy as np

from .common import ConvBenchmark, SHAPES

DENSE = [n for n, s in SHAPES.items() if s.groups == 1]
GROUPED = [n for n, s in SHAPES.items() if s.groups > 1]


class Conv2dDense(ConvBenchmark):
    params = [DENSE, ["auto", "im2col"], ["NCHW", "NHWC"], ["float32", "float64"]]
    param_names = ["shape", "algorithm", "layout", "dtype"]

    def setup(self, shape, algorithm, layout, dtype):
        self.make(shape, layout, dtype)

    def time_forward(self, shape, algorithm, layout, dtype):
        self.conv(algorithm)


class Conv2dGrouped(ConvBenchmark):
    params = [GROUPED, ["auto", "direct", "im2col"], ["NCHW", "NHWC"], ["float32"]]
    param_names = ["shape", "algorithm", "layout", "dtype"]

    def setup(self, shape, algorithm, layout, dtype):
        self.make(shape, layout, dtype)

    def time_forward(self, shape, algorithm, layout, dtype):
        self.conv(algorithm)
