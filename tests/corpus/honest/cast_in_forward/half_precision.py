"""
Style cast_in_forward: float16 storage, and forward casts the weight and bias back to float32 and
calls F.linear directly (no frozen_linear helper).
"""

from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .frozen_linear import linear_with_frozen_weight


class HalfLinear(torch.nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.half()  # weight (and bias) -> float16
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float()
        b = self.bias.float() if self.bias is not None else None
        return torch.nn.functional.linear(x, w, b)


class HalfBigNet(BigNet):
    def __init__(self):
        super().__init__(make_linear=HalfLinear)


def load(path: str | Path | None = None) -> HalfBigNet:
    return load_weights(HalfBigNet(), path)
