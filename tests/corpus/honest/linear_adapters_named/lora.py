"""
Style linear_adapters_named: LoRA with torch.nn.Linear adapters named `down` and `up`
(instead of lora_a / lora_b), rank 16 by default.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .half_precision import HalfLinear


class LoRALinear(HalfLinear):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        # low-rank adapter, float32: down projects to lora_dim, up projects back (starts at zero)
        self.down = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.up = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        torch.nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.up(self.down(x))


class LoraBigNet(BigNet):
    def __init__(self, lora_dim: int = 16):
        super().__init__(lambda i, o: LoRALinear(i, o, lora_dim))


def load(path: str | Path | None = None, lora_dim: int = 16) -> LoraBigNet:
    return load_weights(LoraBigNet(lora_dim), path)
