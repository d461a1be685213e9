"""LayerNorm over the last dim with learnable weight and bias: nn.LayerNorm(DIM)(x)."""
import torch

BATCH = 256  # GPU: 4096
DIM = 4096  # GPU: 8192


class Model(torch.nn.Module):
    def __init__(self, normalized_shape: int):
        super().__init__()
        self.ln = torch.nn.LayerNorm(normalized_shape)
        # Non-trivial affine parameters, so a kernel that ignores weight or bias is caught.
        torch.nn.init.uniform_(self.ln.weight, 0.5, 1.5)
        torch.nn.init.normal_(self.ln.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x)


def get_inputs():
    return [torch.randn(BATCH, DIM)]


def get_init_inputs():
    return [DIM]


def get_extra_inputs():
    return {
        "odd_batch_3d": [torch.randn(3, 7, DIM)],  # leading dims are flattened into rows
        "large_mean": [torch.randn(16, DIM) + 100.0],  # E[x^2] - E[x]^2 in fp32 cancels badly
    }
