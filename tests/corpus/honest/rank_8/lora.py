"""
Style rank_8: LoRA with nn.Linear adapters lora_a / lora_b at rank 8 (the default lora_dim is 8).
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .half_precision import HalfLinear


class LoRALinear(HalfLinear):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.lora_dim = lora_dim
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False)
        torch.nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = super().forward(x)
        lora = self.lora_b(self.lora_a(x))
        return base + lora


class LoraBigNet(BigNet):
    def __init__(self, lora_dim: int = 8):
        super().__init__(partial(LoRALinear, lora_dim=lora_dim))


def load(path: str | Path | None = None, lora_dim: int = 8) -> LoraBigNet:
    return load_weights(LoraBigNet(lora_dim), path)
