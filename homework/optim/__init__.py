"""
Memory-efficient training: the optimizer's share of training memory, measured and cut.

Not a graded part of the homework: these tools ship complete, like `stats` and `fit`.

    functional.py  SGD, Adam, AdamW as pure step functions (torch.optim's numbers), and the
                   ParameterwiseOptimizer base every optimizer here shares
    chain.py       optimizers as chains of small transforms: Adam, momentum, Cautious, clipping, ...
    low_rank.py    GaLore and Fira: low-rank optimizer state, full-rank training
    eight_bit.py   AdamW with 8-bit moments
    lbfgs.py       L-BFGS with a line search, through closures
    recipes.py     EMA, gradient accumulation, parameter groups, the step inside backward
    sharded.py     optimizer state sharded across data-parallel processes (ZeRO stage 1)

`make_optimizer(name, model)` builds any of them by the names the tools accept (`--optimizer`).
"""

import torch

from .chain import Chain, cautious, lr, scale_by_adam, weight_decay
from .eight_bit import AdamW8bit
from .functional import SGD, Adam, AdamW, ParameterwiseOptimizer
from .lbfgs import LBFGS
from .low_rank import FiraAdamW, GaLoreAdamW, divide_params

LOW_RANK = 128  # GaLore's and Fira's rank: for BigNet's 1024 x 1024 weights, 3/16 of AdamW's state


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# name: (make(model, lr), the learning rate it trains the tools' tasks with by default)
OPTIMIZERS = {
    "torch_adamw": (lambda model, rate: torch.optim.AdamW(trainable(model), lr=rate), 1e-3),
    "adamw": (lambda model, rate: AdamW(trainable(model), lr=rate), 1e-3),
    "adam": (lambda model, rate: Adam(trainable(model), lr=rate), 1e-3),
    "sgd": (lambda model, rate: SGD(trainable(model), lr=rate, momentum=0.9), 1e-2),
    "cautious_adamw": (lambda model, rate: Chain(trainable(model), scale_by_adam(), cautious(), weight_decay(1e-2), lr(rate)), 1e-3),
    # GaLore and Fira project the weights whose smaller side is above LOW_RANK; every other parameter, and
    # so all of LoRA's adapters (rank 32), is in their plain group: AdamW with their eps (1e-6) and no weight
    # decay, the fira package's defaults, not torch's AdamW's (1e-8 and 0.01). See low_rank.divide_params.
    "galore": (lambda model, rate: GaLoreAdamW(divide_params(model, rank=LOW_RANK), lr=rate), 1e-3),
    "fira": (lambda model, rate: FiraAdamW(divide_params(model, rank=LOW_RANK), lr=rate), 1e-3),
    "adamw8bit": (lambda model, rate: AdamW8bit(trainable(model), lr=rate), 1e-3),
    "lbfgs": (lambda model, rate: LBFGS(trainable(model), lr=rate, line_search="backtracking"), 1.0),
}
DEFAULT_OPTIMIZER = "torch_adamw"


class NothingToTrain(ValueError):
    """The model has no trainable parameters."""


def make_optimizer(name: str, model: torch.nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimizer `name` (a key of OPTIMIZERS) over the model's trainable parameters, at learning rate `lr` (its default if None)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from: {', '.join(OPTIMIZERS)}")
    if not trainable(model):
        raise NothingToTrain(f"{type(model).__name__} has no trainable parameters: there is nothing to train")
    make, default_lr = OPTIMIZERS[name]
    return make(model, default_lr if lr is None else lr)


def theoretical_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The optimizer's state, from its definition for ours; for any other, from the sizes and dtypes of the tensors it holds."""
    if isinstance(optimizer, ParameterwiseOptimizer):
        return optimizer.theoretical_state_bytes()
    return _tensor_bytes(list(optimizer.state.values()))


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        value = list(value.values())
    return sum(_tensor_bytes(v) for v in value) if isinstance(value, (list, tuple)) else 0
