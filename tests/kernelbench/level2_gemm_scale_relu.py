import torch
import torch.nn as nn


class Model(nn.Module):
    """Linear, scale by a Python float, ReLU. Init inputs come as a tuple."""

    def __init__(self, in_features, out_features, scale):
        super().__init__()
        self.gemm = nn.Linear(in_features, out_features)
        self.scale = scale

    def forward(self, x):
        return torch.relu(self.gemm(x) * self.scale)


batch_size = 1024
in_features = 8192
out_features = 8192
scale = 0.5


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return (in_features, out_features, scale)
