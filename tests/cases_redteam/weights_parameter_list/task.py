import torch


class Model(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.scales = torch.nn.ParameterList([torch.nn.Parameter(torch.rand(d) + 0.5) for _ in range(2)])
        self.shifts = torch.nn.ParameterDict({"a": torch.nn.Parameter(torch.randn(d))})

    def forward(self, x):
        return x * self.scales[0] * self.scales[1] + self.shifts["a"]


def get_inputs():
    return [torch.randn(16, 32)]


def get_init_inputs():
    return [32]
