"""
The data every tool, test and benchmark feeds BigNet, and the grader too: drawn from a seed with
torch's generator on the CPU, so every machine and device sees the same numbers. Depends on torch
and BigNet's width only: importing it starts no command line and no optimizer.
"""

import torch

from .bignet import BIGNET_DIM

__all__ = ["random_inputs", "noise_classification"]


def random_inputs(n: int = 1024, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """`n` inputs of BigNet's width, standard normal."""
    return torch.randn(n, BIGNET_DIM, generator=torch.Generator().manual_seed(seed)).to(device)


def noise_classification(n_samples: int = 1000, seed: int = 0, device="cpu") -> tuple[torch.Tensor, torch.Tensor, torch.nn.Linear]:
    """
    A task any model that trains at all can overfit: `n_samples` inputs of random noise, labelled 0
    (first half) and 1 (second half), and a frozen random head from BigNet's width to the 2 classes.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, BIGNET_DIM, generator=generator)
    labels = (torch.arange(n_samples) >= n_samples // 2).long()
    head = torch.nn.Linear(BIGNET_DIM, 2)
    with torch.no_grad():
        head.weight.copy_(torch.randn(2, BIGNET_DIM, generator=generator) / BIGNET_DIM**0.5)
        head.bias.zero_()
    return x.to(device), labels.to(device), head.requires_grad_(False).to(device)
