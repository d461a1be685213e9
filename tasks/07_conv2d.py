"""2-D convolution (nn.Conv2d with bias) over a batch of images."""

import torch
import torch.nn as nn

BATCH = 4  # GPU: 16
IN_CHANNELS = 8  # GPU: 64
OUT_CHANNELS = 16  # GPU: 128
HEIGHT = 32  # GPU: 256
WIDTH = 32  # GPU: 256
KERNEL_SIZE = 3  # GPU: 3
STRIDE = 1  # GPU: 1
PADDING = 1  # GPU: 1


class Model(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size,
                              stride=stride, padding=padding)

    def forward(self, x):
        return self.conv(x)


def get_inputs():
    return [torch.randn(BATCH, IN_CHANNELS, HEIGHT, WIDTH)]


def get_init_inputs():
    return [IN_CHANNELS, OUT_CHANNELS, KERNEL_SIZE, STRIDE, PADDING]


def get_extra_inputs():
    return {
        "odd_size": [torch.randn(3, IN_CHANNELS, 31, 45)],
        "tiny": [torch.randn(1, IN_CHANNELS, 5, 2)],
    }
