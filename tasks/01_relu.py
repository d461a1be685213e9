"""Elementwise ReLU: y = max(x, 0)."""
import torch

BATCH = 16  # GPU: 4096
DIM = 65536  # GPU: 393216


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def get_inputs():
    return [torch.randn(BATCH, DIM)]


def get_init_inputs():
    return []


def get_extra_inputs():
    edge = torch.randn(9, 4099) * 1e3
    edge[:, ::3] = 0.0  # exact zeros
    edge[:, 1::7] = -0.0
    return {
        "odd_shape": [torch.randn(7, 1001)],
        "edge_values": [edge],
        "single_element": [torch.tensor([[-1.5]])],
    }
