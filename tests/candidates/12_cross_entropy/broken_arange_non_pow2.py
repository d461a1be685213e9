# expect: runtime_error
# Bug: the column block is set to the number of classes (1000), but tl.arange needs a
# power-of-two range, so the kernel fails to compile/trace at launch.
import torch
import triton
import triton.language as tl


@triton.jit
def cross_entropy_kernel(logits_ptr, targets_ptr, loss_ptr, B, C, BLOCK_C: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    x = tl.load(logits_ptr + row * C + cols, mask=cols < C, other=float("-inf"))
    m = tl.max(x, axis=0)
    lse = m + tl.log(tl.sum(tl.exp(x - m), axis=0))
    t = tl.load(targets_ptr + row)
    x_t = tl.load(logits_ptr + row * C + t)
    tl.atomic_add(loss_ptr, (lse - x_t) / B)


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, logits, targets):
        logits, targets = logits.contiguous(), targets.contiguous()
        B, C = logits.shape
        loss = torch.zeros((), dtype=logits.dtype, device=logits.device)
        cross_entropy_kernel[(B,)](logits, targets, loss, B, C, BLOCK_C=C)
        return loss
