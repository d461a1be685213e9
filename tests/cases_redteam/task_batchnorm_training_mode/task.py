import torch


class Model(torch.nn.Module):
    def __init__(self, features):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(features)  # left in training mode: batch statistics

    def forward(self, x):
        return self.bn(x)


def get_inputs():
    return [torch.randn(128, 64)]


def get_init_inputs():
    return [64]
