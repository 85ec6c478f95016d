"""Seeded common base for the asv suite (numpy's benchmark style)."""
import numpy as np

import cconv

try:  # the suite definition lives in the package, so bench and asv time the same layers
    from cconv._bench import SUITE, make_problem
except ImportError:  # an old commit without it: asv skips these benchmarks
    SUITE, make_problem = [], None

SHAPES = {s.name: s for s in SUITE}


class ConvBenchmark:
    """Base: one suite shape x algorithm x layout x dtype, inputs built in setup."""

    timeout = 120
    warmup_time = 0.1

    def make(self, name, layout, dtype):
        s = SHAPES[name]
        self.s = s
        self.x, self.w, self.b = make_problem(s, np.dtype(dtype), layout, seed=1234)
        self.layout = layout

    def conv(self, algorithm="auto", weight=None):
        s = self.s
        w = self.w if weight is None else weight
        return cconv.conv2d(self.x, w, self.b, s.stride, s.pad, s.dilation, s.groups,
                            layout=self.layout, algorithm=algorithm)
