"""Cross-entropy loss (mean over the batch) of logits (B, C) against integer class targets (B,)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 256  # GPU: 4096
NUM_CLASSES = 1000  # GPU: 32000


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets)


def get_inputs():
    return [torch.randn(BATCH, NUM_CLASSES), torch.randint(0, NUM_CLASSES, (BATCH,))]


def get_init_inputs():
    return []


def get_extra_inputs():
    return {
        "large_logits": [torch.randn(BATCH, NUM_CLASSES) * 30,
                         torch.randint(0, NUM_CLASSES, (BATCH,))],
        "odd_shape": [torch.randn(37, 333), torch.randint(0, 333, (37,))],
    }
