"""
Extra credit: BigNet in under 9 MB, theoretical and allocated, with outputs close to BigNet's
(mean abs diff < 0.1, max < 0.5 on random inputs): fewer than 4 bits per weight, all-in. The scheme
is yours; state how many bits per parameter it spends.
"""

import functools
import math
from pathlib import Path

import torch

from .bignet import BIGNET_DIM, BigNet, load_weights
from .frozen_linear import linear_with_frozen_weight

# BEGIN SOLUTION: your quantizer and its inverse, a Linear layer that stores its weight with it, and the network
# Below 4 bits and more accurate than bitsandbytes' NF4 (4.18 bits with double quantization):
# trellis-coded quantization (TCQ, Marcellin and Fischer, 1990) of randomly rotated weights, as in
# QTIP (Tseng et al., 2024) but with the smallest trellis, 4 states, whose encoder is fast enough to
# run at every load. 3.99 bits per parameter all-in (8.99 MB for BigNet): 4 bits per weight, 3 in the
# last layer's first ROWS_AT_3_BITS rows; one float32 scale per layer; float16 biases; float32 LayerNorms.
#
# Rotate. Multiplying each weight row by random signs and then by a Hadamard matrix (together an
# orthogonal matrix M) spreads every outlier over the whole row: whatever the weights looked like,
# every row now looks Gaussian, so one quantizer made for Gaussian numbers suits every layer. The
# layer keeps W M quantized and rotates its input instead, since x W^T = (x M)(W M)^T: one small
# transform of the input per forward pass, not of the 1024 weight rows. For n = 1024 = 32 * 32, M is
# a Kronecker product of two 32 x 32 matrices, so the transform is two products with 32 x 32 matrices
# (see `rotate`), made from a fixed seed: no storage.
#
# Trellis. A 4-bit scalar quantizer gives each weight the nearest of 16 values. TCQ has twice as many,
# 32, in four interleaved subsets (value j is in subset j % 4). A weight's 4 bits are a "branch" bit u
# and 3 bits that pick one of its subset's 8 values. Which subset u picks depends on the branch bits
# of the two weights before, a (the previous one) and b (the one before that): subset a + 2 (u ^ b).
# So each weight can reach 16 of the 32 values, and which 16 depends on the weights before it: the
# encoder plans a whole segment of a row at once. The Viterbi algorithm finds, among all 2^SEGMENT
# choices of branch bits, the one with the least squared error: it steps along the segment keeping
# the least error of any path into each of the 4 states (b, a). The values follow the density that
# minimizes squared error for Gaussian numbers (a compander): value j = WIDTH * erfinv((2 j + 1) / 32 - 1).
# On Gaussian numbers the squared error is 2.4 dB above the least any 4-bit code can reach (the
# rate-distortion bound, 2^-8 of the variance), where the best scalar quantizer is 3.9 dB above: 30%
# less error. (3-bit codes: 16 values, subsets of 4, 2 bits for the value.)

WIDTH = 2.2  # the compander's width, in standard deviations: the best of 1.9 to 2.7, tried on Gaussian numbers
SEGMENT = 128  # weights the encoder plans together, each from state (0, 0); 256 gains 0.03 dB, 64 loses 0.05
# At 4 bits per weight the 18 layers' codes alone take exactly 9 MB; 3 bits in this many rows of the
# last layer leave room for the biases, LayerNorms and scales (77,896 bytes; these rows save 86,016,
# and keep the model at 8.99 MB with the 2 KB of rotation_factors).
ROWS_AT_3_BITS = 672


@functools.cache
def rotation_factors(k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """
    diag(s1) H_k and diag(s2) H_k, k x k matrices of +-1 (int8): H_k the Hadamard matrix (Sylvester's
    construction, k a power of two), s1 and s2 random signs fixed by the seed. Divided by sqrt(k) they
    are orthogonal. Cached: 2 KB for k = 32, made once (and counted in the first model's memory).
    """
    h = torch.ones(1, 1, dtype=torch.int8)
    while len(h) < k:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)])
    signs = torch.randint(0, 2, (2, k, 1), generator=torch.Generator().manual_seed(seed), dtype=torch.int8) * 2 - 1
    return signs[0] * h, signs[1] * h


def orthogonal_factors(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two rotation_factors for rows as long as `like`'s, divided by sqrt(k): orthogonal, on its device and dtype."""
    k = math.isqrt(like.shape[-1])
    return tuple(f.to(like.device, like.dtype) / math.sqrt(k) for f in rotation_factors(k))


def rotate(x: torch.Tensor) -> torch.Tensor:
    """
    x M along the last dimension (of size n = k^2), M = diag(s) H_n / sqrt(n) orthogonal: random signs,
    then the Hadamard matrix. With H_n = H_k (x) H_k and s = s1 (x) s2, M = L (x) R for the two
    rotation_factors / sqrt(k), so a row of x laid out as a k x k matrix X becomes L^T X R: two products with
    k x k matrices instead of one with an n x n matrix.
    """
    left, right = orthogonal_factors(x)
    return (left.T @ x.reshape(-1, *left.shape) @ right).reshape(x.shape)


def unrotate(x_rotated: torch.Tensor) -> torch.Tensor:
    """The inverse of `rotate`: x M M^T = x, L and R being orthogonal."""
    left, right = orthogonal_factors(x_rotated)
    return (left @ x_rotated.reshape(-1, *left.shape) @ right.T).reshape(x_rotated.shape)


@functools.cache
def tcq_values(bits: int) -> torch.Tensor:
    """The 2^(bits + 1) values a code can stand for, for Gaussian numbers of variance 1, in increasing order (cached)."""
    n = 2 ** (bits + 1)
    return WIDTH * torch.special.erfinv((2 * torch.arange(n, dtype=torch.float64) + 1) / n - 1).float()


def grid_position(z: torch.Tensor, bits: int) -> torch.Tensor:
    """
    Where z falls among the values, counted in 4 steps of their grid: tcq_values(bits)[j] is at j / 4. So
    subset s, which holds the values s, s + 4, s + 8, ..., is at s / 4 + 0, 1, 2, ...
    """
    n = 2 ** (bits + 1)
    return torch.special.erf(z / WIDTH).add_(1).mul_(n / 8).sub_(1 / 8)


def nearest_in_subset(offset: torch.Tensor, bits: int) -> torch.Tensor:
    """The index, within subset s, of its value nearest to a position, from offset = position - s / 4."""
    return offset.add(0.5).floor_().clamp_(0, 2 ** (bits - 1) - 1)  # floor(x + 1/2) rounds, faster than round()


def subset_errors(z: torch.Tensor, position: torch.Tensor, bits: int) -> torch.Tensor:
    """
    errors[t, y0, y1, row]: for values z[t, row] at `position` on the grid, the squared error of the
    value of subset y0 + 2 y1 nearest to each, up to a factor common to all. It is some distance along
    the grid, and a step of the grid is wider where the values are sparser: dposition/dz is proportional
    to exp(-(z / WIDTH)^2), so the error is that distance times exp((z / WIDTH)^2), squared.
    """
    subsets = torch.tensor([[0.0, 2.0], [1.0, 3.0]], device=z.device).view(2, 2, 1)  # [y0, y1]
    offsets = position[:, None, None] - subsets / 4
    return offsets.sub_(nearest_in_subset(offsets, bits)).mul_(z.div(WIDTH).square_().exp_()[:, None, None]).square_()


def tcq_encode(z: torch.Tensor, bits: int) -> torch.Tensor:
    """
    For each row of `z` (a segment), the codes (index within the subset) << 1 | branch bit, uint8,
    whose tcq_decode is closest to it in squared error, as subset_errors estimates it.
    """
    rows, n = z.shape
    # Time first and the rows innermost: each step reads one contiguous slice, and runs along it.
    z = z.T.contiguous()
    position = grid_position(z, bits)
    errors = subset_errors(z, position, bits)

    # A path in state (b, a) that takes branch bit u moves to state (a, u), with subset y0 + 2 y1 where
    # y0 = a and y1 = u ^ b. As [a, u]: from b = 0 that is errors[t][y0 = a, y1 = u]; from b = 1, y1 = 1 - u.
    best = torch.full((2, 2, rows), math.inf, device=z.device)  # best[b, a, row]: least error of a path in state (b, a)
    best[0, 0] = 0  # before the segment starts, every branch bit is 0
    came_from_b1 = torch.empty(n, 2, 2, rows, dtype=torch.bool, device=z.device)  # [t, a, u, row]
    for t in range(n):
        via_b0 = errors[t] + best[0, :, None]
        via_b1 = errors[t].flip(1).add_(best[1, :, None])
        torch.gt(via_b0, via_b1, out=came_from_b1[t])
        best = torch.minimum(via_b0, via_b1)  # [a, u, row]: the new states' (b, a)

    # Back from the best final state, one branch bit at a time: state (a, u) = 2 a + u came from (b, a) = 2 b + a.
    state = best.view(4, rows).argmin(dim=0)
    states = torch.empty(n, rows, dtype=torch.uint8, device=z.device)
    came_from_b1 = came_from_b1.view(n, 4, rows)
    for t in range(n - 1, -1, -1):
        states[t] = state
        state = (state >> 1) | (came_from_b1[t].gather(0, state[None])[0].long() << 1)
    branch = (states.T & 1).contiguous()  # each state's u
    index = nearest_in_subset(position.T - value_places(branch) / 4, bits).to(torch.uint8)
    return index.mul_(2).bitwise_or_(branch).contiguous()


def value_places(codes: torch.Tensor) -> torch.Tensor:
    """
    Each code's place among the 2^(bits + 1) values, 4 * index + subset, for codes index << 1 | u along
    the rows of `codes`: subset a + 2 (u ^ b), with a and b the branch bits of the two codes before
    (0 before a row starts). For branch bits alone (index 0) that is each weight's subset.
    """
    places = codes << 1  # 4 * index + 2 u
    places[:, 2:] ^= (codes[:, :-2] & 1) << 1  # 2 (u ^ b)
    places[:, 1:] |= codes[:, :-1] & 1  # + a
    return places


def tcq_decode(codes: torch.Tensor, bits: int, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """The inverse of `tcq_encode`, times `scale`: the value each code stands for, float32."""
    values = tcq_values(bits).to(codes.device) * scale  # scaled here: 32 multiplications, not a million
    return values.index_select(0, value_places(codes).view(-1).int()).view(codes.shape)  # int32 indices: half the memory of int64


# Storage. 4-bit codes two to a byte; 3-bit codes in 3 bit planes, 8 codes to 3 bytes.
def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes < 16 of shape (N,), N even -> (N // 2,): code 2i in the low nibble of byte i, 2i + 1 in the high one."""
    return codes[0::2] | (codes[1::2] << 4)


@functools.cache
def byte_values() -> torch.Tensor:
    """
    values[(before & 0x11) << 8 | byte]: the values of the two 4-bit codes packed in `byte`, where
    `before` is the byte before it in the segment (0 at a segment's start): its bits 0 and 4 are the
    branch bits b and a of the two codes before. Masked but not moved, they make the index directly:
    a table of 4352 pairs, of which 1024 are used. Made once by value_places (cached: 34 KB).
    """
    index = torch.arange(0x11 * 256 + 256)
    before, byte = index >> 8, index & 255
    codes = torch.stack([before & 1, (before >> 4) & 1, byte & 15, byte >> 4], dim=-1).to(torch.uint8)  # b, a, then the byte's codes
    return tcq_values(4)[value_places(codes)[:, 2:].long()]


def decode_nibbles(packed: torch.Tensor, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """
    tcq_decode of 4-bit codes straight from the bytes of pack_nibbles, each row a segment, float32.
    A byte and the branch bits in the byte before determine both of its values, so one lookup in a
    table of value pairs gives two weights: the quickest decoder here, which a forward pass at batch
    size 1 spends most of its time in.
    """
    before = torch.zeros_like(packed)
    before[:, 1:] = packed[:, :-1] & 0x11
    pairs = (byte_values().to(packed.device) * scale).view(-1).view(torch.int64)  # two float32 as one 8-byte entry
    return pairs.index_select(0, ((before.int() << 8) | packed).view(-1)).view(torch.float32).view(len(packed), -1)


def pack_bit_planes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes of shape (N,), N a multiple of 8 -> uint8 (bits, N // 8): plane k, byte j holds bit k of codes 8j..8j+7."""
    shifts = torch.arange(8, device=codes.device, dtype=torch.uint8)
    planes = [((codes.view(-1, 8) >> k) & 1) << shifts for k in range(bits)]
    return torch.stack([plane.sum(dim=-1, dtype=torch.uint8) for plane in planes])


def unpack_bit_planes(planes: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack_bit_planes`: uint8 codes of shape (N,)."""
    shifts = torch.arange(8, device=planes.device, dtype=torch.uint8)
    codes = torch.zeros(planes.size(1), 8, dtype=torch.uint8, device=planes.device)
    for k, plane in enumerate(planes):  # one plane at a time: temporaries the size of the codes, not 8x
        codes |= ((plane.unsqueeze(-1) >> shifts) & 1) << k
    return codes.view(-1)


# bits -> (codes -> stored bytes, (stored bytes, segment length, scale) -> decoded segments)
STORAGE = {
    4: (pack_nibbles, lambda packed, segment, scale: decode_nibbles(packed.view(-1, segment // 2), scale)),
    3: (
        lambda codes: pack_bit_planes(codes, 3),
        lambda planes, segment, scale: tcq_decode(unpack_bit_planes(planes).view(-1, segment), 3, scale),
    ),
}


class TrellisLinear(torch.nn.Module):
    """A Linear layer that keeps its rotated weight TCQ-coded: 4 bits per weight, 3 in the first `rows_at_3_bits` rows."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rows_at_3_bits: int = 0, segment: int = SEGMENT):
        super().__init__()
        self.in_features, self.out_features, self.segment = in_features, out_features, segment
        self.rows = {3: rows_at_3_bits, 4: out_features - rows_at_3_bits}  # bits -> rows, in this order
        self.register_buffer("codes_3_bits", torch.zeros(3, rows_at_3_bits * in_features // 8, dtype=torch.uint8))
        self.register_buffer("codes_4_bits", torch.zeros(self.rows[4] * in_features // 2, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.ones(()))  # one per layer: the rotated rows all look alike
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float16) if bias else None)
        self._register_load_state_dict_pre_hook(self._load_state_dict_pre_hook, with_module=False)

    def _load_state_dict_pre_hook(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # As in Linear4Bit: a float `weight` becomes the packed entries; a packed state dict loads as is.
        if f"{prefix}weight" in state_dict:
            rotated = rotate(state_dict.pop(f"{prefix}weight").float())
            scale = rotated.square().mean().sqrt().clamp_min(1e-8)  # so that the weights reach the quantizer with variance 1
            state_dict[f"{prefix}weight_scale"] = scale
            for (bits, rows), weights in zip(self.rows.items(), (rotated / scale).split(list(self.rows.values()))):
                pack, _ = STORAGE[bits]
                codes = tcq_encode(weights.reshape(-1, self.segment), bits) if rows else torch.zeros(0, dtype=torch.uint8)
                state_dict[f"{prefix}codes_{bits}_bits"] = pack(codes.view(-1))

    def dequantized_weight(self) -> torch.Tensor:
        """W M, the rotated weight (see `forward`), float32."""
        parts = []
        for bits, rows in self.rows.items():
            if rows:
                _, decode = STORAGE[bits]
                parts.append(decode(getattr(self, f"codes_{bits}_bits"), self.segment, self.weight_scale))
        weight = parts[0] if len(parts) == 1 else torch.cat(parts)  # one part: no copy
        return weight.view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_with_frozen_weight(rotate(x), self.dequantized_weight, self.bias)


class TrellisBigNet(BigNet):
    def __init__(self, segment: int = SEGMENT):
        super().__init__(make_linear=functools.partial(TrellisLinear, segment=segment))
        self.model[-1].model[-1] = TrellisLinear(BIGNET_DIM, BIGNET_DIM, rows_at_3_bits=ROWS_AT_3_BITS, segment=segment)


# END SOLUTION


def load(path: str | Path | None = None) -> BigNet:
    # BEGIN SOLUTION: your network with the checkpoint's weights (as low_precision.load does)
    return load_weights(TrellisBigNet(), path)
    # END SOLUTION
