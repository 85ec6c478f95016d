"""PyTorch as a second opinion: the same convolution through torch.nn.functional."""
import numpy as np

from reference import CHANNELS_LAST, LAYOUTS, to_torch_weight

_TORCH_MODE = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def torch_conv(x, w, bias=None, stride=1, padding_pairs=None, dilation=1, groups=1,
               padding_mode="zeros", layout="NCHW", dtype=np.float64):
    """Convolution through torch (float64 by default), returned as a NumPy array in ``layout``."""
    import torch
    import torch.nn.functional as F

    nd = LAYOUTS[layout]
    last = layout in CHANNELS_LAST
    x = np.asarray(x, dtype=dtype)
    w = np.asarray(w, dtype=dtype)
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x[None]
    if last:
        x = np.moveaxis(x, -1, 1)
    w = to_torch_weight(w, layout)
    tx = torch.from_numpy(np.ascontiguousarray(x))
    tw = torch.from_numpy(np.ascontiguousarray(w))
    tb = None if bias is None else torch.from_numpy(np.asarray(bias, dtype=dtype))
    if padding_pairs is None:
        padding_pairs = ((0, 0),) * nd
    # F.pad takes (before, after) pairs starting from the LAST dim.
    flat = []
    for b, a in reversed(tuple(padding_pairs)):
        flat += [int(b), int(a)]
    if any(flat):
        if padding_mode == "zeros":
            tx = F.pad(tx, flat, mode="constant", value=0.0)
        else:
            tx = F.pad(tx, flat, mode=_TORCH_MODE[padding_mode])
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    ty = conv(tx, tw, tb, stride=stride, padding=0, dilation=dilation, groups=groups)
    y = ty.numpy()
    if last:
        y = np.moveaxis(y, 1, -1)
    if unbatched:
        y = y[0]
    return np.ascontiguousarray(y)
