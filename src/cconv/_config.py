"""show_config(): what this build of cconv is and what it will run."""
import platform
import sys
import sysconfig

import numpy as np

from . import _core, _im2col
from ._threads import get_num_threads
from ._version import __version__


def config_dict():
    return {
        "cconv": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "compiler": sysconfig.get_config_var("CC") or "unknown",
        "openmp": _core.openmp_enabled(),
        "openmp_version": _core.openmp_version(),
        "isa": _im2col.isa_active(),
        "isa_best": _im2col.isa_best(),
        "tile_f32": _im2col.tile_shape(np.float32),
        "tile_f64": _im2col.tile_shape(np.float64),
        "threads": get_num_threads(),
    }


def show_config(file=None):
    """Print version, compiler, OpenMP, active ISA path and thread count; return them
    as a dict."""
    cfg = config_dict()
    out = file or sys.stdout
    width = max(len(k) for k in cfg)
    for k, v in cfg.items():
        print(f"{k:<{width}}  {v}", file=out)
    return cfg
