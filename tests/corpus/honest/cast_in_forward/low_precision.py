"""
Style cast_in_forward: 4-bit Linear whose forward dequantizes the whole weight to float32 and
then calls torch.nn.functional.linear plainly.
"""

from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .frozen_linear import linear_with_frozen_weight


def block_quantize_4bit(x: torch.Tensor, group_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Quantize a 1D tensor in groups of `group_size` values.

    Returns `x_quant_4`, uint8 of shape (groups, group_size // 2): the code of value 2i in the low
    nibble of byte i and the code of value 2i + 1 in its high nibble; and `normalization`, float16
    of shape (groups, 1): each group's largest absolute value.
    """
    assert x.dim() == 1 and x.numel() % group_size == 0 and group_size % 2 == 0
    x = x.view(-1, group_size).float()
    # Round the scale to float16 first and quantize with the rounded value, so that dequantizing
    # uses exactly the scale the codes were made for. The clamp keeps an all-zero group finite.
    normalization = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8).to(torch.float16)
    scale = normalization.float()
    x_norm = (x + scale) / (2 * scale)  # in [0, 1], up to float16 rounding of the scale
    codes = (x_norm * 15).round().clamp(0, 15).to(torch.uint8)
    x_quant_4 = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return x_quant_4, normalization


def block_dequantize_4bit(x_quant_4: torch.Tensor, normalization: torch.Tensor) -> torch.Tensor:
    """The inverse of `block_quantize_4bit`: a 1D float32 tensor, each value within scale/15 of the original."""
    # At batch size 1 this, not the matmul, is most of a forward pass, so each step is one
    # whole-tensor operation on the smallest type that will do.
    # Unpack: widened to 16 bits, byte b or-ed with b << 4 holds b's low code in its low byte and
    # its high code in its high byte; the mask clears the rest. Viewed as bytes again (low byte
    # first: x86, ARM and GPUs are all little-endian), these are the codes in order.
    wide = x_quant_4.to(torch.int16)
    codes = (wide << 4).bitwise_or_(wide).bitwise_and_(0x0F0F).view(torch.uint8)
    # Code c stands for scale * (2c - 15) / 15. The subtraction runs on the bytes, a quarter of
    # the memory of float32: below zero a byte wraps around to 256 + (2c - 15), which read as int8
    # is 2c - 15 again. Then the float32 weights are made once and scaled in place.
    signed = codes.mul_(2).sub_(15).view(torch.int8)
    return signed.float().mul_(normalization.float() / 15).view(-1)


class Linear4Bit(torch.nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 16):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        # Buffers, not parameters: they are not trained, but .to(device) and state_dict() still see them.
        groups = out_features * in_features // group_size
        self.register_buffer("weight_q4", torch.zeros(groups, group_size // 2, dtype=torch.uint8))
        self.register_buffer("weight_norm", torch.zeros(groups, 1, dtype=torch.float16))
        self.bias = torch.nn.Parameter(torch.zeros(out_features)) if bias else None
        self._register_load_state_dict_pre_hook(self._load_state_dict_pre_hook, with_module=False)

    def _load_state_dict_pre_hook(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # A float checkpoint has `weight`, which this layer does not keep: quantize it into the two
        # entries it does keep. A state dict saved by a quantized model already has those, and loads as is.
        if f"{prefix}weight" in state_dict:
            weight = state_dict.pop(f"{prefix}weight")
            q, norm = block_quantize_4bit(weight.reshape(-1), group_size=self.group_size)
            state_dict[prefix + "weight_q4"] = q
            state_dict[prefix + "weight_norm"] = norm

    def dequantized_weight(self) -> torch.Tensor:
        w = block_dequantize_4bit(self.weight_q4, self.weight_norm)
        return w.reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight()
        return torch.nn.functional.linear(x, w, self.bias)


class BigNet4Bit(BigNet):
    def __init__(self, group_size: int = 16):
        def make_linear(in_features, out_features):
            return Linear4Bit(in_features, out_features, True, group_size)

        super().__init__(make_linear)


def load(path: str | Path | None = None) -> BigNet4Bit:
    return load_weights(BigNet4Bit(), path)
