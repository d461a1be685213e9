import torch
import triton
import triton.language as tl


@triton.jit
def softmax_kernel(x_ptr, y_ptr, cols, stride_row, BLOCK: tl.constexpr):
    # One program per row; the whole row fits in one block.
    row = tl.program_id(0)
    c = tl.arange(0, BLOCK)
    mask = c < cols
    x = tl.load(x_ptr + row * stride_row + c, mask=mask, other=-float("inf"))
    e = tl.exp(x - tl.max(x, axis=0))  # padded lanes: exp(-inf) = 0
    tl.store(y_ptr + row * stride_row + c, e / tl.sum(e, axis=0), mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        cols = x.shape[-1]
        rows = x.numel() // cols
        BLOCK = triton.next_power_of_2(cols)
        softmax_kernel[(rows,)](x, y, cols, cols, BLOCK=BLOCK)
        return y
