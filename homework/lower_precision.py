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
from .half_precision import linear_with_frozen_weight

# BEGIN SOLUTION: your quantizer and its inverse, a Linear layer that stores its weight with it, and the network
# Below 4 bits and more accurate than bitsandbytes' NF4 (4.13 bits): trellis-coded quantization of
# randomly rotated weights, the idea of QTIP (Tseng et al., 2024) in its simplest form. 3.99 bits per
# parameter all-in (8.99 MB for BigNet): 4 bits per weight in 17 layers and 3 in the last one; float16
# row scales, codebooks and biases; float32 LayerNorms.
#
# Rotate. Multiplying each weight row by random signs and then by a Hadamard matrix (an orthogonal
# transform) spreads every outlier over the whole row: whatever the weights looked like, every row now
# looks Gaussian, so one codebook made for Gaussian numbers suits every layer. The rotation M is
# orthogonal, so it is undone by M^T after decoding; the signs come from a fixed seed, so like the
# Hadamard matrix they take no storage.
#
# Trellis. A scalar 4-bit quantizer gives each weight the nearest of 16 values. Here each weight also
# gets a 4-bit code, but the value it stands for is codebook[16 * previous code + code]: 256 values,
# of which each weight can reach 16, and which 16 depends on the code chosen for the weight before it.
# So the encoder plans a whole segment of a row at once: the Viterbi algorithm finds, among all 16^256
# code sequences for 256 weights, the one with the least squared error, by dynamic programming over
# the 256 states (previous code, code). With a codebook fitted to its own choices (Lloyd's algorithm)
# the squared error is 2.2 dB above the least any 4-bit code can reach for Gaussian numbers (the rate-distortion
# bound, 2^-8 of the variance) where the best scalar quantizer is 4.35 dB above: 30% less error at
# the same bits. Decoding stays a table lookup per weight.
#
# Storage per layer: `bits` bit planes of codes, one float16 scale per row (its root mean square),
# the float16 codebook, the float16 bias.

TRELLIS_WINDOWS = {4: 2, 3: 3}  # bits per weight -> codes per state: 256 and 512 states, the encoder's cost
# The encoder steps along its rows one weight at a time; rows of 256 weights, each starting afresh,
# take a quarter of the steps of 1024 (loading is 4x faster) and lose 0.1 dB.
SEGMENT = 256


def random_signs(n: int, seed: int = 0) -> torch.Tensor:
    """±1 as int8, fixed by the seed."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n,), generator=generator, dtype=torch.int8) * 2 - 1).to(torch.int8)


def hadamard_transform_(x: torch.Tensor) -> torch.Tensor:
    """
    x @ H / sqrt(n) along the last dimension (n a power of two), in place. H / sqrt(n) is orthogonal
    and symmetric: its own inverse. The fast Walsh-Hadamard transform: log2(n) butterfly steps over
    pairs (a, b) of halves of ever larger blocks, each pair becoming (a + b, a - b); no n x n matrix.
    """
    n = x.shape[-1]
    h = 1
    while h < n:
        pairs = x.view(-1, n // (2 * h), 2, h)
        a, b = pairs[:, :, 0], pairs[:, :, 1]
        a.add_(b)
        b.mul_(-2).add_(a)  # (a + b) - 2b
        h *= 2
    return x.div_(math.sqrt(n))


def rotate(w: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """W M, with M = diag(signs) H / sqrt(n) orthogonal: each row gets random signs, then is mixed by H."""
    return hadamard_transform_(w * signs)


def unrotate_(w_rotated: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """The inverse of `rotate`, in place: W M M^T = W, since M^T = H diag(signs) / sqrt(n)."""
    return hadamard_transform_(w_rotated).mul_(signs)


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


def trellis_states(codes: torch.Tensor, bits: int, window: int) -> torch.Tensor:
    """
    The state of each weight of each row of `codes`: its own code in the low bits and the `window - 1`
    codes before it above, one int32 < 2**(bits * window). Codes before the start of a row count as 0.
    """
    states = codes.to(torch.int32)  # int32 rather than int64: half the memory, still a valid index
    for back in range(1, window):
        states[:, back:] |= codes[:, :-back].to(torch.int32) << (bits * back)
    return states


def trellis_decode(codes: torch.Tensor, codebook: torch.Tensor, bits: int, window: int) -> torch.Tensor:
    """The inverse of `trellis_encode`: the value each code stands for, in float32."""
    values = torch.empty(codes.shape, device=codes.device)
    codebook = codebook.float()
    for rows in range(0, len(codes), 512):  # a slice at a time: all the int32 states at once would take as much memory as the values
        values[rows : rows + 512] = codebook[trellis_states(codes[rows : rows + 512], bits, window)]
    return values


def trellis_encode(x: torch.Tensor, codebook: torch.Tensor, bits: int, window: int) -> torch.Tensor:
    """
    For each row of `x`, the uint8 codes whose `trellis_decode` is closest to it in squared error.
    The Viterbi algorithm: step by step along the rows, keep for every state the least error of any
    code sequence that ends in it; then trace the best final state back to the start.
    """
    rows, n = x.shape
    choices = 2**bits
    histories = codebook.numel() // choices  # what the window's earlier codes can be
    codebook = codebook.float()
    values = codebook.view(histories, choices)  # values[history, code] = codebook[state]
    # best[t][row, history]: the least error of any codes for x[row, :t] that end in `history`.
    best = torch.full((n, rows, histories), math.inf, device=x.device)
    best[0, :, 0] = 0  # before the row starts, every code is 0
    cost = torch.empty(rows, histories, choices, device=x.device)  # cost[row, history, code], one buffer for every step
    for t in range(n):
        torch.sub(x[:, t, None, None], values, out=cost).square_().add_(best[t, :, :, None])
        if t + 1 < n:
            best[t + 1] = min_over_oldest_(cost, choices)

    # Back from the best final state: of the states at t - 1 that lead to the state at t (they differ
    # in their oldest code), the one the forward pass kept, found again from `best` and the same sums.
    codes = torch.empty(rows, n, dtype=torch.uint8, device=x.device)
    state = cost.view(rows, -1).argmin(dim=1)
    oldest = torch.arange(choices, device=x.device) * histories
    for t in range(n - 1, 0, -1):  # a state's code is its low `bits` bits, its history the rest (shifts: faster than // and %)
        codes[:, t] = state & (choices - 1)
        before = oldest + (state >> bits)[:, None]  # (rows, choices) candidate states at t - 1
        cost = (x[:, t - 1, None] - codebook[before]).square_().add_(best[t - 1].gather(1, before >> bits))
        state = before.gather(1, cost.argmin(dim=1, keepdim=True)).squeeze(1)
    codes[:, 0] = state & (choices - 1)
    return codes


def min_over_oldest_(cost: torch.Tensor, choices: int) -> torch.Tensor:
    """
    (rows, histories): for each history the next state keeps, the least cost over the oldest code it
    forgets. A halving tree of elementwise minimums (3x faster here than min(dim=1) with 16 codes),
    in place in `cost`: no new buffers, each of which would be fresh pages from the kernel.
    """
    m = cost.view(len(cost), choices, -1)  # [row, oldest code, the rest of the state]
    while m.shape[1] > 1:
        half = m.shape[1] // 2
        m = torch.minimum(m[:, :half], m[:, half:], out=m[:, :half])
    return m[:, 0]


@functools.cache
def trellis_codebook(bits: int, window: int, seed: int = 0) -> tuple[float, ...]:
    """
    A float16 codebook for Gaussian numbers of variance 1, made by Lloyd's algorithm on Gaussian
    samples: encode them, move each value to the mean of the samples it stood for, repeat. It starts
    from the Gaussian's quantiles in random order, so every state reaches values all over the range,
    and 20% wider: the fitted values spread wider than that, and Lloyd's algorithm moves slowly.
    Cached as plain numbers: fitted once per process (a few seconds), charged to no model's memory.
    """
    size = 2 ** (bits * window)
    generator = torch.Generator().manual_seed(seed)
    quantiles = torch.special.ndtri((torch.arange(size) + 0.5) / size)
    codebook = 1.2 * quantiles[torch.randperm(size, generator=generator)]
    samples = torch.randn(2048, 64, generator=generator)  # short rows: as good a fit, and a quarter of the steps
    for _ in range(8):
        states = trellis_states(trellis_encode(samples, codebook, bits, window), bits, window).flatten().long()
        total = torch.zeros(size).index_add_(0, states, samples.flatten())
        count = torch.zeros(size).index_add_(0, states, torch.ones(states.numel()))
        codebook = torch.where(count > 0, total / count.clamp_min(1), codebook)
    return tuple(codebook.half().tolist())


class TrellisLinear(torch.nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 4):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.window = bits, TRELLIS_WINDOWS[bits]
        n = out_features * in_features
        self.register_buffer("weight_codes", torch.zeros(bits, n // 8, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.zeros(out_features, 1, dtype=torch.float16))
        self.register_buffer("codebook", torch.zeros(2 ** (bits * self.window), dtype=torch.float16))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float16) if bias else None)
        self._register_load_state_dict_pre_hook(self._load_state_dict_pre_hook, with_module=False)

    def _load_state_dict_pre_hook(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # As in Linear4Bit: a float `weight` becomes the packed entries; a packed state dict loads as is.
        if f"{prefix}weight" in state_dict:
            weight = state_dict.pop(f"{prefix}weight").float()
            rotated = rotate(weight, random_signs(self.in_features).to(weight.device))
            # Each row's root mean square, so that rows reach the codebook with variance 1.
            scale = rotated.square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-4).to(torch.float16)
            codebook = torch.tensor(trellis_codebook(self.bits, self.window), dtype=torch.float16, device=weight.device)
            codes = trellis_encode((rotated / scale.float()).view(-1, SEGMENT), codebook, self.bits, self.window)
            state_dict[f"{prefix}weight_codes"] = pack_bit_planes(codes.view(-1), self.bits)
            state_dict[f"{prefix}weight_scale"] = scale
            state_dict[f"{prefix}codebook"] = codebook

    def dequantized_weight(self) -> torch.Tensor:
        codes = unpack_bit_planes(self.weight_codes).view(-1, SEGMENT)
        rotated = trellis_decode(codes, self.codebook, self.bits, self.window).view(self.out_features, self.in_features)
        signs = random_signs(self.in_features).to(rotated.device)
        return unrotate_(rotated.mul_(self.weight_scale.float()), signs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_with_frozen_weight(x, self.dequantized_weight, self.bias)


class TrellisBigNet(BigNet):
    def __init__(self):
        super().__init__(make_linear=TrellisLinear)
        # At 4 bits per weight the 18 layers' codes alone take exactly 9 MB: the last layer gets
        # 3 bits, which leaves room for the biases, LayerNorms, scales and codebooks.
        self.model[-1].model[-1] = TrellisLinear(BIGNET_DIM, BIGNET_DIM, bits=3)
# END SOLUTION


def load(path: str | Path | None = None) -> BigNet:
    # BEGIN SOLUTION: your network with the checkpoint's weights (as low_precision.load does)
    return load_weights(TrellisBigNet(), path)
    # END SOLUTION
