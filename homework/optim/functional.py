"""
Optimizers as pure step functions, and a thin torch.optim.Optimizer over them.

A functional optimizer is three things (optorch's design): settings (a frozen dataclass), a state
(a dict of tensors for one parameter) and a step function `step(param, grad, state, settings)`.
The step reads nothing else and keeps nothing else: everything it depends on is in its arguments,
so two runs from equal arguments give equal results, and a step can be tested on its own.
It does update `param` and `state` in place: a copy of BigNet's 72 MB of weights every step is
exactly the memory this package sets out to save.

Each step function works on ONE parameter; `ParameterwiseOptimizer.step` maps it over them all.
That is also what lets a step run inside the backward pass (`recipes.step_in_backward`), the
moment one parameter's gradient is ready.

The arithmetic follows torch.optim's, operation for operation, so SGD, Adam and AdamW here give
the same numbers as torch's (tests/test_optim_functional.py: bit for bit after 50 steps).
"""

import math
from dataclasses import dataclass, fields

import torch


class ParameterwiseOptimizer(torch.optim.Optimizer):
    """
    A torch.optim.Optimizer whose step updates each parameter from its own gradient and state
    alone. Subclasses say how, in `update_parameter`, and how much state that takes, in
    `state_bytes` (the theoretical size that `homework.train_stats` prints beside the measured one).
    """

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()  # a torchzero-style closure(backward=True) is called the same way
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self.update_parameter(param, group)
        return loss

    def update_parameter(self, param: torch.Tensor, group: dict) -> None:
        raise NotImplementedError

    def state_bytes(self, param: torch.Tensor, group: dict) -> int:
        """What this optimizer's state for `param` takes, from its definition."""
        raise NotImplementedError

    def theoretical_state_bytes(self) -> int:
        return sum(self.state_bytes(p, group) for group in self.param_groups for p in group["params"] if p.requires_grad)


def settings_from(group: dict, settings_class):
    """The dataclass `settings_class` filled from a parameter group's entries of the same names."""
    return settings_class(**{f.name: group[f.name] for f in fields(settings_class)})


# ---------------------------------------------------------------------------------------------
# SGD


@dataclass(frozen=True)
class SGDSettings:
    lr: float = 1e-3
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0


def sgd_step(param: torch.Tensor, grad: torch.Tensor, state: dict, s: SGDSettings) -> None:
    """One SGD step for one parameter. `state` holds the momentum buffer, made on the first step."""
    if s.weight_decay:
        grad = grad.add(param, alpha=s.weight_decay)  # L2 penalty: its gradient joins the momentum
    if s.momentum:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = grad.clone()  # the first step starts the average at the gradient, undamped
        else:
            state["momentum_buffer"].mul_(s.momentum).add_(grad, alpha=1 - s.dampening)
        buffer = state["momentum_buffer"]
        grad = grad.add(buffer, alpha=s.momentum) if s.nesterov else buffer
    param.add_(grad, alpha=-s.lr)


class SGD(ParameterwiseOptimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs a momentum > 0 and no dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay))

    def update_parameter(self, param, group):
        sgd_step(param, param.grad, self.state[param], settings_from(group, SGDSettings))

    def state_bytes(self, param, group):
        return param.numel() * param.element_size() if group["momentum"] else 0


# ---------------------------------------------------------------------------------------------
# Adam and AdamW


@dataclass(frozen=True)
class AdamSettings:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled: bool = False  # True: AdamW's weight decay, applied to the weights, not added to the gradient
    amsgrad: bool = False  # divide by the largest second moment seen so far


def adam_init(param: torch.Tensor, amsgrad: bool = False) -> dict:
    """Adam's state for one parameter: the step count and the two moment estimates, zero."""
    state = {"step": 0, "exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param)}
    if amsgrad:
        state["max_exp_avg_sq"] = torch.zeros_like(param)
    return state


def adam_state_bytes(param: torch.Tensor, amsgrad: bool = False) -> int:
    """What `adam_init` keeps for one parameter: two moments (three with amsgrad) of its size and dtype."""
    return (3 if amsgrad else 2) * param.numel() * param.element_size()


def adam_moments(grad: torch.Tensor, state: dict, s: AdamSettings) -> tuple[torch.Tensor, torch.Tensor, float]:
    """
    Advance Adam's state by one gradient: (first moment, denominator, first moment's bias correction).
    The update direction is first moment / bias correction / denominator; every Adam here
    (AdamW, the chain's scale_by_adam, GaLore and Fira, the 8-bit states) shares this one home.
    """
    beta1, beta2 = s.betas
    state["step"] += 1
    state["exp_avg"].lerp_(grad, 1 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    second_moment = state["exp_avg_sq"]
    if s.amsgrad:
        torch.maximum(state["max_exp_avg_sq"], second_moment, out=state["max_exp_avg_sq"])
        second_moment = state["max_exp_avg_sq"]
    # Both moments start at zero, so early averages are too small by a factor 1 - beta**step:
    # dividing that back out is Adam's bias correction. eps is added after correcting, as torch does.
    denominator = (second_moment.sqrt() / math.sqrt(1 - beta2 ** state["step"])).add_(s.eps)
    return state["exp_avg"], denominator, 1 - beta1 ** state["step"]


def adam_step(param: torch.Tensor, grad: torch.Tensor, state: dict, s: AdamSettings) -> None:
    """One Adam (or, with `decoupled`, AdamW) step for one parameter, with `state` from `adam_init`."""
    if s.weight_decay and s.decoupled:
        param.mul_(1 - s.lr * s.weight_decay)  # AdamW: shrink the weights, apart from the adaptive scaling
    elif s.weight_decay:
        grad = grad.add(param, alpha=s.weight_decay)  # Adam: an L2 penalty, which the scaling then distorts
    exp_avg, denominator, bias_correction1 = adam_moments(grad, state, s)
    param.addcdiv_(exp_avg, denominator, value=-s.lr / bias_correction1)


def adam_direction(grad: torch.Tensor, state: dict, s: AdamSettings) -> torch.Tensor:
    """The step Adam would take for `grad` at learning rate 1, as a new tensor (for optimizers that transform it further)."""
    exp_avg, denominator, bias_correction1 = adam_moments(grad, state, s)
    return exp_avg.div(denominator).div_(bias_correction1)


class Adam(ParameterwiseOptimizer):
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, **more_defaults):
        # more_defaults: the settings of a subclass's own groups (GaLore's projection, say)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, decoupled=self.decoupled)
        super().__init__(params, {**defaults, **more_defaults})

    def update_parameter(self, param, group):
        state = self.state[param]
        if not state:
            state.update(adam_init(param, group["amsgrad"]))
        adam_step(param, param.grad, state, settings_from(group, AdamSettings))

    def state_bytes(self, param, group):
        return adam_state_bytes(param, group["amsgrad"])


class AdamW(Adam):
    """Adam with decoupled weight decay; torch.optim.AdamW's defaults, weight decay 0.01 included."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, **more_defaults):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, **more_defaults)
