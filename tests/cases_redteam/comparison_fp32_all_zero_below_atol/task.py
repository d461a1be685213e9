import torch


class Model(torch.nn.Module):
    def forward(self, x):
        return x * 1e-6  # every output far below fp32's atol of 1e-5


def get_inputs():
    return [torch.randn(256, 256)]


def get_init_inputs():
    return []
