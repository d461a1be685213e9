import torch
import random

class Model(torch.nn.Module):
    def forward(self, x):
        return x.relu() * random.random()


def get_inputs():
    return [torch.randn(64, 64)]


def get_init_inputs():
    return []
