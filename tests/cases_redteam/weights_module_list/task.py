import torch


class Model(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(d, d) for _ in range(3)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def get_inputs():
    return [torch.randn(16, 32)]


def get_init_inputs():
    return [32]
