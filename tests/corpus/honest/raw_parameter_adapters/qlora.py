"""
Style raw_parameter_adapters: QLoRA whose adapters are raw torch.nn.Parameter matrices lora_a
(rank, in) and lora_b (out, rank).
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .low_precision import Linear4Bit


class QLoRALinear(Linear4Bit):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, group_size: int = 16, bias: bool = True):
        super().__init__(in_features, out_features, bias, group_size)
        if self.bias is not None:
            self.bias.requires_grad = False
        self.lora_a = torch.nn.Parameter(torch.randn(lora_dim, in_features, dtype=torch.float32) / in_features**0.5)
        self.lora_b = torch.nn.Parameter(torch.zeros(out_features, lora_dim, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out + x.float() @ self.lora_a.T @ self.lora_b.T


class QLoRABigNet(BigNet):
    def __init__(self, lora_dim: int = 32, group_size: int = 16):
        super().__init__(make_linear=partial(QLoRALinear, lora_dim=lora_dim, group_size=group_size))


def load(path: str | Path | None = None, lora_dim: int = 32) -> QLoRABigNet:
    return load_weights(QLoRABigNet(lora_dim), path)
