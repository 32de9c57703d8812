"""
The training-loop recipes of the Flax optimization cookbook, in PyTorch, and one beyond it:

- EMA: an exponential moving average of the weights, to evaluate with;
- accumulate_gradients: one batch's gradients from micro-batches, a fraction of the activations;
- parameter_groups: per-parameter settings (learning rates), and updates restricted to a subset;
- step_in_backward: each parameter updated, and its gradient freed, as soon as that gradient is
  ready, so the whole model's gradients never exist at once.
"""

from contextlib import contextmanager

import torch

from .functional import ParameterwiseOptimizer


class EMA:
    """
    An exponential moving average of a model's trainable weights: after each optimizer step,
    `update()`; to evaluate with the averages, `with ema.applied(): ...`. It costs one copy of the
    trainable weights (the adapters' 4.5 MB for LoRA).
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.99):
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.averages = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        for average, param in zip(self.averages, self.params):
            average.lerp_(param, 1 - self.decay)

    @contextmanager
    def applied(self):
        """The model computes with the averaged weights inside the block, with its own again after."""
        # Swapping what the parameters point to copies nothing, and the optimizer's references stay valid.
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def _swap(self) -> None:
        for i, param in enumerate(self.params):
            param.data, self.averages[i] = self.averages[i], param.data


def accumulate_gradients(loss_fn, inputs: torch.Tensor, targets: torch.Tensor, micro_batches: int) -> torch.Tensor:
    """
    Leave on the parameters the gradient of the batch's mean loss, computed in `micro_batches`
    pieces: each piece's activations are freed before the next is run, so the peak activation
    memory is divided by `micro_batches`. `loss_fn(inputs, targets)` is a piece's mean loss.
    Returns the batch's mean loss.
    """
    total = 0.0
    for x, y in zip(inputs.tensor_split(micro_batches), targets.tensor_split(micro_batches)):
        # Weighted by the piece's share of the batch, the pieces' gradients add up to the batch's.
        loss = loss_fn(x, y) * (len(x) / len(inputs))
        loss.backward()
        total = total + loss.detach()  # on the loss's device: no wait for a GPU between pieces
    return total


def parameter_groups(model: torch.nn.Module, rules: dict) -> list[dict]:
    """
    Parameter groups for any torch optimizer, by rules: {match: settings}, where match is a module
    type (e.g. LayerNorm) or a substring of the parameter's name (e.g. "lora_"); the first rule
    that matches a parameter places it. Parameters that no rule matches are in no group, so the
    optimizer never updates them, whatever their requires_grad says: {"lora_": {}} is LoRA-only.
    """
    groups = {match: {"params": [], **settings} for match, settings in rules.items()}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(prefix=module_name, recurse=False):
            for match, group in groups.items():
                if isinstance(module, match) if isinstance(match, type) else match in name:
                    group["params"].append(param)
                    break
    return [group for group in groups.values() if group["params"]]


class NotParameterwise(TypeError):
    """An optimizer that updates all its parameters at once: it cannot step inside the backward pass."""


def step_in_backward(optimizer: ParameterwiseOptimizer) -> list:
    """
    From now on, the backward pass itself updates each parameter the moment its gradient is
    complete, then frees that gradient; `optimizer.step()` has nothing left to do. Gradients are
    never all held at once: at most the few of the layers the backward pass is working through.
    (Gradient accumulation and global gradient clipping need all of them, so they do not mix.)
    Returns the hooks' handles: `handle.remove()` undoes it.
    """
    if not isinstance(optimizer, ParameterwiseOptimizer):
        raise NotParameterwise(
            f"stepping in backward needs an optimizer that updates one parameter at a time, not {type(optimizer).__name__}"
        )

    def hook_for(group):
        @torch.no_grad()
        def hook(param):
            optimizer.update_parameter(param, group)
            param.grad = None

        return hook

    return [
        param.register_post_accumulate_grad_hook(hook_for(group))
        for group in optimizer.param_groups
        for param in group["params"]
        if param.requires_grad
    ]
