"""
QLoRA: LoRA adapters on a 4-bit base. The frozen weights take 5 bits each (as in low_precision.py)
and only the float32 adapters train, so fine-tuning BigNet needs about 16 MB for the model.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .lora import ADAPTER_KEYS, make_lora_adapters
from .low_precision import Linear4Bit


class QLoRALinear(Linear4Bit):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, group_size: int = 16, bias: bool = True):
        # BEGIN SOLUTION: the frozen 4-bit base (its bias too), plus the adapters as self.lora_a and self.lora_b
        super().__init__(in_features, out_features, bias, group_size)
        self.requires_grad_(False)  # the base, bias included, stays as loaded
        self.lora_a, self.lora_b = make_lora_adapters(in_features, out_features, lora_dim)
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
    return load_weights(QLoRABigNet(lora_dim), path, new_keys=ADAPTER_KEYS)
