import torch
import kagent_no_such_module_xyz

class Model(torch.nn.Module):
    def forward(self, x):
        return x.relu()


def get_inputs():
    return [torch.randn(64, 64)]


def get_init_inputs():
    return []
