"""8-bit AdamW: its codes, its memory, and how closely it follows AdamW."""

import torch

from homework.memory import AllocationTrace
from homework.optim.eight_bit import BLOCK_SIZE, AdamW8bit, dequantize_8bit, quantize_8bit
from homework.optim.functional import AdamW
from tests.helpers import bignet_sized_layer
from tests.helpers import run_optimizer as run


def test_signed_codes_round_to_within_half_a_level():
    x = torch.randn(3, 1000)  # not a whole number of blocks: the last one is padded
    codes, scales = quantize_8bit(x, signed=True)
    assert codes.dtype == torch.int8 and codes.shape == (12, BLOCK_SIZE) and scales.shape == (12, 1)
    error = (dequantize_8bit(codes, scales, x) - x).abs().view(-1)
    bound = scales.expand(-1, BLOCK_SIZE).reshape(-1)[: x.numel()] / 127 / 2
    assert (error <= bound * 1.001).all()


def test_unsigned_codes_never_round_down():
    # A second moment spanning many orders of magnitude in one block: none may come back smaller.
    x = torch.logspace(-12, 0, 512)
    codes, scales = quantize_8bit(x, signed=False)
    restored = dequantize_8bit(codes, scales, x)
    assert codes.dtype == torch.uint8 and (restored >= x).all() and (restored > 0).all()


def test_state_is_a_quarter_of_adamws_measured():
    params = bignet_sized_layer()
    optimizer = AdamW8bit(params)
    for p in params:
        p.grad = torch.randn_like(p)
    with AllocationTrace() as first_step:
        optimizer.step()
    adamw_bytes = AdamW(bignet_sized_layer()).theoretical_state_bytes()
    assert first_step.net == optimizer.theoretical_state_bytes()
    assert first_step.net / adamw_bytes < 0.26


def test_follows_adamw():
    ours, exact = run(AdamW8bit, lr=1e-3), run(AdamW, lr=1e-3)
    start = bignet_sized_layer()
    for a, b, s in zip(ours, exact, start):
        # The weights moved by about 50 steps x 1e-3; the 8-bit run stays within a few % of AdamW's path.
        moved = (b - s).norm()
        assert (a - b).norm() < 0.05 * moved


def test_moments_really_are_stored_in_8_bits():
    params = bignet_sized_layer()
    optimizer = AdamW8bit(params)
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer.step()
    dtypes = {t.dtype for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor) and t.numel() > 4096}
    assert dtypes == {torch.int8, torch.uint8}


def test_a_tiny_second_moment_does_not_blow_up_the_step():
    # One huge gradient next to tiny ones in the same block: the tiny ones' steps stay at most AdamW's (lr).
    param = torch.nn.Parameter(torch.zeros(BLOCK_SIZE))
    optimizer = AdamW8bit([param], lr=1e-3, weight_decay=0.0)
    grad = torch.full((BLOCK_SIZE,), 1e-6)
    grad[0] = 1e3
    for _ in range(5):
        param.grad = grad.clone()
        optimizer.step()
    assert param.detach().abs().max().item() <= 5 * 1e-3 * 1.0001
