"""
Can the model learn? Fit 1000 samples of random noise, half labelled 0 and half 1, through a
frozen random head, with AdamW (torch's, or --optimizer NAME) on the model's trainable
parameters:

    python -m homework.fit lora
    python -m homework.fit bignet --optimizer fira --step-in-backward

With 1024 input dimensions and only 1000 samples, any model that trains at all overfits them
quickly: LoRA and QLoRA pass 80% accuracy in about a dozen full-batch steps.
"""

import torch

from .cli import UsageError, check_choice, check_device, check_float, check_fraction, check_int, check_names, run
from .data import noise_classification
from .models import load_model
from .optim import DEFAULT_OPTIMIZER, OPTIMIZERS, NothingToTrain, make_optimizer, recipes


@torch.no_grad()
def accuracy(model: torch.nn.Module, head: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    return (head(model(x)).argmax(dim=1) == labels).float().mean().item()


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x,
    labels,
    head,
    steps: int = 50,
    stop_at: float | None = None,
    micro_batches: int = 1,
    average: recipes.EMA | None = None,
    log=print,
) -> float:
    """
    Full-batch steps of `optimizer` on the cross-entropy of head(model(x)); returns the best accuracy
    seen. Stops early once accuracy reaches `stop_at`. `micro_batches` > 1 accumulates each batch's
    gradients in that many pieces; `average`, an EMA of the model, is updated after each step.
    """
    # Each step's accuracy comes from the forward passes its loss needs anyway, not from one more: every
    # evaluation of the loss adds its pieces' shares of the batch's accuracy here.
    shares = []

    def loss_of(inputs, targets):
        logits = head(model(inputs))
        shares.append((logits.argmax(dim=1) == targets).float().mean().item() * len(inputs) / len(x))
        return torch.nn.functional.cross_entropy(logits, targets)

    def closure(backward=True):
        # torchzero's convention: a line search asks for the loss alone with backward=False.
        if not backward:
            with torch.no_grad():
                return loss_of(x, labels)
        optimizer.zero_grad()
        return recipes.accumulate_gradients(loss_of, x, labels, micro_batches)

    best = 0.0
    for step in range(1, steps + 1):
        shares.clear()
        loss = optimizer.step(closure)
        if average:
            average.update()
        # The accuracy of the weights the step started from: its first evaluation's (L-BFGS evaluates several times).
        before = sum(shares[:micro_batches])
        best = max(best, before)
        log(f"step {step:3d}  loss {float(loss):.4f}  accuracy {before:.3f}")
        if stop_at is not None and before >= stop_at:
            break
    return best


def main(
    model: str = "lora",
    device: str | None = None,
    checkpoint: str | None = None,
    steps: int = 50,
    lr: float | None = None,
    seed: int = 0,
    optimizer: str = DEFAULT_OPTIMIZER,
    step_in_backward: bool = False,
    micro_batches: int = 1,
    ema: float | None = None,
):
    (name,) = check_names([model])
    steps, seed, micro_batches = (
        check_int("steps", steps, minimum=1),
        check_int("seed", seed, minimum=0),
        check_int("micro_batches", micro_batches, minimum=1),
    )
    lr = None if lr is None else check_float("lr", lr, above=0)
    ema = None if ema is None else check_fraction("ema", ema)
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    if step_in_backward and micro_batches > 1:
        raise UsageError("stepping in backward updates after every backward pass: it cannot accumulate micro-batches")
    device = check_device(device)
    torch.manual_seed(seed)  # the adapters' random init
    net = load_model(name, checkpoint, device)
    try:
        chosen = make_optimizer(optimizer, net, lr)
        if step_in_backward:
            recipes.step_in_backward(chosen)
    except (NothingToTrain, recipes.NotParameterwise) as e:
        raise UsageError(str(e)) from None
    x, labels, head = noise_classification(seed=seed, device=device)
    average = recipes.EMA(net, ema) if ema else None
    best = fit(net, chosen, x, labels, head, steps=steps, micro_batches=micro_batches, average=average)
    if average:
        with average.applied():
            print(f"moving average of the weights: accuracy {accuracy(net, head, x, labels):.3f}")
    print(f"{name}: best accuracy {best:.3f} in {steps} steps")


if __name__ == "__main__":
    run(main)
