"""
How far each model's outputs are from the first one's, on the same fixed random inputs:

    python -m homework.compare bignet half_precision low_precision

Each model is also run as the grader runs it (as_graded): only its parameters and buffers reach the
grader, put into a model that load() built from other weights. A model that keeps something it
computed from the weights elsewhere computes other outputs there, and is told so here.
"""

import random
import tempfile
from functools import partial
from pathlib import Path

import torch

from .bignet import make_checkpoint
from .cli import UsageError, check_device, check_int, check_names, run, show_written
from .data import random_inputs
from .models import NotWritten, load_model, or_not_written


class BuildsAnotherModel(ValueError):
    """load() builds a model with other tensors from other weights: the grader refuses it."""


def as_graded(name: str, model: torch.nn.Module, device="cpu") -> torch.nn.Module:
    """
    `model` as the grader runs it: load() on other weights of the same names and shapes, then `model`'s
    parameters and buffers put in place of that model's, by name. Nothing else of `model` is carried over.
    Raises BuildsAnotherModel where the two models' tensors differ in name, dtype or being trainable.
    """
    with tempfile.TemporaryDirectory() as folder:
        graded = load_model(name, make_checkpoint(Path(folder) / "other.pth", seed=random.randrange(2**31)), device)
    ours, theirs = (dict([*m.named_parameters(), *m.named_buffers()]) for m in (model, graded))
    for full_name in sorted(ours.keys() | theirs.keys()):
        mine, other = ours.get(full_name), theirs.get(full_name)
        if mine is None or other is None or (mine.dtype, mine.requires_grad) != (other.dtype, other.requires_grad):
            raise BuildsAnotherModel(
                f"{name}: load() builds {full_name} as {described(mine)} from these weights and as {described(other)} from others;"
                " it must build tensors of the same names, dtypes and trainable flags whatever the weights"
            )
        owner_name, _, attribute = full_name.rpartition(".")
        owner = graded.get_submodule(owner_name)
        table = owner._parameters if attribute in owner._parameters else owner._buffers
        table[attribute] = mine
    return graded


def described(tensor: torch.Tensor | None) -> str:
    if tensor is None:
        return "nothing"
    return f"a {'trainable ' if tensor.requires_grad else ''}{str(tensor.dtype).removeprefix('torch.')} tensor"


@torch.no_grad()
def output_differences(
    names: list[str], device="cpu", checkpoint=None, n_inputs: int = 1024, seed: int = 0
) -> dict[str, tuple[float, float, float] | NotWritten]:
    """
    {name: (max, mean) absolute difference from the first model's output, and the max one between the
    model and the model as graded; or its NotWritten, for a model not written yet}, one model in memory at a time.
    """
    x = random_inputs(n_inputs, seed, device)
    reference = load_model(names[0], checkpoint, device)(x)
    return {name: or_not_written(output_difference, name, reference, x, device, checkpoint) for name in names[1:]}


def output_difference(name: str, reference: torch.Tensor, x: torch.Tensor, device, checkpoint) -> tuple[float, float, float]:
    """Model `name`'s (max, mean) absolute difference from `reference` on `x`, and the max one between it and it as graded."""
    model = load_model(name, checkpoint, device)
    y = model(x)
    diff = (y - reference).abs()
    return diff.max().item(), diff.mean().item(), (as_graded(name, model, device)(x) - y).abs().max().item()


def print_differences(reference: str, differences: dict[str, tuple[float, float, float] | NotWritten]) -> None:
    """A row per model, then a warning for each one that computes otherwise as graded."""
    width = max(len(name) for name in [reference, *differences]) + 2
    print(f"{'vs ' + reference:<{width}}{'max abs diff':>14}{'mean abs diff':>15}")
    for name, figures in differences.items():
        print(f"{name:<{width}}" + (figures.cell if isinstance(figures, NotWritten) else f"{figures[0]:>14.5f}{figures[1]:>15.5f}"))
    for name, figures in differences.items():
        if not isinstance(figures, NotWritten) and figures[2] > 0:
            print(
                f"warning: {name} computes other outputs as graded (max abs diff {figures[2]:.3g}): the grader carries over only"
                " its parameters and buffers, and load() keeps something computed from the weights elsewhere (register it with register_buffer)"
            )


def main(*models: str, device: str | None = None, checkpoint: str | None = None, n_inputs: int = 1024, seed: int = 0):
    names = check_names(models)
    if len(names) < 2:
        raise UsageError("give at least two models: the first is the reference, e.g. bignet half_precision")
    n_inputs, seed = check_int("n_inputs", n_inputs, minimum=1), check_int("seed", seed, minimum=0)
    try:
        differences = output_differences(names, check_device(device), checkpoint, n_inputs, seed)
    except BuildsAnotherModel as e:
        raise UsageError(str(e)) from None
    show_written(differences, partial(print_differences, names[0]))


if __name__ == "__main__":
    run(main)
