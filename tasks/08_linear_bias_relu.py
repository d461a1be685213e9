"""Fused chain: relu(x @ W^T + b), i.e. nn.Linear followed by ReLU."""

import torch
import torch.nn as nn

BATCH = 128  # GPU: 1024
IN_FEATURES = 256  # GPU: 4096
OUT_FEATURES = 256  # GPU: 4096


class Model(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x):
        return torch.relu(self.linear(x))


def get_inputs():
    return [torch.randn(BATCH, IN_FEATURES)]


def get_init_inputs():
    return [IN_FEATURES, OUT_FEATURES]


def get_extra_inputs():
    return {
        "odd_batch": [torch.randn(37, IN_FEATURES)],
        "single_row": [torch.randn(1, IN_FEATURES)],
    }
