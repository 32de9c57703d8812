"""
Style odd_rank_13: QLoRA at an odd rank, 13 (the default lora_dim), adapters lora_a / lora_b.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .low_precision import Linear4Bit


class QLoRALinear(Linear4Bit):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, group_size: int = 16, bias: bool = True):
        super().__init__(in_features, out_features, bias, group_size)
        for p in self.parameters():  # only the bias so far: freeze it
            p.requires_grad = False
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        self.lora_b.weight.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lora_a(x.to(torch.float32))
        return super().forward(x) + self.lora_b(h)


class QLoRABigNet(BigNet):
    def __init__(self, lora_dim: int = 13, group_size: int = 16):
        def make_linear(in_features, out_features):
            return QLoRALinear(in_features, out_features, lora_dim=lora_dim, group_size=group_size)

        super().__init__(make_linear)


def load(path: str | Path | None = None, lora_dim: int = 13) -> QLoRABigNet:
    return load_weights(QLoRABigNet(lora_dim), path)
