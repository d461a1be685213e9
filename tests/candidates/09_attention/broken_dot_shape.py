# expect: runtime_error
# Bug: the scores are computed as tl.dot(q, k) without transposing k: q is (BLOCK_M, BLOCK_D)
# and k is (BLOCK_N, BLOCK_D), so the inner dimensions (64 vs 32) do not match.
import math

import torch
import triton
import triton.language as tl


@triton.jit
def attention_kernel(q_ptr, k_ptr, v_ptr, o_ptr, Sq, Sk, D, scale,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    bh = tl.program_id(0)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q_base = q_ptr + bh * Sq * D
    kv_off = bh * Sk * D
    q = tl.load(q_base + offs_m[:, None] * D + offs_d[None, :],
                mask=(offs_m[:, None] < Sq) & (offs_d[None, :] < D), other=0.0)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for n0 in range(0, Sk, BLOCK_N):
        cols = n0 + offs_n
        kv_mask = (cols[:, None] < Sk) & (offs_d[None, :] < D)
        k = tl.load(k_ptr + kv_off + cols[:, None] * D + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + kv_off + cols[:, None] * D + offs_d[None, :], mask=kv_mask, other=0.0)
        s = tl.dot(q, k, input_precision="ieee") * scale
        s = tl.where(cols[None, :] < Sk, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(o_ptr + bh * Sq * D + offs_m[:, None] * D + offs_d[None, :], out,
             mask=(offs_m[:, None] < Sq) & (offs_d[None, :] < D))


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, q, k, v):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        B, Sq, D = q.shape
        Sk = k.shape[1]
        out = torch.empty_like(q)
        BLOCK_M, BLOCK_N = 64, 32
        BLOCK_D = max(16, triton.next_power_of_2(D))
        grid = (B, triton.cdiv(Sq, BLOCK_M))
        attention_kernel[grid](q, k, v, out, Sq, Sk, D, 1.0 / math.sqrt(D),
                               BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
        return out
