"""
Style simple_3bit: absmax 3-bit block quantization, groups of 32 with a float16 scale, codes 0..7
(value = scale * (2c - 7) / 7) packed 8 codes into 3 bytes: 3 + 16/32 = 3.5 bits per weight
(7.98 MB for BigNet with float32 biases and LayerNorms).
"""

import functools
import math
from pathlib import Path

import torch

from .bignet import BIGNET_DIM, BigNet, load_weights
from .frozen_linear import linear_with_frozen_weight

def block_quantize_3bit(x: torch.Tensor, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """1D tensor -> (uint8 codes, 3 bytes per 8 values, shape (groups, group_size * 3 // 8); float16 scales (groups, 1))."""
    assert x.dim() == 1 and x.numel() % group_size == 0 and group_size % 8 == 0
    x = x.view(-1, group_size).float()
    normalization = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-6).to(torch.float16)
    scale = normalization.float()
    # value = scale * (2c - 7) / 7  <=>  c = 3.5 * (value / scale + 1)
    codes = (3.5 * (x / scale + 1)).round().clamp(0, 7).to(torch.int32)
    # 8 codes of 3 bits = 24 bits = 3 bytes: code k of the 8 sits at bits 3k..3k+2
    codes = codes.view(-1, 8)
    packed = torch.zeros(codes.shape[0], dtype=torch.int32)
    for k in range(8):
        packed |= codes[:, k] << (3 * k)
    as_bytes = torch.stack([(packed >> (8 * j)) & 0xFF for j in range(3)], dim=-1).to(torch.uint8)
    return as_bytes.view(-1, group_size * 3 // 8), normalization


def block_dequantize_3bit(x_quant_3: torch.Tensor, normalization: torch.Tensor) -> torch.Tensor:
    """The inverse of block_quantize_3bit: a 1D float32 tensor."""
    b = x_quant_3.view(-1, 3).to(torch.int32)
    packed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    codes = torch.stack([(packed >> (3 * k)) & 7 for k in range(8)], dim=-1)
    values = (codes.view(normalization.shape[0], -1).float() * 2 - 7) / 7 * normalization.float()
    return values.view(-1)


class Linear3Bit(torch.nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 32):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = out_features * in_features // group_size
        self.register_buffer("weight_q3", torch.zeros(groups, group_size * 3 // 8, dtype=torch.uint8))
        self.register_buffer("weight_norm", torch.zeros(groups, 1, dtype=torch.float16))
        self.bias = torch.nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._register_load_state_dict_pre_hook(self._load_state_dict_pre_hook, with_module=False)

    def _load_state_dict_pre_hook(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        if f"{prefix}weight" in state_dict:
            weight = state_dict.pop(f"{prefix}weight")
            weight_q3, weight_norm = block_quantize_3bit(weight.flatten(), self.group_size)
            state_dict[f"{prefix}weight_q3"] = weight_q3
            state_dict[f"{prefix}weight_norm"] = weight_norm

    def dequantized_weight(self) -> torch.Tensor:
        return block_dequantize_3bit(self.weight_q3, self.weight_norm).view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_with_frozen_weight(x, self.dequantized_weight, self.bias)


class BigNet3Bit(BigNet):
    def __init__(self, group_size: int = 32):
        super().__init__(make_linear=lambda i, o: Linear3Bit(i, o, group_size=group_size))


def load(path: str | Path | None = None) -> BigNet:
    return load_weights(BigNet3Bit(), path)
