"""
LoRA on a half-precision base: the float16 weights W stay frozen, and each layer learns a low-rank
update B @ A (rank `lora_dim`) in float32, so y = x W^T + b + (x A^T) B^T.

The adapters cost 2 * 1024 * lora_dim float32 values per layer (4.5 MB for the whole network at
rank 32) instead of the 72 MB a float32 copy of the weights would take to fine-tune.
The LayerNorms (10,240 float32 values) also train: they are already float32, cost next to nothing,
and let each block rescale its features, as in the half-precision model.
"""

from functools import partial
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .half_precision import HalfLinear


class LoRALinear(HalfLinear):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, bias: bool = True):
        # BEGIN SOLUTION: the frozen HalfLinear base, plus float32 adapters without bias: self.lora_a (in -> lora_dim, random) and self.lora_b (lora_dim -> out, zero)
        super().__init__(in_features, out_features, bias)  # frozen float16 base
        # B starts at zero, so a freshly loaded model computes exactly what its base does; A starts
        # random (torch.nn.Linear's init), so B gets a gradient from the first step.
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        torch.nn.init.zeros_(self.lora_b.weight)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION: the base layer's output plus the adapters', in float32
        return super().forward(x) + self.lora_b(self.lora_a(x))
        # END SOLUTION


class LoraBigNet(BigNet):
    def __init__(self, lora_dim: int = 32):
        # BEGIN SOLUTION: a BigNet whose Linear layers are LoRALinear of rank lora_dim
        super().__init__(make_linear=partial(LoRALinear, lora_dim=lora_dim))
        # END SOLUTION


def load(path: str | Path | None = None, lora_dim: int = 32) -> LoraBigNet:
    return load_weights(LoraBigNet(lora_dim), path)
