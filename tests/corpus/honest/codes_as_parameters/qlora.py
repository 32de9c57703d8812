"""
Style codes_as_parameters: QLoRA on the Linear4Bit whose codes and scales are frozen
nn.Parameters; adapters lora_a / lora_b in float32.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .low_precision import Linear4Bit


class QLoRALinear(Linear4Bit):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, group_size: int = 16, bias: bool = True):
        super().__init__(in_features, out_features, bias, group_size)
        for param in self.parameters():  # codes, scales and bias: all frozen
            param.requires_grad_(False)
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        torch.nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.lora_b(self.lora_a(x))


class QLoRABigNet(BigNet):
    def __init__(self, lora_dim: int = 32, group_size: int = 16):
        super().__init__(make_linear=partial(QLoRALinear, lora_dim=lora_dim, group_size=group_size))


def load(path: str | Path | None = None, lora_dim: int = 32) -> QLoRABigNet:
    return load_weights(QLoRABigNet(lora_dim), path)
