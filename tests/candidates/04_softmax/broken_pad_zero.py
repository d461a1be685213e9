# expect: incorrect
# Bug: masked lanes load 0.0 instead of -inf, so when N is not a power of two the padding
# adds exp(0 - max) terms to the denominator (the main set, N = 8192, still passes).
import torch
import triton
import triton.language as tl


@triton.jit
def softmax_kernel(x_ptr, y_ptr, cols, stride_row, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    c = tl.arange(0, BLOCK)
    mask = c < cols
    x = tl.load(x_ptr + row * stride_row + c, mask=mask, other=0.0)
    e = tl.exp(x - tl.max(x, axis=0))
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
