"""Sum reduction over dim 1 of a (B, N) tensor, keepdim=False: y[b] = sum_n x[b, n]."""
import torch

BATCH = 256  # GPU: 4096
DIM = 4096  # GPU: 65536
REDUCE_DIM = 1


class Model(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(x, dim=self.dim)


def get_inputs():
    return [torch.randn(BATCH, DIM)]


def get_init_inputs():
    return [REDUCE_DIM]


def get_extra_inputs():
    return {
        "odd_shape": [torch.randn(37, 1000)],
        "one_long_row": [torch.randn(1, 100003)],
        "many_short_rows": [torch.randn(3000, 7)],
    }
