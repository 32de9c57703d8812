"""
Optimizers as chains of small update transforms (optax's and torchzero's design).

The update starts as the gradient; each transform in the chain changes it and passes it on; the
parameter moves by minus the last one. AdamW is

    Chain(params, scale_by_adam(), weight_decay(0.01), lr(1e-3))

Adam's direction, plus the decay, scaled by the learning rate: torch.optim.AdamW's update. Order
matters, as in torchzero: `lr` before `weight_decay` makes the decay independent of the learning
rate (fully decoupled). Insert `cautious()` after Adam and the chain is Cautious AdamW.

A transform has settings (names and defaults) that any parameter group may override, as in
torch.optim: Chain(groups, ...) with {"params": norms, "lr": 1e-2} gives the LayerNorms their own
learning rate, and torch's LR schedulers work unchanged, since they set each group's "lr".
Transforms work on one parameter at a time (per-tensor clipping, for instance), so a chain can
also step inside the backward pass.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .functional import AdamSettings, ParameterwiseOptimizer, adam_direction, adam_init


@dataclass(frozen=True)
class Transform:
    """
    One link of a chain. `update(update, grad, param, state, settings)` returns the new update;
    `state` is this transform's own dict for this parameter (made by `init(param, settings)` on the
    first step), `settings` the parameter group's values of `defaults`' names, and "step".
    """

    update: Callable[..., torch.Tensor]
    defaults: dict = field(default_factory=dict)
    init: Callable[[torch.Tensor, dict], dict] = lambda param, settings: {}
    state_bytes: Callable[[torch.Tensor, dict], int] = lambda param, settings: 0  # for train_stats


def scale_by_adam(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> Transform:
    """Adam's direction (learning rate 1): the moments' update is functional.adam_moments."""

    def settings(s):
        return AdamSettings(betas=(s["beta1"], s["beta2"]), eps=s["eps"])

    return Transform(
        update=lambda update, grad, param, state, s: adam_direction(update, state, settings(s)),
        defaults=dict(beta1=beta1, beta2=beta2, eps=eps),
        init=lambda param, s: adam_init(param),
        state_bytes=lambda param, s: 2 * param.numel() * param.element_size(),
    )


def momentum(momentum: float = 0.9, nesterov: bool = False) -> Transform:
    """Heavy-ball momentum, as torch.optim.SGD keeps it (no dampening); Nesterov looks one step ahead."""

    def update(update, grad, param, state, s):
        if "buffer" not in state:
            state["buffer"] = update.clone()
        else:
            state["buffer"].mul_(s["momentum"]).add_(update)
        return update.add(state["buffer"], alpha=s["momentum"]) if s["nesterov"] else state["buffer"]

    return Transform(update, dict(momentum=momentum, nesterov=nesterov), state_bytes=lambda param, s: param.numel() * param.element_size())


def cautious() -> Transform:
    """
    Cautious (Liang et al., 2024): zero the update wherever its sign disagrees with the gradient's,
    so no coordinate moves against its own gradient. torchzero's Cautious with its defaults
    (no renormalization, which torchzero computes over all parameters at once).
    """
    return Transform(lambda update, grad, param, state, s: update * (update * grad > 0))


def clip_norm(max_norm: float = 1.0) -> Transform:
    """Scale each parameter's update down to a norm of at most `max_norm` (per tensor, so it works inside backward)."""

    def update(update, grad, param, state, s):
        norm = torch.linalg.vector_norm(update)
        return update * (s["max_norm"] / norm) if norm > s["max_norm"] else update

    return Transform(update, dict(max_norm=max_norm))


def weight_decay(weight_decay: float = 1e-2) -> Transform:
    """Add weight_decay * param to the update: before `lr`, torch's AdamW decay; after it, fully decoupled."""
    return Transform(lambda update, grad, param, state, s: update.add(param, alpha=s["weight_decay"]), dict(weight_decay=weight_decay))


def lr(lr: float = 1e-3, schedule: Callable[[int], float] | None = None) -> Transform:
    """
    Scale by the group's learning rate, times `schedule(step)` if given (steps count from 1).
    The chain's only learning rate, as in torchzero: per-group rates and torch's schedulers set it.
    """

    def update(update, grad, param, state, s):
        return update * (s["lr"] * (schedule(s["step"]) if schedule else 1.0))

    return Transform(update, dict(lr=lr))


def warmup_cosine(total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """A schedule for `lr`: linear warm-up to 1, then a cosine decay to 0 at `total_steps`."""

    def schedule(step: int) -> float:
        if step <= warmup_steps:
            return step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return schedule


class Chain(ParameterwiseOptimizer):
    """An optimizer that applies `transforms` in order and moves each parameter by minus the result."""

    def __init__(self, params, *transforms: Transform):
        self.transforms = transforms
        defaults = {}
        for transform in transforms:
            for name, value in transform.defaults.items():
                if defaults.get(name, value) != value:
                    raise ValueError(f"two transforms in the chain set {name!r} differently: {defaults[name]!r} and {value!r}")
                defaults[name] = value
        super().__init__(params, defaults)

    def update_parameter(self, param, group):
        state = self.state[param]
        if not state:
            state.update(step=0, links=[transform.init(param, group) for transform in self.transforms])
        state["step"] += 1
        settings = {**group, "step": state["step"]}
        update = param.grad
        for transform, link_state in zip(self.transforms, state["links"]):
            update = transform.update(update, param.grad, param, link_state, settings)
        param.sub_(update)

    def state_bytes(self, param, group):
        return sum(transform.state_bytes(param, group) for transform in self.transforms)
