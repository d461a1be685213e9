import torch
import numpy as np

class Model(torch.nn.Module):
    def forward(self, x):
        return x.relu() + torch.from_numpy(np.random.rand(*x.shape)).float()


def get_inputs():
    return [torch.randn(64, 64)]


def get_init_inputs():
    return []
