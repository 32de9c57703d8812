"""
Style float16_compute: HalfLinear keeps float16 weights and runs the matmul itself in float16
(the input is cast to half), then casts the result back to the input's dtype.
"""

from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .frozen_linear import linear_with_frozen_weight


class HalfLinear(torch.nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        # weight and bias are created directly in float16; the checkpoint's float32 is converted on load
        super().__init__(in_features, out_features, bias, dtype=torch.float16)
        self.weight.requires_grad = False
        if self.bias is not None:
            self.bias.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_dtype = x.dtype
        out = torch.nn.functional.linear(x.half(), self.weight, self.bias)
        return out.to(input_dtype)


class HalfBigNet(BigNet):
    def __init__(self):
        super().__init__(HalfLinear)


def load(path: str | Path | None = None) -> HalfBigNet:
    return load_weights(HalfBigNet(), path)
