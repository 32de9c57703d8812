"""
QLoRA: LoRA adapters on a 4-bit base. The frozen weights take 5 bits each (as in low_precision.py)
and only the float32 adapters train, so fine-tuning BigNet needs about 16 MB for the model.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .low_precision import Linear4Bit


class QLoRALinear(Linear4Bit):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, group_size: int = 16, bias: bool = True):
        # BEGIN SOLUTION: the frozen 4-bit base (its bias too), plus float32 adapters as in lora.py: self.lora_a (random) and self.lora_b (zero)
        super().__init__(in_features, out_features, bias, group_size)
        self.requires_grad_(False)  # the base, bias included, stays as loaded
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        torch.nn.init.zeros_(self.lora_b.weight)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION: the 4-bit layer's output plus the adapters'
        return super().forward(x) + self.lora_b(self.lora_a(x))
        # END SOLUTION


class QLoRABigNet(BigNet):
    def __init__(self, lora_dim: int = 32, group_size: int = 16):
        # BEGIN SOLUTION: a BigNet whose Linear layers are QLoRALinear
        super().__init__(make_linear=partial(QLoRALinear, lora_dim=lora_dim, group_size=group_size))
        # END SOLUTION


def load(path: str | Path | None = None, lora_dim: int = 32) -> QLoRABigNet:
    return load_weights(QLoRABigNet(lora_dim), path)
