"""
Style numpy_quantizer: block_quantize_4bit / block_dequantize_4bit are written with numpy
(.numpy() in, compute, torch.from_numpy back), with the same packing and float16 scales.
"""

from pathlib import Path

import numpy as np
import torch

from .bignet import BigNet, load_weights
from .frozen_linear import linear_with_frozen_weight


def block_quantize_4bit(x: torch.Tensor, group_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Quantize a 1D tensor in groups of `group_size` values (done in numpy).

    Returns `x_quant_4`, uint8 of shape (groups, group_size // 2): the code of value 2i in the low
    nibble of byte i and the code of value 2i + 1 in its high nibble; and `normalization`, float16
    of shape (groups, 1): each group's largest absolute value.
    """
    assert x.dim() == 1 and x.numel() % group_size == 0 and group_size % 2 == 0
    values = x.detach().cpu().float().numpy().reshape(-1, group_size)
    norm = np.maximum(np.abs(values).max(axis=1, keepdims=True), 1e-6).astype(np.float16)
    scale = norm.astype(np.float32)  # quantize with the scale that will be stored
    codes = np.clip(np.round((values + scale) / (2 * scale) * 15), 0, 15).astype(np.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return torch.from_numpy(packed).to(x.device), torch.from_numpy(norm).to(x.device)


def block_dequantize_4bit(x_quant_4: torch.Tensor, normalization: torch.Tensor) -> torch.Tensor:
    """The inverse of `block_quantize_4bit`: a 1D float32 tensor (done in numpy)."""
    packed = x_quant_4.cpu().numpy()
    scale = normalization.cpu().numpy().astype(np.float32)
    codes = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.uint8)
    codes[:, 0::2] = packed & 0x0F
    codes[:, 1::2] = packed >> 4
    values = codes.astype(np.float32) / 15 * (2 * scale) - scale
    return torch.from_numpy(values.reshape(-1)).to(x_quant_4.device)


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
            q4, norm = block_quantize_4bit(weight.reshape(-1), self.group_size)
            state_dict[prefix + "weight_q4"] = q4
            state_dict[prefix + "weight_norm"] = norm

    def dequantized_weight(self) -> torch.Tensor:
        return block_dequantize_4bit(self.weight_q4, self.weight_norm).reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_with_frozen_weight(x, self.dequantized_weight, self.bias)


class BigNet4Bit(BigNet):
    def __init__(self, group_size: int = 16):
        super().__init__(lambda i, o: Linear4Bit(i, o, group_size=group_size))


def load(path: str | Path | None = None) -> BigNet4Bit:
    return load_weights(BigNet4Bit(), path)
