import torch
import torch.nn as nn


class Model(nn.Module):
    """Sum over dim 1 of x times a per-feature buffer, then times a Python float input.
    kernel-size-like small constants (`reduce_dim`) must not be touched."""

    def __init__(self, features):
        super().__init__()
        self.register_buffer("weight", torch.linspace(0.5, 1.5, features))

    def forward(self, x, factor: float):
        return (x * self.weight).sum(dim=reduce_dim) * factor


batch_size = 256
features = 1048576
reduce_dim = 1


def get_inputs():
    return [torch.randn(batch_size, features), 0.25]


def get_init_inputs():
    return [features]
