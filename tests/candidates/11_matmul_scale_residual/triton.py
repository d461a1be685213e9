# Honest Triton candidate: tiled matmul x @ W^T with bias, scale and the residual x fused into
# the epilogue (the Linear is square, so output column n reads x[:, n]).
import torch
import triton
import triton.language as tl


@triton.jit
def linear_scale_residual_kernel(x_ptr, w_ptr, b_ptr, y_ptr, M, N, K, scale,
                                 stride_xm, stride_xk, stride_wn, stride_wk,
                                 stride_ym, stride_yn,
                                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                                 BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + offs_k
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + kk[None, :] * stride_xk,
                    mask=(offs_m[:, None] < M) & (kk[None, :] < K), other=0.0)
        wt = tl.load(w_ptr + offs_n[None, :] * stride_wn + kk[:, None] * stride_wk,
                     mask=(offs_n[None, :] < N) & (kk[:, None] < K), other=0.0)
        acc += tl.dot(x, wt, input_precision="ieee")
    out_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    b = tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0)
    res = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_n[None, :] * stride_xk,
                  mask=out_mask, other=0.0)
    y = (acc + b[None, :]) * scale + res
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn, y, mask=out_mask)


class ModelNew(torch.nn.Module):
    def __init__(self, dim, scale):
        super().__init__()
        self.linear = torch.nn.Linear(dim, dim)
        self.scale = scale

    def forward(self, x):
        w, b = self.linear.weight, self.linear.bias
        M, K = x.shape
        N = w.shape[0]
        y = torch.empty(M, N, dtype=x.dtype, device=x.device)
        BLOCK_M, BLOCK_N, BLOCK_K = 64, 64, 64
        grid = (triton.cdiv(M, BLOCK_M), triton.cdiv(N, BLOCK_N))
        linear_scale_residual_kernel[grid](x, w, b, y, M, N, K, float(self.scale),
                                           x.stride(0), x.stride(1), w.stride(0), w.stride(1),
                                           y.stride(0), y.stride(1),
                                           BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
        return y
