"""conv2d forward over real network layers (the public suite)."""
import numpy as np

import cconv

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


class Conv2dPacked(ConvBenchmark):
    """Weights packed once (cconv.pack_weights, as layers keep them), "auto"."""
    params = [DENSE, ["NCHW", "NHWC"]]
    param_names = ["shape", "layout"]

    def setup(self, shape, layout):
        if not hasattr(cconv, "pack_weights"):
            raise NotImplementedError  # an old commit: asv skips it
        self.make(shape, layout, "float32")
        self.pw = cconv.pack_weights(self.w, layout=layout, groups=self.s.groups)
        self.conv(weight=self.pw)  # panels / transforms made before the timing

    def time_forward(self, shape, layout):
        self.conv(weight=self.pw)


class Conv2dLayerRepack(ConvBenchmark):
    """A training step's forward of a cconv.nn.Conv2d layer: its weights changed
    (mark_changed), so it repacks, then runs once."""
    params = [["r50_3x3_256_14", "r50_3x3_512_7", "r50_1x1_1024to256_14"], ["NCHW", "NHWC"]]
    param_names = ["shape", "layout"]

    def setup(self, shape, layout):
        from cconv import nn
        if not hasattr(nn.Conv2d, "mark_changed"):
            raise NotImplementedError
        self.make(shape, layout, "float32")
        s = self.s
        self.layer = nn.Conv2d(s.C, s.O, s.K, s.stride, s.pad, s.dilation, s.groups,
                               layout=layout, rng=np.random.default_rng(1234))
        self.layer.forward(self.x)

    def time_repack_forward(self, shape, layout):
        self.layer.mark_changed()
        self.layer.forward(self.x)


# Large kernels, where FFT convolution can win (README, Algorithms: "fft"), and one where
# it does not: (x shape, weight shape, padding), float32 NCHW.
LARGE_KERNEL = {
    "k31_1to1_256_b4": ((4, 1, 256, 256), (1, 1, 31, 31), 15),
    "k15_16to16_128": ((1, 16, 128, 128), (16, 16, 15, 15), 7),
    "conv1d_k255_16to16_L16000_b4": ((4, 16, 16000), (16, 16, 255), 127),
}


class ConvLargeKernel:
    params = [list(LARGE_KERNEL), ["auto", "fft"]]
    param_names = ["shape", "algorithm"]
    timeout = 120

    def setup(self, shape, algorithm):
        xs, ws, self.pad = LARGE_KERNEL[shape]
        rng = np.random.default_rng(1234)
        self.x = rng.standard_normal(xs).astype(np.float32)
        self.w = rng.standard_normal(ws).astype(np.float32)
        self.fn = cconv.conv1d if len(xs) == 3 else cconv.conv2d

    def time_forward(self, shape, algorithm):
        self.fn(self.x, self.w, None, 1, self.pad, algorithm=algorithm)
