import torch


class Model(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.w = torch.randn(d, generator=g)  # a plain tensor attribute: neither parameter nor buffer

    def forward(self, x):
        return x * self.w


def get_inputs():
    return [torch.randn(16, 32)]


def get_init_inputs():
    return [32]
