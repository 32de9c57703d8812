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
# The LoRA adapters' parameters: no BigNet checkpoint has them, so they keep their initial values.
ADAPTER_KEYS = ("lora_a.weight", "lora_b.weight")


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


def default_checkpoint() -> Path:
    """The default checkpoint's path, generating it (seed 0) the first time anything needs it."""
    if not checkpoint.DEFAULT_PATH.exists():
        print(f"Creating the BigNet checkpoint {checkpoint.DEFAULT_PATH} (first use; seed 0) ...", file=sys.stderr)
        checkpoint.save(checkpoint.make_state_dict(BigNet()), checkpoint.DEFAULT_PATH, force=True)  # force: another process may have just made it
    return checkpoint.DEFAULT_PATH


def load_weights(net: torch.nn.Module, path: str | Path | None = None, new_keys: tuple[str, ...] = ()) -> torch.nn.Module:
    """
    Load a checkpoint (the default one if no path is given) into `net`, strictly: every key must be
    used and every parameter filled, except parameters whose names end in one of `new_keys` (layers
    the checkpoint cannot have, such as ADAPTER_KEYS), which keep their initial values.
    """
    state = checkpoint.read(default_checkpoint() if path is None else path)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a shape mismatch, e.g. a checkpoint of another network
        raise checkpoint.CheckpointError(f"the checkpoint does not fit {type(net).__name__}: {_first_error(e)}") from None
    missing = [k for k in result.missing_keys if not k.endswith(new_keys)]
    if missing or result.unexpected_keys:
        problems = [f"missing {', '.join(missing[:3])}"] if missing else []
        problems += [f"unexpected {', '.join(result.unexpected_keys[:3])}"] if result.unexpected_keys else []
        raise checkpoint.CheckpointError(f"the checkpoint does not fit {type(net).__name__}: {'; '.join(problems)}")
    return net


def _first_error(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else lines[0]


def load(path: str | Path | None = None) -> BigNet:
    """The float32 BigNet with the checkpoint's weights (the default checkpoint if no path is given)."""
    return load_weights(BigNet(), path)
