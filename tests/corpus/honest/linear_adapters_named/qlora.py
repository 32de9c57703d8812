"""
Style linear_adapters_named: QLoRA with torch.nn.Linear adapters named `down` and `up`,
rank 16 by default.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .low_precision import Linear4Bit


class QLoRALinear(Linear4Bit):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, group_size: int = 16, bias: bool = True):
        super().__init__(in_features, out_features, bias, group_size)
        self.requires_grad_(False)  # freeze the 4-bit base and its bias
        self.down = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.up = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        torch.nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.up(self.down(x))


class QLoRABigNet(BigNet):
    def __init__(self, lora_dim: int = 16, group_size: int = 16):
        super().__init__(lambda i, o: QLoRALinear(i, o, lora_dim, group_size))


def load(path: str | Path | None = None, lora_dim: int = 16) -> QLoRABigNet:
    return load_weights(QLoRABigNet(lora_dim), path)
