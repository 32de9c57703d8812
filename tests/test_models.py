"""homework/models.py: the devices the tools may run on."""

import pytest
import torch


def test_mps_needs_pytorch_2_6(monkeypatch):
    """uint8 shifts on MPS were silently wrong before PyTorch 2.6 (pytorch#144190): the 4-bit codes would unpack wrong."""
    from homework.models import available_devices, pick_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    assert "mps" not in available_devices() and pick_device().type in ("cpu", "cuda")
    with pytest.raises(ValueError, match=r"MPS needs PyTorch 2.6 or newer, this is 2.5.1"):
        pick_device("mps")
    monkeypatch.setattr(torch, "__version__", "2.6.0")
    assert "mps" in available_devices()
