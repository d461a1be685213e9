import torch


class Model(torch.nn.Module):
    def forward(self, x):
        return torch.log(x)  # -inf where x is 0, NaN where x < 0


def get_inputs():
    return [torch.randn(64, 64).relu() - (torch.rand(64, 64) < 0.05).float()]


def get_init_inputs():
    return []
