"""homework/frozen_linear.py: a layer whose weight is rebuilt in backward, not kept, gives autograd's gradients."""

import torch

from homework import half_precision


def test_frozen_weight_layers_give_the_true_input_gradient():
    # The low-precision layers rebuild their weight in the backward pass instead of keeping it:
    # the input gradient must be what plain autograd computes through torch.nn.functional.linear.
    layer = half_precision.HalfLinear(64, 32)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(32, 64))
    x = torch.randn(5, 64, requires_grad=True)
    (layer(x) * torch.arange(32.0)).sum().backward()
    expected = torch.autograd.grad((torch.nn.functional.linear(x, layer.weight.float(), layer.bias.float()) * torch.arange(32.0)).sum(), x)[
        0
    ]
    assert torch.allclose(x.grad, expected, atol=1e-5)
    assert layer.weight.grad is None
