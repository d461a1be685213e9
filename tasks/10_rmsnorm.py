"""RMSNorm over the last dim with a learnable weight: x / sqrt(mean(x^2) + eps) * weight."""

import torch
import torch.nn as nn

BATCH = 16  # GPU: 64
SEQ_LEN = 128  # GPU: 2048
DIM = 512  # GPU: 4096
EPS = 1e-6  # GPU: 1e-6


class Model(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


def get_inputs():
    return [torch.randn(BATCH, SEQ_LEN, DIM)]


def get_init_inputs():
    return [DIM, EPS]


def get_extra_inputs():
    return {
        "odd_rows": [torch.randn(3, 37, DIM)],
        "large_values": [torch.randn(BATCH, 8, DIM) * 1e3],
        "small_values": [torch.randn(BATCH, 8, DIM) * 1e-2],
    }
