"""Matrix multiplication: C = A @ B with A (M, K) and B (K, N), fp32."""
import torch

M = 384  # GPU: 4096
K = 256  # GPU: 4096
N = 320  # GPU: 4096


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return torch.matmul(A, B)


def get_inputs():
    return [torch.randn(M, K), torch.randn(K, N)]


def get_init_inputs():
    return []


def get_extra_inputs():
    return {
        "not_multiple_of_64": [torch.randn(100, 203), torch.randn(203, 150)],
        "vector_times_matrix": [torch.randn(1, 77), torch.randn(77, 300)],
    }
