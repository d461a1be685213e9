# expect: runtime_error
# Bug: the launch leaves out the kernel's `stride_row` argument (TypeError at launch).
import torch
import triton
import triton.language as tl


@triton.jit
def row_sum_kernel(x_ptr, y_ptr, rows, cols, stride_row, BLOCK_N: tl.constexpr):
    r = tl.program_id(0)
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for start in range(0, cols, BLOCK_N):
        c = start + tl.arange(0, BLOCK_N)
        acc += tl.load(x_ptr + r * stride_row + c, mask=c < cols, other=0.0)
    tl.store(y_ptr + r, tl.sum(acc, axis=0))


class ModelNew(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        x = x.contiguous()
        rows, cols = x.shape
        y = torch.empty(rows, dtype=x.dtype, device=x.device)
        BLOCK_N = min(triton.next_power_of_2(cols), 1024)
        row_sum_kernel[(rows,)](x, y, rows, cols, BLOCK_N=BLOCK_N)
        return y
