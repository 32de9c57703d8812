"""
Style kaiming_normal_init: QLoRA with A initialized explicitly by kaiming_uniform_(a=sqrt(5)),
B zero, and the adapter output scaled by alpha / rank (alpha = 16).
"""

import math
from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .low_precision import Linear4Bit


class QLoRALinear(Linear4Bit):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, group_size: int = 16, bias: bool = True):
        super().__init__(in_features, out_features, bias, group_size)
        self.requires_grad_(False)
        self.alpha = 16
        self.scaling = self.alpha / lora_dim
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.lora_b(self.lora_a(x)) * self.scaling


class QLoRABigNet(BigNet):
    def __init__(self, lora_dim: int = 32, group_size: int = 16):
        super().__init__(make_linear=partial(QLoRALinear, lora_dim=lora_dim, group_size=group_size))


def load(path: str | Path | None = None, lora_dim: int = 32) -> QLoRABigNet:
    return load_weights(QLoRABigNet(lora_dim), path)
