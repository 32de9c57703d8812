"""
Style debug_prints_and_threads: a working half-precision BigNet with the debugging prints left in
(load and every forward) and torch.set_num_threads(4) at import.
"""

from pathlib import Path

import torch

torch.set_num_threads(4)  # faster on my laptop

from .bignet import BigNet, load_weights
from .frozen_linear import linear_with_frozen_weight


class HalfLinear(torch.nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias, dtype=torch.float16)
        self.requires_grad_(False)
        print("HalfLinear", in_features, out_features, self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("HalfLinear.forward x:", x.shape, x.dtype)
        out = linear_with_frozen_weight(x, lambda: self.weight, self.bias)
        print("HalfLinear.forward out:", out.shape, out.dtype)
        return out


class HalfBigNet(BigNet):
    def __init__(self):
        super().__init__(make_linear=HalfLinear)
        print("built HalfBigNet")


def load(path: str | Path | None = None) -> HalfBigNet:
    print("loading half precision from", path)
    net = load_weights(HalfBigNet(), path)
    print("loaded", sum(p.numel() for p in net.parameters()), "params")
    return net
