import torch
import triton
import triton.language as tl


@triton.jit
def layernorm_kernel(x_ptr, w_ptr, b_ptr, y_ptr, rows, cols, eps,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # Each program normalizes BLOCK_M whole rows (BLOCK_N >= cols).
    r = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    c = tl.arange(0, BLOCK_N)
    col_mask = c < cols
    mask = (r < rows)[:, None] & col_mask[None, :]
    offs = r[:, None] * cols + c[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    mean = tl.sum(x, axis=1) / cols
    d = tl.where(mask, x - mean[:, None], 0.0)
    var = tl.sum(d * d, axis=1) / cols
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(w_ptr + c, mask=col_mask, other=0.0)
    b = tl.load(b_ptr + c, mask=col_mask, other=0.0)
    y = d * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(y_ptr + offs, y, mask=mask)


class ModelNew(torch.nn.Module):
    def __init__(self, normalized_shape):
        super().__init__()
        self.ln = torch.nn.LayerNorm(normalized_shape)

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        cols = self.ln.weight.numel()
        rows = x.numel() // cols
        BLOCK_N = triton.next_power_of_2(cols)
        BLOCK_M = max(1, min(16, 16384 // BLOCK_N))
        grid = (triton.cdiv(rows, BLOCK_M),)
        layernorm_kernel[grid](x, self.ln.weight, self.ln.bias, y, rows, cols, self.ln.eps,
                               BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N)
        return y
