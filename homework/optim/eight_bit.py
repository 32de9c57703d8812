"""
AdamW with 8-bit states: the homework's block quantization, applied to the optimizer's memory.

Each of Adam's two moments is stored as one byte per value plus a float32 scale per block of 256
values (the block's largest magnitude): 1 + 4/256 bytes instead of 4, so the state takes 25.4 % of
AdamW's. Each step dequantizes one parameter's moments, takes torch's AdamW step with them
(functional.adam_step), and quantizes them again: only one parameter's moments are ever float32.

The two moments need different codes:
- the first moment is signed: 127 levels each way, rounded to the nearest;
- the second moment v divides the step, and a small v rounded to zero would make that step
  enormous. So its square root is stored (which halves the orders of magnitude a block must span)
  on 255 levels, rounded UP: the stored denominator is never smaller than the true one, and a
  quantization error can only make a step smaller than AdamW's, never larger.
"""

import torch

from .functional import AdamSettings, AdamW, adam_step, settings_from

BLOCK_SIZE = 256
SIGNED_LEVELS, UNSIGNED_LEVELS = 127, 255


def quantize_8bit(x: torch.Tensor, signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, scales): int8 codes rounded to nearest if `signed`, else uint8 codes of x >= 0 rounded up; a float32 scale per block."""
    flat = x.reshape(-1).float()
    blocks = torch.nn.functional.pad(flat, (0, -flat.numel() % BLOCK_SIZE)).view(-1, BLOCK_SIZE)
    scales = blocks.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)  # the clamp keeps an all-zero block finite
    if signed:
        codes = (blocks / scales * SIGNED_LEVELS).round_().to(torch.int8)
    else:
        codes = (blocks / scales * UNSIGNED_LEVELS).ceil_().clamp_(max=UNSIGNED_LEVELS).to(torch.uint8)
    return codes, scales


def dequantize_8bit(codes: torch.Tensor, scales: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of `quantize_8bit`: a float tensor shaped like `like`."""
    levels = SIGNED_LEVELS if codes.dtype == torch.int8 else UNSIGNED_LEVELS
    values = codes.float().mul_(scales / levels).view(-1)[: like.numel()]
    return values.view(like.shape).to(like.dtype)


class AdamW8bit(AdamW):
    """torch.optim.AdamW's step (and defaults, amsgrad aside), with both moments kept in 8 bits between steps."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)

    def update_parameter(self, param, group):
        state = self.state[param]
        if not state:
            zeros = torch.zeros_like(param)
            state["step"] = 0
            state["exp_avg"], state["exp_avg_scale"] = quantize_8bit(zeros, signed=True)
            state["exp_avg_sqrt"], state["exp_avg_sqrt_scale"] = quantize_8bit(zeros, signed=False)
        moments = {
            "step": state["step"],
            "exp_avg": dequantize_8bit(state["exp_avg"], state["exp_avg_scale"], param),
            "exp_avg_sq": dequantize_8bit(state["exp_avg_sqrt"], state["exp_avg_sqrt_scale"], param).square_(),
        }
        adam_step(param, param.grad, moments, settings_from(group, AdamSettings))
        state["step"] = moments["step"]
        # Written into the existing tensors: the state's memory stays where it is.
        for key, value, signed in (("exp_avg", moments["exp_avg"], True), ("exp_avg_sqrt", moments["exp_avg_sq"].sqrt_(), False)):
            codes, scales = quantize_8bit(value, signed)
            state[key].copy_(codes)
            state[f"{key}_scale"].copy_(scales)

    def state_bytes(self, param, group):
        blocks = -(-param.numel() // BLOCK_SIZE)
        return 2 * (
            blocks * BLOCK_SIZE + blocks * 4
        )  # two moments: a byte per value (padded to whole blocks) and a float32 scale per block
