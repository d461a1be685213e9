import torch
import torch.nn as nn


class Model(nn.Module):
    """clamp(x * scale + shift * steps, lo, hi) per feature: `scale` a buffer in the state
    dict, `shift` a non-persistent one; lo, hi (floats) and steps (an int) are inputs, and the
    init inputs are a tuple. At its declared sizes the input and output are 2 GiB each."""

    def __init__(self, features, momentum):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("scale", torch.linspace(0.5, 1.5, features))
        self.register_buffer("shift", torch.linspace(-1.0, 1.0, features), persistent=False)

    def forward(self, x, lo: float, hi: float, steps: int):
        return torch.clamp(x * self.scale + self.shift * steps, lo, hi)


batch_size = 2048
features = 256 * 1024


def get_inputs():
    return [torch.randn(batch_size, features), -0.5, 1.5, 2]


def get_init_inputs():
    return (features, 0.1)
