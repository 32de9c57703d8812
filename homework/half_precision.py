"""
Half precision: every Linear layer stores its weight and bias in float16, half the memory of float32.

The weights are frozen (float16 is too coarse to train in directly). The computation still runs in
the input's float32: each layer turns its weights back to float32 just for its own matmul, which is
fast on every device and keeps the outputs within about 1e-4 of BigNet's.
"""

from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .frozen_linear import linear_with_frozen_weight


class HalfLinear(torch.nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        # BEGIN SOLUTION: a torch.nn.Linear with its weight and bias in float16, frozen
        # Same parameter names as torch.nn.Linear, so a float32 checkpoint loads as is
        # (load_state_dict converts float32 to float16 while copying).
        super().__init__(in_features, out_features, bias, dtype=torch.float16)
        self.requires_grad_(False)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION: float32 in, float32 out (frozen_linear.linear_with_frozen_weight saves memory in the backward pass)
        # One layer's weights exist in float32 at a time, for this matmul only.
        return linear_with_frozen_weight(x, lambda: self.weight, self.bias)
        # END SOLUTION


class HalfBigNet(BigNet):
    def __init__(self):
        # BEGIN SOLUTION: a BigNet whose Linear layers are HalfLinear
        super().__init__(make_linear=HalfLinear)
        # END SOLUTION


def load(path: str | Path | None = None) -> HalfBigNet:
    return load_weights(HalfBigNet(), path)
