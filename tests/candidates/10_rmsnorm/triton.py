# Honest Triton candidate: each program normalises BLOCK_R rows held whole in registers
# (BLOCK_D = next power of two >= dim, masked).
import torch
import triton
import triton.language as tl


@triton.jit
def rmsnorm_kernel(x_ptr, w_ptr, y_ptr, rows, dim, eps,
                   BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_r[:, None] < rows) & (offs_d[None, :] < dim)
    ptrs = offs_r[:, None] * dim + offs_d[None, :]
    x = tl.load(x_ptr + ptrs, mask=mask, other=0.0)
    inv = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / dim + eps)
    w = tl.load(w_ptr + offs_d, mask=offs_d < dim, other=0.0)
    tl.store(y_ptr + ptrs, x * inv[:, None] * w[None, :], mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x = x.contiguous()
        dim = x.shape[-1]
        rows = x.numel() // dim
        y = torch.empty_like(x)
        BLOCK_D = triton.next_power_of_2(dim)
        BLOCK_R = max(1, min(64, 16384 // BLOCK_D))
        grid = (triton.cdiv(rows, BLOCK_R),)
        rmsnorm_kernel[grid](x, self.weight, y, rows, dim, float(self.eps),
                             BLOCK_R=BLOCK_R, BLOCK_D=BLOCK_D)
        return y
