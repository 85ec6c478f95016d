"""Backward passes and transposed convolution over the backward issue's suites (the
shapes of `python -m cconv bench --suite backward | transposed`), float32."""
import cconv

try:  # the suites live in the package, so bench and asv time the same layers
    from cconv._bench_grad import (BACKWARD_SUITE, TRANSPOSED_SUITE, make_backward_problem,
                                   make_transposed_problem)
except ImportError:  # an old commit without them: asv skips these benchmarks
    BACKWARD_SUITE, TRANSPOSED_SUITE = [], []

BWD = {s.name: s for s in BACKWARD_SUITE}
TRANSPOSED = {s.name: s for s in TRANSPOSED_SUITE}


class Conv2dBackward:
    """conv2d_backward: each gradient alone and all three together."""
    params = [list(BWD), ["input", "weight", "all"], ["NCHW", "NHWC"]]
    param_names = ["shape", "need", "layout"]
    timeout = 120
    warmup_time = 0.1

    def setup(self, shape, need, layout):
        self.s = BWD[shape]
        (self.x, self.w, self.go), _ = make_backward_problem(self.s, layout, seed=1234)
        self.need = ("input", "weight", "bias") if need == "all" else (need,)

    def time_backward(self, shape, need, layout):
        s = self.s
        cconv.conv2d_backward(self.go, self.x, self.w, s.stride, s.pad, s.dilation, s.groups,
                              layout=layout, need=self.need)


class ConvTranspose:
    params = [list(TRANSPOSED), ["NCHW", "NHWC"]]
    param_names = ["shape", "layout"]
    timeout = 120
    warmup_time = 0.1

    def setup(self, shape, layout):
        self.s = TRANSPOSED[shape]
        (self.x, self.w), _ = make_transposed_problem(self.s, layout, seed=1234)
        self.fn = cconv.conv_transpose1d if self.x.ndim == 3 else cconv.conv_transpose2d
        self.layout = {"NCHW": "NCL", "NHWC": "NLC"}[layout] if self.x.ndim == 3 else layout

    def time_forward(self, shape, layout):
        s = self.s
        self.fn(self.x, self.w, None, s.stride, s.pad, layout=self.layout)
