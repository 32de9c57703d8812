"""
Style float16_compute: LoRA on the float16-compute HalfLinear; the adapters are float32 nn.Linear
layers lora_a (random) and lora_b (zero), added to the base output in float32.
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
        torch.nn.init.zeros_(self.lora_b.weight)  # start exactly at the half-precision model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = super().forward(x)  # float16 matmul, back in x's dtype
        lora = self.lora_b(self.lora_a(x.float()))
        return base + lora.to(base.dtype)


class LoraBigNet(BigNet):
    def __init__(self, lora_dim: int = 32):
        super().__init__(partial(LoRALinear, lora_dim=lora_dim))


def load(path: str | Path | None = None, lora_dim: int = 32) -> LoraBigNet:
    return load_weights(LoraBigNet(lora_dim), path)
