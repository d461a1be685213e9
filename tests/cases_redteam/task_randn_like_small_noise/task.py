import torch


class Model(torch.nn.Module):
    def forward(self, x):
        return x.relu() + 1e-3 * torch.randn_like(x)


def get_inputs():
    return [torch.randn(64, 64)]


def get_init_inputs():
    return []
