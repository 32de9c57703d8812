"""
Style a_zero_b_random: LoRA whose A (lora_a) starts at zero and B (lora_b) is random normal
(std 0.01), so the product B A is still zero at load.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .half_precision import HalfLinear


class LoRALinear(HalfLinear):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False)
        torch.nn.init.zeros_(self.lora_a.weight)
        torch.nn.init.normal_(self.lora_b.weight, mean=0.0, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.lora_b(self.lora_a(x))


class LoraBigNet(BigNet):
    def __init__(self, lora_dim: int = 32):
        super().__init__(make_linear=partial(LoRALinear, lora_dim=lora_dim))


def load(path: str | Path | None = None, lora_dim: int = 32) -> LoraBigNet:
    return load_weights(LoraBigNet(lora_dim), path)
