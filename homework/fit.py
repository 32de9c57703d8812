"""
Can the model learn? Fit 1000 samples of random noise, half labelled 0 and half 1, through a
frozen random linear head, with AdamW (torch's, or --optimizer NAME) on the model's trainable
parameters:

    python -m homework.fit lora
    python -m homework.fit bignet --optimizer fira --step-in-backward

With 1024 input dimensions and only 1000 samples, any model that trains at all overfits them
quickly: LoRA and QLoRA pass 80% accuracy in about a dozen full-batch steps.
"""

import torch

from .bignet import BIGNET_DIM
from .cli import UsageError, check_float, check_fraction, check_int, run
from .models import check_names, load_model, pick_device
from .optim import DEFAULT_OPTIMIZER, check_optimizer, make_optimizer
from .optim.recipes import EMA, accumulate_gradients, step_in_backward


def noise_classification(n_samples: int = 1000, seed: int = 0, device="cpu") -> tuple[torch.Tensor, torch.Tensor, torch.nn.Linear]:
    """Inputs, labels (first half 0, second half 1) and a frozen random head, the same for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, BIGNET_DIM, generator=generator)
    labels = (torch.arange(n_samples) >= n_samples // 2).long()
    head = torch.nn.Linear(BIGNET_DIM, 2)
    with torch.no_grad():
        head.weight.copy_(torch.randn(2, BIGNET_DIM, generator=generator) / BIGNET_DIM**0.5)
        head.bias.zero_()
    return x.to(device), labels.to(device), head.requires_grad_(False).to(device)


def fit(
    model: torch.nn.Module, x, labels, head, steps: int = 50, lr: float | None = None, stop_at: float | None = None, log=print,
    optimizer: str = DEFAULT_OPTIMIZER, in_backward: bool = False, micro_batches: int = 1, ema: float | None = None,
) -> float:
    """
    Full-batch steps of `optimizer` (a name from homework.optim.OPTIMIZERS; `lr` None: its default)
    on the model's trainable parameters; returns the best accuracy seen. Stops early once accuracy
    reaches `stop_at`. `in_backward` steps inside the backward pass; `micro_batches` > 1
    accumulates each batch's gradients in that many pieces; `ema` (a decay, e.g. 0.9) also keeps
    a moving average of the weights and logs its accuracy at the end.
    """
    if in_backward and micro_batches > 1:
        raise UsageError("stepping in backward updates after every backward pass: it cannot accumulate micro-batches")
    chosen = make_optimizer(optimizer, model, lr)
    if in_backward:
        step_in_backward(chosen)
    average = EMA(model, ema) if ema else None
    accuracies = []

    def loss_of(inputs, targets):
        logits = head(model(inputs))
        accuracies.append((logits.argmax(dim=1) == targets).float().mean().item() * len(inputs) / len(x))
        return torch.nn.functional.cross_entropy(logits, targets)

    def closure(backward=True):
        # torchzero's convention: a line search asks for the loss alone with backward=False.
        if not backward:
            with torch.no_grad():
                return loss_of(x, labels)
        chosen.zero_grad()
        return accumulate_gradients(loss_of, x, labels, micro_batches)

    best = 0.0
    for step in range(1, steps + 1):
        accuracies.clear()
        loss = chosen.step(closure)
        if average:
            average.update()
        # The accuracy of the weights the step started from: the first evaluation's (L-BFGS evaluates several times).
        accuracy = sum(accuracies[:micro_batches])
        best = max(best, accuracy)
        log(f"step {step:3d}  loss {float(loss):.4f}  accuracy {accuracy:.3f}")
        if stop_at is not None and accuracy >= stop_at:
            break
    if average:
        with average.applied(), torch.no_grad():
            log(f"moving average of the weights: accuracy {(head(model(x)).argmax(dim=1) == labels).float().mean().item():.3f}")
    return best


def main(
    model: str = "lora", device: str | None = None, checkpoint: str | None = None, steps: int = 50, lr: float | None = None, seed: int = 0,
    optimizer: str = DEFAULT_OPTIMIZER, step_in_backward: bool = False, micro_batches: int = 1, ema: float | None = None,
):
    (name,) = check_names([model])
    steps, seed, micro_batches = check_int("steps", steps, minimum=1), check_int("seed", seed, minimum=0), check_int("micro_batches", micro_batches, minimum=1)
    lr = None if lr is None else check_float("lr", lr, above=0)
    ema = None if ema is None else check_fraction("ema", ema)
    optimizer = check_optimizer(str(optimizer))
    device = pick_device(device)
    torch.manual_seed(seed)  # the adapters' random init
    net = load_model(name, checkpoint, device)
    best = fit(net, *noise_classification(seed=seed, device=device), steps=steps, lr=lr, optimizer=optimizer, in_backward=step_in_backward, micro_batches=micro_batches, ema=ema)
    print(f"{name}: best accuracy {best:.3f} in {steps} steps")


if __name__ == "__main__":
    run(main)
