"""
Can the model learn? Fit 1000 samples of random noise, half labelled 0 and half 1, through a
frozen random head, with AdamW (torch's, or --optimizer NAME) on the model's trainable
parameters:

    python -m homework.fit lora
    python -m homework.fit bignet --optimizer fira --step-in-backward

With 1024 input dimensions and only 1000 samples, any model with adapters overfits them quickly:
LoRA and QLoRA reach the grader's target, 80% accuracy, in about a dozen full-batch steps, and
training stops there (or after --steps, 50 by default). A model with no adapters trains only its
LayerNorms, and is told so.
"""

import time

import torch

from .bignet import LayerNorm
from .cli import UsageError, check_choice, check_device, check_float, check_fraction, check_int, check_names, run
from .data import noise_classification
from .models import load_model
from .optim import DEFAULT_OPTIMIZER, OPTIMIZERS, NothingToTrain, make_optimizer, recipes, trainable

# Where training stops: the accuracy the grader's training case asks for. The grader keeps its own copy
# (grader/parts.py, TRAINING.target: it imports the homework only through grader/trusted.py); tests/test_fit.py holds the two equal.
TARGET_ACCURACY = 0.8


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


def trains_only_layer_norms(model: torch.nn.Module) -> bool:
    """Whether the model trains something, and only its LayerNorms: it has no adapters (half precision, 4-bit)."""
    owners = [module for module in model.modules() if any(p.requires_grad for p in module.parameters(recurse=False))]
    return bool(owners) and all(isinstance(module, (LayerNorm, torch.nn.LayerNorm)) for module in owners)


def duration(seconds: float) -> str:
    """'45 s', '6 min 05 s'."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class Progress:
    """
    fit's log for the command line: each step's line, with how long a step takes and, at that pace, the most
    the steps left can take (fit stops sooner if it reaches its target). Counts the steps logged.
    """

    def __init__(self, steps: int, clock=time.monotonic, log=print):
        self.steps, self.clock, self.log = steps, clock, log
        self.start, self.done = clock(), 0

    def __call__(self, line: str) -> None:
        self.done += 1
        pace = self.elapsed() / self.done
        self.log(f"{line}  {pace:.1f} s a step, at most {duration(pace * (self.steps - self.done))} left")

    def elapsed(self) -> float:
        return self.clock() - self.start


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
    print(f"training {name} until accuracy {TARGET_ACCURACY} (the grader's target), {steps} steps at most")
    if trains_only_layer_norms(net):
        count = sum(p.numel() for p in trainable(net))
        print(
            f"only the LayerNorms train ({count:,} parameters): {name.replace('_', ' ')} has no adapters, so it cannot fit the noise much"
        )
    progress = Progress(steps)
    best = fit(
        net, chosen, x, labels, head, steps=steps, stop_at=TARGET_ACCURACY, micro_batches=micro_batches, average=average, log=progress
    )
    if average:
        with average.applied():
            print(f"moving average of the weights: accuracy {accuracy(net, head, x, labels):.3f}")
    outcome = "reached the target, so it stopped" if best >= TARGET_ACCURACY else f"short of the target, {TARGET_ACCURACY}"
    steps_taken = f"{progress.done} step{'s' if progress.done > 1 else ''}"
    print(f"{name}: best accuracy {best:.3f} in {steps_taken}, {duration(progress.elapsed())}: {outcome}")


if __name__ == "__main__":
    run(main)
