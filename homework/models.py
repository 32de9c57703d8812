"""The models the tools load, by name, and the devices they can run on."""

import importlib
from pathlib import Path

import torch

# Each name is a module of this package with a `load(path)` function.
MODEL_NAMES = ("bignet", "half_precision", "lora", "low_precision", "qlora", "lower_precision")


MPS_TORCH = (2, 6)  # before PyTorch 2.6, uint8 shifts on Apple's MPS were silently wrong (pytorch#144190): 4-bit codes unpacked wrong


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available() and torch_version() >= MPS_TORCH:
        devices.append("mps")
    return devices


def torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def pick_device(device: str | None = None) -> torch.device:
    """The named device, checked; with no name, CUDA if present, else MPS, else the CPU."""
    devices = available_devices()
    if device is None:
        device = "cuda" if "cuda" in devices else "mps" if "mps" in devices else "cpu"
    if str(device) not in devices:
        why = (
            f" (MPS needs PyTorch {'.'.join(map(str, MPS_TORCH))} or newer, this is {torch.__version__})"
            if str(device) == "mps" and torch.backends.mps.is_available()
            else ""
        )
        raise ValueError(f"device {device!r} is not available here{why}; choose from: {', '.join(devices)}")
    return torch.device(device)


def load_model(name: str, checkpoint: str | Path | None = None, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The model `name` (one of MODEL_NAMES) loaded with a checkpoint (the default one if None), on `device`."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(MODEL_NAMES)}")
    module = importlib.import_module(f"{__package__}.{name}")
    # str(): fire reads --checkpoint 5 as the number 5, which is still the file named "5".
    return module.load(None if checkpoint is None else str(checkpoint)).to(device)
