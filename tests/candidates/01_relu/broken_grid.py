# expect: incorrect
# Bug: the grid uses floor division, so the last partial block is never processed; it only
# shows when numel is not a multiple of BLOCK (the odd_shape and edge_values input sets).
import torch
import triton
import triton.language as tl


@triton.jit
def relu_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(y_ptr + offs, tl.maximum(x, 0.0), mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.zeros_like(x)
        n = x.numel()
        BLOCK = 1024
        relu_kernel[(n // BLOCK,)](x, y, n, BLOCK=BLOCK)
        return y
