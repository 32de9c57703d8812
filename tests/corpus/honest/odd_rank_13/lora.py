"""
Style odd_rank_13: LoRA at an odd rank, 13 (the default lora_dim), adapters lora_a / lora_b.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .half_precision import HalfLinear


class LoRALinear(HalfLinear):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        self.lora_b.weight.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lora_a(x.to(torch.float32))
        return super().forward(x) + self.lora_b(h)


class LoraBigNet(BigNet):
    def __init__(self, lora_dim: int = 13):
        def make_linear(in_features, out_features):
            return LoRALinear(in_features, out_features, lora_dim=lora_dim)

        super().__init__(make_linear)


def load(path: str | Path | None = None, lora_dim: int = 13) -> LoraBigNet:
    return load_weights(LoraBigNet(lora_dim), path)
