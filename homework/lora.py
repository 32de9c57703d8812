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

ADAPTER_KEYS = ("lora_a.weight", "lora_b.weight")  # not in the base checkpoint: they start from their init


def make_lora_adapters(in_features: int, out_features: int, lora_dim: int) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    """
    The two float32 adapter layers A (in -> lora_dim) and B (lora_dim -> out). B starts at zero,
    so a freshly loaded model computes exactly what its base does; A starts random, so B gets a
    gradient from the first step.
    """
    # BEGIN SOLUTION: the two float32 layers, without bias, initialised as this docstring says
    lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
    lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
    torch.nn.init.zeros_(lora_b.weight)
    return lora_a, lora_b
    # END SOLUTION


class LoRALinear(HalfLinear):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, bias: bool = True):
        # BEGIN SOLUTION: the frozen HalfLinear base, plus the adapters as self.lora_a and self.lora_b
        super().__init__(in_features, out_features, bias)  # frozen float16 base
        self.lora_a, self.lora_b = make_lora_adapters(in_features, out_features, lora_dim)
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
    return load_weights(LoraBigNet(lora_dim), path, new_keys=ADAPTER_KEYS)
