"""
Low-rank gradient projection that still trains every weight: GaLore, and Fira on top of it.

GaLore (Zhao et al., 2024) keeps Adam's moments for a weight's gradient G (m x n) projected onto
a rank-r subspace: with P the top r right singular vectors of G (r x n; recomputed every
`update_proj_gap` steps), Adam sees G P^T (m x r) and its step is projected back, (.) P. For
BigNet's 1024 x 1024 weights at rank 128 the state is P plus two 1024 x 128 moments: 3/16 of
AdamW's two 1024 x 1024 ones (18.75 %). Yet the weights themselves are updated in full.

Fira (Chen et al., 2024) also uses what GaLore throws away, the residual G - G P^T P outside the
subspace: it is added too, scaled, row by row, by how much Adam scaled the projected gradient
(the norm of Adam's step over the norm of the projected gradient, per row), and a limiter keeps
the norm of that term from growing more than gamma = 1.01 times from one step to the next.

Parameters are split as the `fira` package splits them (`divide_params`): the weights of the
Linear layers named go in a projected group; everything else (biases, LayerNorms, a weight whose
smaller side is not above the rank) in a plain AdamW group.

Where this follows the Fira paper rather than the `fira` package's code: the package multiplies
the projection it subtracts to form the residual by alpha (the scale of GaLore's update), so for
alpha != 1 its residual is not orthogonal to the subspace; here the residual is G - G P^T P, and
alpha scales the projected Adam step only. With alpha = 1 the two agree. The Adam inside both
packages adds eps before the bias correction, as transformers' AdamW does; here it is torch's
Adam (functional.adam_moments), which adds it after: equal updates when eps is small. They also
decay the weights after the step, torch's AdamW before it (equal when weight decay is 0, their
default). And their projector keeps a slice of the SVD's full factor, which holds all of it
alive (90 MB of state for BigNet where 27 MB is the algorithm's); `subspace` copies the slice.
"""

import math

import torch

from .functional import AdamSettings, AdamW, adam_direction, adam_init, settings_from

GROWTH_LIMIT = 1.01  # Fira's gamma: the residual term's norm may grow by at most 1 % a step


def divide_params(
    model: torch.nn.Module, target_modules_list=("",), rank: int = 8, update_proj_gap: int = 200, alpha: float = 1.0, proj_type: str = "std"
) -> list[dict]:
    """
    Parameter groups, as `fira.divide_params` makes them: the trainable weights of the Linear
    layers whose names contain one of `target_modules_list` (all of them by default) and whose
    smaller side is larger than `rank` go in a group with the projection's settings; every other
    trainable parameter in a plain group. Both groups take the rest of their settings (lr, betas, eps,
    weight decay) from the optimizer's defaults: for GaLoreAdamW and FiraAdamW, eps 1e-6 and no weight
    decay. A model with no such weight (LoRA's adapters are rank 32) is all plain group: plain AdamW.
    """
    if proj_type not in ("std", "left", "right"):
        raise ValueError(f"unknown projection type {proj_type!r}; choose from: std, left, right")
    projected = [
        module.weight
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and any(target in name for target in target_modules_list)
        and module.weight.requires_grad
        and min(module.weight.shape) > rank
    ]
    regular = [p for p in model.parameters() if p.requires_grad and not any(p is q for q in projected)]
    return [
        {"params": regular},
        {"params": projected, "rank": rank, "update_proj_gap": update_proj_gap, "alpha": alpha, "proj_type": proj_type},
    ]


def projection_side(shape: torch.Size, proj_type: str = "std") -> str:
    """'right' projects the rows of G (m x n -> m x r), 'left' its columns (-> r x n); 'std' picks the smaller result."""
    if proj_type == "std":
        return "right" if shape[0] >= shape[1] else "left"
    return proj_type


def subspace(grad: torch.Tensor, rank: int, side: str) -> torch.Tensor:
    """The basis to project on: the top `rank` right (r x n) or left (m x r) singular vectors of `grad`."""
    u, _, vh = torch.linalg.svd(grad.float(), full_matrices=False)
    # clone: a slice would keep all of U or V alive, as much memory again as the weight itself.
    return (vh[:rank] if side == "right" else u[:, :rank]).to(grad.dtype, copy=True)


def low_rank_shape(shape: torch.Size, rank: int, side: str) -> tuple[int, int]:
    """The shape of a projected gradient; the basis has the other one of (m x r, r x n)."""
    m, n = shape
    return (m, rank) if side == "right" else (rank, n)


def project(grad: torch.Tensor, basis: torch.Tensor, side: str) -> torch.Tensor:
    return grad @ basis.T if side == "right" else basis.T @ grad


def project_back(low_rank: torch.Tensor, basis: torch.Tensor, side: str) -> torch.Tensor:
    """The inverse of `project` on the subspace (and zero outside it)."""
    return low_rank @ basis if side == "right" else basis @ low_rank


class GaLoreAdamW(AdamW):
    """AdamW on projected gradients for groups with a "rank" (see `divide_params`); plain AdamW for the others."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, update_proj_gap=200, alpha=1.0, proj_type="std"):
        # eps and weight decay: the fira and galore-torch packages' defaults. A group is projected if it has a "rank".
        super().__init__(params, lr, betas, eps, weight_decay, update_proj_gap=update_proj_gap, alpha=alpha, proj_type=proj_type)

    def update_parameter(self, param, group):
        if "rank" not in group:
            return super().update_parameter(param, group)
        state, settings = self.state[param], settings_from(group, AdamSettings)
        grad, side = param.grad, projection_side(param.shape, group["proj_type"])
        if not state:
            shape = low_rank_shape(param.shape, group["rank"], side)
            state.update(adam_init(torch.empty(shape, dtype=param.dtype, device=param.device)))
        if state["step"] % group["update_proj_gap"] == 0:
            state["basis"] = subspace(grad, group["rank"], side)
        low_rank = project(grad, state["basis"], side)
        direction = adam_direction(low_rank, state, settings)  # Adam's step in the subspace
        update = project_back(direction, state["basis"], side).mul_(group["alpha"])
        update = self.add_residual(update, grad, low_rank, direction, side, state, settings)
        if settings.weight_decay:
            param.mul_(1 - settings.lr * settings.weight_decay)
        param.add_(update, alpha=-settings.lr)

    def add_residual(self, update, grad, low_rank, direction, side, state, settings):
        return update  # GaLore drops the gradient outside the subspace

    def state_bytes(self, param, group):
        if "rank" not in group:
            return super().state_bytes(param, group)
        m, n = param.shape
        r = group["rank"]
        low_rank = math.prod(low_rank_shape(param.shape, r, projection_side(param.shape, group["proj_type"])))
        basis = (m + n) * r - low_rank
        return (2 * low_rank + basis) * param.element_size()


class FiraAdamW(GaLoreAdamW):
    """GaLore plus the scaled residual: full-rank updates from low-rank state."""

    def add_residual(self, update, grad, low_rank, direction, side, state, settings):
        residual = grad - project_back(low_rank, state["basis"], side)
        # How much Adam scaled the gradient, per row (or column): measured along the rank dimension.
        rank_dim = 1 if side == "right" else 0
        ratio = torch.linalg.vector_norm(direction, dim=rank_dim, keepdim=True) / (
            torch.linalg.vector_norm(low_rank, dim=rank_dim, keepdim=True) + 1e-8
        )
        scaled = residual.mul_(ratio)
        # The limiter compares norms without Adam's bias correction, which by itself changes the
        # step's size from one step to the next (by up to 25 % early on), as the fira package does.
        beta1, beta2 = settings.betas
        bias_correction = math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
        norm = torch.linalg.vector_norm(scaled) / bias_correction
        if "residual_norm" in state:
            limiter = torch.clamp(norm / (state["residual_norm"] + 1e-8), min=GROWTH_LIMIT) / GROWTH_LIMIT
            scaled.div_(limiter)
            norm = norm / limiter
        state["residual_norm"] = norm
        return update.add_(scaled)

    def state_bytes(self, param, group):
        residual_norm = 4 if "rank" in group else 0  # one float32 number
        return super().state_bytes(param, group) + residual_norm
