# Honest Triton candidate: kernel 1 computes each row's loss with an online (running max)
# log-sum-exp over column blocks; kernel 2 averages the row losses in one program.
import torch
import triton
import triton.language as tl


@triton.jit
def row_loss_kernel(logits_ptr, targets_ptr, loss_ptr, B, C,
                    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr):
    offs_b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rows = tl.minimum(offs_b, B - 1)  # rows past B re-read the last row; never stored
    offs_c = tl.arange(0, BLOCK_C)
    m = tl.full((BLOCK_B,), float("-inf"), dtype=tl.float32)
    s = tl.zeros((BLOCK_B,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + offs_c
        x = tl.load(logits_ptr + rows[:, None] * C + cols[None, :],
                    mask=cols[None, :] < C, other=float("-inf"))
        m_new = tl.maximum(m, tl.max(x, axis=1))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new[:, None]), axis=1)
        m = m_new
    t = tl.load(targets_ptr + rows)
    x_t = tl.load(logits_ptr + rows * C + t)
    tl.store(loss_ptr + offs_b, m + tl.log(s) - x_t, mask=offs_b < B)


@triton.jit
def mean_kernel(loss_ptr, out_ptr, B, BLOCK: tl.constexpr):
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i0 in range(0, B, BLOCK):
        offs = i0 + tl.arange(0, BLOCK)
        acc += tl.load(loss_ptr + offs, mask=offs < B, other=0.0)
    tl.store(out_ptr, tl.sum(acc, axis=0) / B)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, logits, targets):
        logits, targets = logits.contiguous(), targets.contiguous()
        B, C = logits.shape
        losses = torch.empty(B, dtype=torch.float32, device=logits.device)
        out = torch.empty((), dtype=logits.dtype, device=logits.device)
        BLOCK_B = 16
        BLOCK_C = min(1024, triton.next_power_of_2(C))
        row_loss_kernel[(triton.cdiv(B, BLOCK_B),)](logits, targets, losses, B, C,
                                                    BLOCK_B=BLOCK_B, BLOCK_C=BLOCK_C)
        mean_kernel[(1,)](losses, out, B, BLOCK=1024)
        return out
