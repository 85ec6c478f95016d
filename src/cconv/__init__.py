"""cconv: fast CPU convolutions on plain NumPy arrays."""
from ._version import __version__
from . import _backward, _core, _depthwise, _direct, _fft, _im2col, _isa, _winograd

_isa.configure(_im2col, _depthwise, _backward, _winograd, _direct, _fft, _core)

from .functional import conv1d, conv2d, conv3d, winograd_weights, WinogradWeights
from .backward import *  # noqa: F401,F403  (grad_input / grad_weight / backward, conv_transpose*)
from .backward import __all__ as _backward_all
from ._threads import get_num_threads, set_num_threads, num_threads
from ._config import show_config
from ._packed import PackedWeights, pack_weights
from ._memory import set_array_cache, array_cache_info

__all__ = [
    "conv1d", "conv2d", "conv3d", "winograd_weights", "WinogradWeights",
    "get_num_threads", "set_num_threads", "num_threads", "show_config",
    "pack_weights", "PackedWeights", "set_array_cache", "array_cache_info",
    "__version__",
] + list(_backward_all)

from ._shapes import conv_output_shape, conv_macs, receptive_field, ReceptiveField  # noqa: E402
from . import nn, optim  # noqa: E402

__all__ += ["conv_output_shape", "conv_macs", "receptive_field", "ReceptiveField", "nn",
            "optim"]
