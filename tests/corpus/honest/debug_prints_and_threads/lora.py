"""
Style debug_prints_and_threads: LoRA with the debugging prints left in (load and every forward)
and torch.set_num_threads(4) at import.
"""

from functools import partial
from pathlib import Path

import torch

torch.set_num_threads(4)  # faster on my laptop

from .bignet import BigNet, load_weights
from .half_precision import HalfLinear


class LoRALinear(HalfLinear):
    def __init__(self, in_features: int, out_features: int, lora_dim: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
        torch.nn.init.zeros_(self.lora_b.weight)
        print("LoRALinear rank", lora_dim, "a", self.lora_a.weight.shape, "b", self.lora_b.weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = super().forward(x)
        delta = self.lora_b(self.lora_a(x))
        print("LoRA forward", x.shape, "base", base.dtype, "delta norm", delta.norm().item())
        return base + delta


class LoraBigNet(BigNet):
    def __init__(self, lora_dim: int = 32):
        super().__init__(make_linear=partial(LoRALinear, lora_dim=lora_dim))


def load(path: str | Path | None = None, lora_dim: int = 32) -> LoraBigNet:
    net = load_weights(LoraBigNet(lora_dim), path)
    print("trainable:", sum(p.numel() for p in net.parameters() if p.requires_grad))
    return net
