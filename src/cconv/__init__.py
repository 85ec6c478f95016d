"""cconv: fast CPU convolutions on plain NumPy arrays."""
from ._version import __version__
from . import _depthwise, _im2col, _isa, _winograd

_isa.configure(_im2col, _depthwise, _winograd)

from .functional import conv1d, conv2d, conv3d, winograd_weights, WinogradWeights
from ._threads import get_num_threads, set_num_threads, num_threads
from ._config import show_config

__all__ = [
    "conv1d", "conv2d", "conv3d", "winograd_weights", "WinogradWeights",
    "get_num_threads", "set_num_threads", "num_threads", "show_config",
    "__version__",
]
