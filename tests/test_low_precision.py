"""The 4-bit quantizer and layer: round trip, packing order, the pre-hook, saving the packed form."""

import io

import pytest
import torch

from homework import low_precision
from homework.low_precision import Linear4Bit, block_dequantize_4bit, block_quantize_4bit


def test_round_trip_within_half_a_step():
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    q, norm = block_quantize_4bit(x, group_size=16)
    assert q.dtype == torch.uint8 and q.shape == (256, 8) and norm.dtype == torch.float16 and norm.shape == (256, 1)
    error = (block_dequantize_4bit(q, norm) - x).view(-1, 16).abs()
    # 16 levels over [-scale, scale]: a step is 2 * scale / 15, so rounding costs at most scale / 15.
    assert (error <= norm.float() / 15 * 1.001).all()
    assert error.mean() > 0  # it does quantize


def test_extremes_and_zero_groups():
    x = torch.tensor([-2.0, 2.0] + [0.5] * 14 + [0.0] * 16)
    q, norm = block_quantize_4bit(x)
    codes = torch.stack([q & 0xF, q >> 4], dim=-1).view(2, 16)
    assert codes[0, 0] == 0 and codes[0, 1] == 15  # -scale and +scale are the end codes
    restored = block_dequantize_4bit(q, norm)
    assert torch.isfinite(restored).all() and restored[:2].tolist() == [-2.0, 2.0]
    assert restored[16:].abs().max() < 1e-8  # an all-zero group stays (almost) zero, not NaN


def test_packing_order_low_nibble_first():
    # Values chosen so that value i gets code i: two codes per byte, even index in the low nibble.
    x = torch.arange(16, dtype=torch.float32) / 15 * 2 - 1
    q, norm = block_quantize_4bit(x)
    assert norm.item() == 1.0
    assert q.view(-1).tolist() == [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE]
    assert torch.allclose(block_dequantize_4bit(q, norm), x, atol=1e-6)


def test_dequantize_matches_the_plain_formula_for_every_byte():
    q = torch.arange(256, dtype=torch.uint8).view(32, 8)  # every pair of codes once
    norm = torch.rand(32, 1, generator=torch.Generator().manual_seed(0)).to(torch.float16)
    codes = torch.stack([q & 0xF, q >> 4], dim=-1).view(32, 16).float()  # the obvious unpacking
    scale = norm.float()
    expected = scale * (2 * codes / 15 - 1)
    assert torch.allclose(block_dequantize_4bit(q, norm), expected.view(-1), rtol=1e-6, atol=1e-7)


def test_pre_hook_quantizes_a_float_weight():
    source = torch.nn.Linear(64, 32)
    layer = Linear4Bit(64, 32)
    result = layer.load_state_dict(source.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert not hasattr(layer, "weight") and set(layer.state_dict()) == {"weight_q4", "weight_norm", "bias"}
    expected_q, expected_norm = block_quantize_4bit(source.weight.detach().flatten())
    assert torch.equal(layer.weight_q4, expected_q) and torch.equal(layer.weight_norm, expected_norm)
    x = torch.randn(5, 64)
    dequantized = block_dequantize_4bit(expected_q, expected_norm).view(32, 64)
    assert torch.allclose(layer(x), x @ dequantized.T + source.bias, atol=1e-6)


def test_packed_state_dict_round_trip_without_requantizing(checkpoint_path, inputs, monkeypatch):
    net = low_precision.load(checkpoint_path)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    assert 11.3e6 < buffer.tell() < 12.2e6  # the packed form on disk, not 72 MB of float32

    def no_quantizing(*args, **kwargs):
        raise AssertionError("a packed state dict must load as is")

    monkeypatch.setattr(low_precision, "block_quantize_4bit", no_quantizing)
    buffer.seek(0)
    restored = low_precision.BigNet4Bit()
    restored.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.equal(restored(inputs[:8]), net(inputs[:8]))


@pytest.mark.parametrize("group_size", [16, 32, 64])
def test_other_group_sizes(group_size):
    layer = Linear4Bit(128, 16, group_size=group_size)
    weight = torch.randn(16, 128)
    layer.load_state_dict({"weight": weight, "bias": torch.zeros(16)})
    error = (layer.dequantized_weight() - weight).abs().view(-1, group_size)
    assert (error <= weight.view(-1, group_size).abs().amax(-1, keepdim=True) / 15 * 1.001).all()
