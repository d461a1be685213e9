"""Fused chain: y = (x @ W^T + b) * scale + x, with a square nn.Linear."""

import torch
import torch.nn as nn

BATCH = 128  # GPU: 2048
DIM = 256  # GPU: 4096
SCALE = 0.5  # GPU: 0.5


class Model(nn.Module):
    def __init__(self, dim, scale):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.scale = scale

    def forward(self, x):
        return self.linear(x) * self.scale + x


def get_inputs():
    return [torch.randn(BATCH, DIM)]


def get_init_inputs():
    return [DIM, SCALE]


def get_extra_inputs():
    return {
        "odd_batch": [torch.randn(33, DIM)],
    }
