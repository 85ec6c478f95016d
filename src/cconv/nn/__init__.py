"""cconv.nn: autograd-free layers over cconv's convolutions (PyTorch-compatible weights).

Every layer: ``forward(x)`` / ``layer(x)``; ``backward(grad_out) -> grad_in`` (adds
parameter gradients into ``layer.grads``); ``params`` / ``grads`` dicts; ``zero_grad()``;
``train()`` / ``eval()``; ``named_parameters()`` / ``parameters()``; ``state_dict()`` /
``load_state_dict()`` with PyTorch's key names and layouts; ``save`` / ``load`` (.npz).
See the README section "cconv.nn" and each class's docstring.
"""
from . import init
from .activation import GELU, LeakyReLU, ReLU
from .container import Residual, Sequential
from .conv import (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d,
                   DepthwiseSeparableConv2d)
from .linear import Dropout, Flatten, Identity, Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import Module, ParamRef, count_parameters
from .norm import BatchNorm1d, BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "Module", "ParamRef", "count_parameters", "init",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "DepthwiseSeparableConv2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "GELU",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Linear", "Dropout",
    "Identity", "Sequential", "Residual", "CrossEntropyLoss", "MSELoss",
]
