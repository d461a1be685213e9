import torch


class Model(torch.nn.Module):
    def forward(self, x):
        return torch.full_like(x, float(x.shape[1]))


def get_inputs():
    return [torch.randn(64, 64)]


def get_init_inputs():
    return []
