# expect: incorrect
# Bug: applies the weight but forgets to add the bias.
import torch
import triton
import triton.language as tl


@triton.jit
def layernorm_kernel(x_ptr, w_ptr, b_ptr, y_ptr, cols, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    c = tl.arange(0, BLOCK_N)
    mask = c < cols
    x = tl.load(x_ptr + row * cols + c, mask=mask, other=0.0)
    mean = tl.sum(x, axis=0) / cols
    d = tl.where(mask, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=0) / cols + eps)
    w = tl.load(w_ptr + c, mask=mask, other=0.0)
    tl.store(y_ptr + row * cols + c, d * rstd * w, mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self, normalized_shape):
        super().__init__()
        self.ln = torch.nn.LayerNorm(normalized_shape)

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        cols = self.ln.weight.numel()
        rows = x.numel() // cols
        layernorm_kernel[(rows,)](x, self.ln.weight, self.ln.bias, y, cols, self.ln.eps,
                                  BLOCK_N=triton.next_power_of_2(cols))
        return y
