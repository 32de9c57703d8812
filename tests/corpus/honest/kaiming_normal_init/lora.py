"""
Style kaiming_normal_init: LoRA with A initialized explicitly by kaiming_uniform_(a=sqrt(5)),
B zero, and the adapter output scaled by alpha / rank (alpha = 16).
"""

import math
from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .half_precision import HalfLinear


class LoRALinear(HalfLinear):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.alpha = 16
        self.scaling = self.alpha / lora_dim
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.lora_b(self.lora_a(x)) * self.scaling


class LoraBigNet(BigNet):
    def __init__(self, lora_dim: int = 32):
        super().__init__(make_linear=partial(LoRALinear, lora_dim=lora_dim))


def load(path: str | Path | None = None, lora_dim: int = 32) -> LoraBigNet:
    return load_weights(LoraBigNet(lora_dim), path)
