"""Scaled dot-product attention: softmax(Q K^T / sqrt(d)) V per (batch*head)."""

import math

import torch
import torch.nn as nn

BATCH_HEADS = 8  # GPU: 32 * 16
SEQ_LEN = 128  # GPU: 1024
HEAD_DIM = 64  # GPU: 64


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, q, k, v):
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        return torch.matmul(torch.softmax(scores, dim=-1), v)


def get_inputs():
    shape = (BATCH_HEADS, SEQ_LEN, HEAD_DIM)
    return [torch.randn(shape), torch.randn(shape), torch.randn(shape)]


def get_init_inputs():
    return []


def get_extra_inputs():
    odd = (3, 77, HEAD_DIM)
    return {
        "odd_seq": [torch.randn(odd), torch.randn(odd), torch.randn(odd)],
        # fewer queries than keys (cross-attention-like)
        "q_shorter_than_kv": [torch.randn(2, 50, HEAD_DIM), torch.randn(2, 100, HEAD_DIM),
                              torch.randn(2, 100, HEAD_DIM)],
    }
