"""
Style raw_parameter_adapters: the adapters are raw torch.nn.Parameter matrices lora_a (rank, in)
and lora_b (out, rank); forward adds x @ lora_a.T @ lora_b.T in float32.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .half_precision import HalfLinear


class LoRALinear(HalfLinear):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.lora_a = torch.nn.Parameter(torch.randn(lora_dim, in_features, dtype=torch.float32) / in_features**0.5)
        self.lora_b = torch.nn.Parameter(torch.zeros(out_features, lora_dim, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out + x.float() @ self.lora_a.T @ self.lora_b.T


class LoraBigNet(BigNet):
    def __init__(self, lora_dim: int = 32):
        super().__init__(make_linear=partial(LoRALinear, lora_dim=lora_dim))


def load(path: str | Path | None = None, lora_dim: int = 32) -> LoraBigNet:
    return load_weights(LoraBigNet(lora_dim), path)
