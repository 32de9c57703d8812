"""
How far each model's outputs are from the first one's, on the same fixed random inputs:

    python -m homework.compare bignet half_precision low_precision
"""

import torch

from .bignet import BIGNET_DIM
from .cli import UsageError, check_int, run
from .models import check_names, load_model, pick_device


def random_inputs(n: int = 1024, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    # Drawn on the CPU so that every device sees the same numbers.
    return torch.randn(n, BIGNET_DIM, generator=torch.Generator().manual_seed(seed)).to(device)


@torch.no_grad()
def output_differences(names: list[str], device="cpu", checkpoint=None, n_inputs: int = 1024, seed: int = 0) -> dict[str, tuple[float, float]]:
    """{name: (max, mean) absolute difference from the first model's output}, one model in memory at a time."""
    x = random_inputs(n_inputs, seed, device)
    reference = load_model(names[0], checkpoint, device)(x)
    differences = {}
    for name in names[1:]:
        diff = (load_model(name, checkpoint, device)(x) - reference).abs()
        differences[name] = (diff.max().item(), diff.mean().item())
    return differences


def main(*models: str, device: str | None = None, checkpoint: str | None = None, n_inputs: int = 1024, seed: int = 0):
    names = check_names(models)
    if len(names) < 2:
        raise UsageError("give at least two models: the first is the reference, e.g. bignet half_precision")
    n_inputs, seed = check_int("n_inputs", n_inputs, minimum=1), check_int("seed", seed, minimum=0)
    differences = output_differences(names, pick_device(device), checkpoint, n_inputs, seed)
    width = max(len(name) for name in names) + 2
    print(f"{'vs ' + names[0]:<{width}}{'max abs diff':>14}{'mean abs diff':>15}")
    for name, (max_diff, mean_diff) in differences.items():
        print(f"{name:<{width}}{max_diff:>14.5f}{mean_diff:>15.5f}")


if __name__ == "__main__":
    run(main)
