import torch


class Model(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.enc = torch.nn.Linear(d, d, bias=False)
        self.dec = torch.nn.Linear(d, d, bias=False)
        self.dec.weight = self.enc.weight  # tied

    def forward(self, x):
        return self.dec(self.enc(x).relu())


def get_inputs():
    return [torch.randn(16, 32)]


def get_init_inputs():
    return [32]
