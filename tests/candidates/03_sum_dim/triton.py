import torch
import triton
import triton.language as tl


@triton.jit
def row_sum_kernel(x_ptr, y_ptr, rows, cols, stride_row,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # Each program sums BLOCK_M rows, walking the columns BLOCK_N at a time.
    pid = tl.program_id(0)
    r = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = r < rows
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, cols, BLOCK_N):
        c = start + tl.arange(0, BLOCK_N)
        mask = row_mask[:, None] & (c < cols)[None, :]
        acc += tl.load(x_ptr + r[:, None] * stride_row + c[None, :], mask=mask, other=0.0)
    tl.store(y_ptr + r, tl.sum(acc, axis=1), mask=row_mask)


class ModelNew(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        assert x.dim() == 2 and self.dim in (1, -1), "kernel reduces the last dim of a 2D tensor"
        x = x.contiguous()
        rows, cols = x.shape
        y = torch.empty(rows, dtype=x.dtype, device=x.device)
        BLOCK_N = min(triton.next_power_of_2(cols), 1024)
        BLOCK_M = max(1, 4096 // BLOCK_N)  # short rows: more rows per program
        grid = (triton.cdiv(rows, BLOCK_M),)
        row_sum_kernel[grid](x, y, rows, cols, x.stride(0), BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N)
        return y
