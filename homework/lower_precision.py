"""
Extra credit: BigNet in under 9 MB, theoretical and allocated, with outputs close to BigNet's
(mean abs diff < 0.1, max < 0.5 on random inputs): fewer than 4 bits per weight, all-in. The scheme
is yours; state how many bits per parameter it spends.
"""

import math
from pathlib import Path

import torch

from .bignet import BigNet, load_weights
from .half_precision import linear_with_frozen_weight

# BEGIN SOLUTION: your quantizer and its inverse, a Linear layer that stores its weight with it, and the network
# Below 4 bits: 3-bit block quantization of randomly rotated weights, about 3.55 bits per parameter
# all-in (8.0 MB for BigNet).
#
# Why rotate: with only 8 levels, one outlier in a group stretches its scale and crushes every other
# value in the group to a few levels. Multiplying each weight row by random signs and then by a
# Hadamard matrix (an orthogonal transform) spreads every outlier over the whole row, so all groups
# look Gaussian, whatever the weights looked like. The rotation needs no storage beyond the signs,
# and the layer undoes it by rotating its input with the same matrix M: M is orthogonal, so
# (x M)(W M)^T = x M M^T W^T = x W^T.
#
# Storage per Linear layer: 3 bits per weight as three bit-planes (bit k of eight codes in one byte),
# one float16 scale per 32 weights (0.5 bits per weight), 1024 signs; bias and LayerNorms float32.

BITS = 3
LEVELS = 2**BITS - 1  # codes 0..7


def random_signs(n: int, seed: int = 0) -> torch.Tensor:
    """±1 as int8, fixed by the seed."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n,), generator=generator, dtype=torch.int8) * 2 - 1).to(torch.int8)


def hadamard_rotate(x: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """
    x @ M along the last dimension (a power of two), with M = diag(signs) @ H / sqrt(n) orthogonal.
    It runs as the fast Walsh-Hadamard transform: log2(n) vectorized butterfly steps, no n x n matrix.
    """
    n = x.shape[-1]
    y = x * signs.to(x.dtype)
    h = 1
    while h < n:
        pairs = y.reshape(*x.shape[:-1], n // (2 * h), 2, h)
        y = torch.stack((pairs[..., 0, :] + pairs[..., 1, :], pairs[..., 0, :] - pairs[..., 1, :]), dim=-2)
        h *= 2
    return y.reshape(x.shape) / math.sqrt(n)


def pack_bit_planes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes of shape (N,), N a multiple of 8 -> uint8 (bits, N // 8): plane k, byte j holds bit k of codes 8j..8j+7."""
    shifts = torch.arange(8, device=codes.device, dtype=torch.uint8)
    planes = [((codes.view(-1, 8) >> k) & 1) << shifts for k in range(bits)]
    return torch.stack([plane.sum(dim=-1, dtype=torch.uint8) for plane in planes])


def unpack_bit_planes(planes: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack_bit_planes`: uint8 codes of shape (N,)."""
    shifts = torch.arange(8, device=planes.device, dtype=torch.uint8)
    bits = (planes.unsqueeze(-1) >> shifts) & 1  # (bits, N // 8, 8)
    codes = torch.zeros_like(bits[0])
    for k in range(planes.size(0)):
        codes |= bits[k] << k
    return codes.view(-1)


def block_quantize_3bit(x: torch.Tensor, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The handout's absmax block scheme with 8 levels: (bit planes uint8 (3, N // 8), float16 scales (groups, 1))."""
    assert x.dim() == 1 and x.numel() % group_size == 0 and group_size % 8 == 0
    x = x.view(-1, group_size).float()
    normalization = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8).to(torch.float16)
    scale = normalization.float()
    codes = ((x + scale) / (2 * scale) * LEVELS).round().clamp(0, LEVELS).to(torch.uint8)
    return pack_bit_planes(codes.view(-1), BITS), normalization


def block_dequantize_3bit(planes: torch.Tensor, normalization: torch.Tensor) -> torch.Tensor:
    """The inverse of `block_quantize_3bit`: a 1D float32 tensor, each value within scale/7 of the original."""
    codes = unpack_bit_planes(planes).view(normalization.size(0), -1)
    scale = normalization.float()
    return (codes.float() / LEVELS * (2 * scale) - scale).view(-1)


class Linear3Bit(torch.nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 32, seed: int = 0):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        n = out_features * in_features
        self.register_buffer("weight_q3", torch.zeros(BITS, n // 8, dtype=torch.uint8))
        self.register_buffer("weight_norm", torch.zeros(n // group_size, 1, dtype=torch.float16))
        self.register_buffer("signs", random_signs(in_features, seed))
        self.bias = torch.nn.Parameter(torch.zeros(out_features)) if bias else None
        self._register_load_state_dict_pre_hook(self._load_state_dict_pre_hook, with_module=False)

    def _load_state_dict_pre_hook(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # As in Linear4Bit: a float `weight` becomes the packed entries; a packed state dict loads as is.
        if f"{prefix}weight" in state_dict:
            weight = state_dict.pop(f"{prefix}weight").float()
            signs = state_dict.get(f"{prefix}signs", self.signs)
            rotated = hadamard_rotate(weight, signs)
            state_dict[f"{prefix}weight_q3"], state_dict[f"{prefix}weight_norm"] = block_quantize_3bit(rotated.flatten(), self.group_size)
            state_dict[f"{prefix}signs"] = signs

    def dequantized_weight(self) -> torch.Tensor:
        """The rotated weight W M (see the notes above), in float32."""
        return block_dequantize_3bit(self.weight_q3, self.weight_norm).view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_with_frozen_weight(hadamard_rotate(x, self.signs), self.dequantized_weight, self.bias)


class BigNet3Bit(BigNet):
    def __init__(self):
        super().__init__(make_linear=Linear3Bit)
# END SOLUTION


def load(path: str | Path | None = None) -> BigNet:
    # BEGIN SOLUTION: your network with the checkpoint's weights (as low_precision.load does)
    return load_weights(BigNet3Bit(), path)
    # END SOLUTION
