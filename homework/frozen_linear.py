"""
Given (no part of the homework): a Linear layer's computation for a frozen weight kept in a compact
form (float16, 4-bit codes, ...), shared by every memory-saving variant.
"""

import torch


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
