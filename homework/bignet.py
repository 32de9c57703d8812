"""
BigNet: the 73 MB network every variant in this homework starts from.

Six residual blocks of three 1024x1024 Linear layers, with a LayerNorm between consecutive blocks:
18,903,040 float32 parameters, 72.11 MB. The variants keep this exact layout and these attribute
names, so each of them can load the same checkpoint.
"""

import sys
from pathlib import Path
from typing import Callable

import torch

from . import checkpoint

BIGNET_DIM = 1024


class LayerNorm(torch.nn.Module):
    """Normalizes each sample over its channels, then scales and shifts each channel."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(num_channels))
        self.bias = torch.nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class BigNet(torch.nn.Module):
    """
    `make_linear(in_features, out_features)` builds every Linear layer. The memory-saving variants
    pass their own layer here and change nothing else, so the checkpoint's names still match.
    """

    class Block(torch.nn.Module):
        def __init__(self, channels: int, make_linear: Callable[[int, int], torch.nn.Module]):
            super().__init__()
            self.model = torch.nn.Sequential(
                make_linear(channels, channels),
                torch.nn.ReLU(),
                make_linear(channels, channels),
                torch.nn.ReLU(),
                make_linear(channels, channels),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x) + x

    def __init__(self, make_linear: Callable[[int, int], torch.nn.Module] = torch.nn.Linear):
        super().__init__()
        layers = []
        for i in range(6):
            if i > 0:
                layers.append(LayerNorm(BIGNET_DIM))
            layers.append(self.Block(BIGNET_DIM, make_linear))
        self.model = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def make_checkpoint(path: str | Path, seed: int = 0, family: str = "default", draws=None, force: bool = False) -> Path:
    """
    Write BigNet's checkpoint for a seed and weight family (or from `draws`, as checkpoint.SeededDraws):
    the one way every checkpoint here is made, by the tools, the grader and the benchmarks alike.
    """
    return checkpoint.save(checkpoint.make_state_dict(BigNet(), seed, family, draws), path, force)


def default_checkpoint() -> Path:
    """The default checkpoint's path, generating it (seed 0) the first time anything needs it."""
    if not checkpoint.DEFAULT_PATH.exists():
        print(f"Creating the BigNet checkpoint {checkpoint.DEFAULT_PATH} (first use; seed 0) ...", file=sys.stderr)
        make_checkpoint(checkpoint.DEFAULT_PATH, force=True)  # force: another process may have just made it
    return checkpoint.DEFAULT_PATH


def load_weights(net: torch.nn.Module, path: str | Path | None = None) -> torch.nn.Module:
    """
    Load a BigNet checkpoint (the default one if no path is given) into `net`. Every tensor of the
    checkpoint must find its place, with its shape; parameters and buffers the checkpoint does not
    have (adapters, by any name) keep their initial values.
    """
    path = default_checkpoint() if path is None else path
    state = checkpoint.read(path)
    with torch.device("meta"):  # BigNet's names, without allocating its weights
        expected = BigNet().state_dict().keys()
    if state.keys() != expected:
        lacks, extra = [k for k in expected if k not in state], [k for k in state if k not in expected]
        problems = [f"it lacks {_some(lacks)}"] if lacks else []
        problems += [f"it has {_some(extra)}, which BigNet does not"] if extra else []
        raise checkpoint.CheckpointError(f"{path} is not a BigNet checkpoint: {'; '.join(problems)}")
    name = type(net).__name__
    try:
        unexpected = net.load_state_dict(state, strict=False).unexpected_keys
    except RuntimeError as e:  # a shape that does not fit
        raise checkpoint.CheckpointError(f"the checkpoint does not fit {name}: {_first_mismatch(e)}") from None
    if unexpected:
        # In the student's own names: what the model has where the checkpoint's tensors should go.
        layer = unexpected[0].rpartition(".")[0]
        near = [k for k in net.state_dict() if k.rpartition(".")[0] == layer]
        raise checkpoint.CheckpointError(
            f"the checkpoint's {_some(unexpected)} have no place in {name}, whose tensors there are named "
            f"{', '.join(near[:4]) or 'nothing'}: keep torch.nn.Linear's names (weight, bias), or take them in a load_state_dict pre-hook"
        )
    return net


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" ({len(keys)} in all)" if len(keys) > 3 else "")


def _first_mismatch(e: RuntimeError) -> str:
    """The first 'size mismatch for NAME: ...' line of load_state_dict's error, which names both shapes."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("size mismatch")), lines[-1])


def load(path: str | Path | None = None) -> BigNet:
    """The float32 BigNet with the checkpoint's weights (the default checkpoint if no path is given)."""
    return load_weights(BigNet(), path)
