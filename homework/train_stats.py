"""
Training memory, measured: what one training step holds, for any model and optimizer:

    python -m homework.train_stats bignet lora qlora --optimizer fira
    python -m homework.train_stats bignet --optimizer adamw8bit --step-in-backward

Each row is measured by the allocator (homework.memory.AllocationTrace), then theoretical:
Weights           the model as loaded                    / its parameters and buffers
Gradients         held once backward is done             / one per trainable value (none when the
                                                           step runs in backward: each is freed as used)
Optimizer state   made by the first step, and kept       / what the optimizer's definition stores
Activations       kept by autograd from forward to       / the tensors autograd saved for backward
                  backward (a batch, default 64 inputs)
Peak              the most allocated at once in a step,  / the four above together
                  weights and state included
MB means 2**20 bytes. The task is homework.fit's noise classification.
"""

from contextlib import contextmanager

import torch

from .cli import UsageError, check_choice, check_device, check_int, check_names, run, show_written
from .data import noise_classification
from .memory import MB, AllocationTrace, measurable, theoretical_bytes
from .models import NotWritten, load_model, or_not_written
from .optim import DEFAULT_OPTIMIZER, OPTIMIZERS, NothingToTrain, make_optimizer, recipes, theoretical_state_bytes, trainable
from .stats import format_table

ROWS = ("Weights", "Gradients", "Optimizer state", "Activations", "Peak")


@contextmanager
def saved_for_backward(exclude):
    """Yields a dict filled, as autograd saves tensors for backward, with their storages' sizes (those of `exclude` left out)."""
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            saved[storage.data_ptr()] = storage.nbytes()  # a storage saved twice (views) counts once
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield saved


def training_stats(
    name: str, optimizer: str = DEFAULT_OPTIMIZER, device="cpu", checkpoint=None, batch_size: int = 64, step_in_backward: bool = False
) -> dict[str, tuple[int, int]]:
    """Each row's (measured, theoretical) bytes for two training steps of model `name` with `optimizer`."""
    with AllocationTrace() as loading:
        model = load_model(name, checkpoint, device)
    x, labels, head = noise_classification(batch_size, seed=0, device=device)
    chosen = make_optimizer(optimizer, model)
    if step_in_backward:
        recipes.step_in_backward(chosen)
    return measure_training(
        model, chosen, lambda: torch.nn.functional.cross_entropy(head(model(x)), labels), x, loading.net, step_in_backward
    )


def measure_training(model, optimizer, loss, inputs, loaded_bytes: int, step_in_backward: bool = False) -> dict[str, tuple[int, int]]:
    """
    Two training steps of `loss()` (a function of no arguments) with `optimizer`, measured: each
    row's (measured, theoretical) bytes. `loaded_bytes`: what loading the model allocated.
    """
    with torch.no_grad():
        loss()  # warm-up: a device's first matmul allocates library workspaces (cuBLAS) that are not the model's

    # The first step: autograd saves activations in forward; backward turns them into gradients; the
    # optimizer's state appears (lazily, as torch.optim's does) in the first step.
    with AllocationTrace() as forward, saved_for_backward([*model.parameters(), *model.buffers(), inputs]) as saved:
        value = loss()
    with AllocationTrace() as first_step:
        value.backward()
        optimizer.step(reusing(value, loss, optimizer))
        del value  # the loss: part of forward's figure, not of the state
    with AllocationTrace() as freeing:
        optimizer.zero_grad(set_to_none=True)
    gradients = -freeing.net
    state = forward.net + first_step.net - gradients

    # The second step, from zeroed gradients: the peak of a step in steady state.
    with AllocationTrace() as second_step:
        value = loss()
        value.backward()
        optimizer.step(reusing(value, loss, optimizer))
        del value
        optimizer.zero_grad(set_to_none=True)

    theoretical = {
        "Weights": theoretical_bytes(model),
        "Gradients": 0 if step_in_backward else sum(p.numel() * p.element_size() for p in trainable(model)),
        "Optimizer state": theoretical_state_bytes(optimizer),
        "Activations": sum(saved.values()),
    }
    theoretical["Peak"] = sum(theoretical.values())
    measured = {
        "Weights": loaded_bytes,
        "Gradients": gradients,
        "Optimizer state": state,
        "Activations": forward.net,
        "Peak": loaded_bytes + state + second_step.peak,
    }
    return {row: (measured[row], theoretical[row]) for row in ROWS}


def reusing(value: torch.Tensor, loss, optimizer):
    """
    A closure (torchzero's convention) whose first call returns `value`, the loss whose gradients
    backward has already made, and whose later calls compute the loss again: what an optimizer
    that evaluates several times a step (L-BFGS) needs, at no cost to one that evaluates once.
    """
    first = [value.detach()]

    def closure(backward=True):
        if first:
            return first.pop()
        if not backward:
            with torch.no_grad():
                return loss()
        optimizer.zero_grad()
        again = loss()
        again.backward()
        return again

    return closure


def training_table(columns: dict[str, dict[str, tuple[int, int]] | NotWritten]) -> str:
    """stats' table, each cell "measured / theoretical"."""
    cells = {
        name: column if isinstance(column, NotWritten) else {row: f"{m / MB:.2f} / {t / MB:.2f} MB" for row, (m, t) in column.items()}
        for name, column in columns.items()
    }
    return format_table(cells, ROWS, min_width=22) + "\n(measured / theoretical)"


def main(
    *models: str,
    optimizer: str = DEFAULT_OPTIMIZER,
    step_in_backward: bool = False,
    device: str | None = None,
    checkpoint: str | None = None,
    batch_size: int = 64,
):
    names = check_names(models or ["bignet"])
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    device, note = measurable(check_device(device))
    if note:
        print(note)
    label = optimizer + (", step in backward" if step_in_backward else "")
    print(f"one training step with {label}, batch of {batch_size}")
    try:
        columns = {
            name: or_not_written(training_stats, name, optimizer, device, checkpoint, batch_size, step_in_backward) for name in names
        }
    except (NothingToTrain, recipes.NotParameterwise) as e:
        raise UsageError(str(e)) from None
    show_written(columns, lambda shown: print(training_table(shown)))


if __name__ == "__main__":
    run(main)
