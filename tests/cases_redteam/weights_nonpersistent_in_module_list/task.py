import torch


class Model(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Module() for _ in range(2)])
        for blk in self.blocks:
            blk.register_buffer("scale", torch.rand(d) + 0.5, persistent=False)

    def forward(self, x):
        for blk in self.blocks:
            x = x * blk.scale
        return x


def get_inputs():
    return [torch.randn(16, 32)]


def get_init_inputs():
    return [32]
