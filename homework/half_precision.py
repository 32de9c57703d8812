"""
Half precision: every Linear layer stores its weight and bias in float16, half the memory of float32.

The weights are frozen (float16 is too coarse to train in directly). The computation still runs in
the input's float32: each layer turns its weights back to float32 just for its own matmul, which is
fast on every device and keeps the outputs within about 1e-4 of BigNet's.
"""

from pathlib import Path

import torch

from .bignet import BigNet, load_weights


class _FrozenWeightMatmul(torch.autograd.Function):
    """
    x @ W^T for a frozen weight W that `make_weight()` rebuilds in float32 from compact storage.
    Plain autograd would keep each rebuilt W until the backward pass: 4 MB per layer, as much as a
    float32 model in all, which would undo the memory saving during training. This keeps nothing
    and rebuilds W when the backward pass needs it (bitsandbytes does the same for its 4-bit layers).
    """

    @staticmethod
    def forward(ctx, x, make_weight):
        ctx.make_weight = make_weight
        return x @ make_weight().to(x.dtype).T

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output @ ctx.make_weight().to(grad_output.dtype), None  # no gradient for W: it is frozen


def linear_with_frozen_weight(x: torch.Tensor, make_weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """torch.nn.functional.linear, for layers that store their frozen weight in a compact form."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        # Inference, or an input that needs no gradient: autograd keeps no weight, so the plain
        # (and faster: the bias is added inside the matmul) linear is just as small.
        return torch.nn.functional.linear(x, make_weight().to(x.dtype), None if bias is None else bias.to(x.dtype))
    y = _FrozenWeightMatmul.apply(x, make_weight)
    return y if bias is None else y + bias.to(y.dtype)


class HalfLinear(torch.nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        # BEGIN SOLUTION: a torch.nn.Linear with its weight and bias in float16, frozen
        # Same parameter names as torch.nn.Linear, so a float32 checkpoint loads as is
        # (load_state_dict converts float32 to float16 while copying).
        super().__init__(in_features, out_features, bias, dtype=torch.float16)
        self.requires_grad_(False)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION: float32 in, float32 out (linear_with_frozen_weight above saves memory in the backward pass)
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
