import torch


class Model(torch.nn.Module):
    def forward(self, x):
        return torch.sum(x, dim=1)


def get_inputs():
    return [torch.randn(64, 8192, dtype=torch.float16)]


def get_init_inputs():
    return []
