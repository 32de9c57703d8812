"""homework/bignet.py: BigNet's checkpoint made in one place, and load_weights, which fits a checkpoint to any variant or says why not in the student's names."""

from functools import partial

import pytest
import torch

from homework import bignet, checkpoint, lora
from homework.bignet import BigNet, load_weights, make_checkpoint
from homework.checkpoint import CheckpointError

DEFAULT_FINGERPRINT = "cc2647cffeb8b532"  # tests/test_checkpoint.py pins it


def test_a_checkpoint_is_made_for_a_seed_and_a_family(tmp_path):
    path = make_checkpoint(tmp_path / "g.pth", 3, "gaussian")
    assert checkpoint.fingerprint(checkpoint.read(path)) == checkpoint.fingerprint(checkpoint.make_state_dict(BigNet(), 3, "gaussian"))
    with pytest.raises(CheckpointError, match="already exists"):
        make_checkpoint(path)


def test_checkpoint_of_another_network_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 3).state_dict(), path)
    with pytest.raises(
        CheckpointError, match="is not a BigNet checkpoint: it lacks model.0.model.0.weight, .* it has weight, bias, which BigNet does not"
    ):
        bignet.load(path)
    state = checkpoint.make_state_dict(BigNet())
    state["model.0.model.0.weight"] = torch.zeros(1024, 512)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="does not fit BigNet: size mismatch for model.0.model.0.weight"):
        bignet.load(path)


def test_default_checkpoint_is_created_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "DEFAULT_PATH", tmp_path / "checkpoints" / "bignet.pth")
    with pytest.raises(CheckpointError, match="no checkpoint at .*; create it with: python -m homework.checkpoint create$"):
        checkpoint.read()  # reading alone never writes
    net = bignet.load()  # the tools, and any variant's load(), make it
    assert checkpoint.DEFAULT_PATH.exists() and checkpoint.fingerprint(checkpoint.read()) == DEFAULT_FINGERPRINT
    assert checkpoint.fingerprint(net.state_dict()) == DEFAULT_FINGERPRINT


@pytest.mark.parametrize("change", ["drop a base weight", "add an unknown key"])
def test_only_a_whole_bignet_checkpoint_loads(change, checkpoint_path, tmp_path):
    state = torch.load(checkpoint_path, weights_only=True)
    if change == "drop a base weight":
        del state["model.2.model.4.bias"]
    else:
        state["model.0.model.0.lora_c.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "changed.pth")
    with pytest.raises(
        CheckpointError,
        match="it lacks model.2.model.4.bias" if "drop" in change else "it has model.0.model.0.lora_c.weight, which BigNet does not",
    ):
        lora.load(tmp_path / "changed.pth")


class RawAdapters(torch.nn.Module):
    """Adapters as a student may write them: raw parameters under any names, and a buffer."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = torch.nn.Parameter(torch.zeros(out_features))
        self.down = torch.nn.Parameter(torch.full((4, in_features), 0.5))
        self.register_buffer("scale", torch.tensor(2.0))


@pytest.mark.parametrize(
    "make_linear", [RawAdapters, partial(lora.LoRALinear, lora_dim=4)], ids=["raw parameters and a buffer", "torch.nn.Linear adapters"]
)
def test_what_a_checkpoint_cannot_have_keeps_its_initial_value(make_linear, checkpoint_path):
    net = BigNet(make_linear=make_linear)
    before = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    load_weights(net, checkpoint_path)
    state = torch.load(checkpoint_path, weights_only=True)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, state[name].to(tensor.dtype) if name in state else before[name]), name
    assert len(before) > len(state)


def test_a_renamed_weight_is_named_in_the_students_words(checkpoint_path):
    class Renamed(torch.nn.Module):
        def __init__(self, in_features: int, out_features: int):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(out_features, in_features))
            self.bias = torch.nn.Parameter(torch.zeros(out_features))

    with pytest.raises(
        CheckpointError,
        match=r"the checkpoint's model.0.model.0.weight, .* \(18 in all\) have no place in BigNet, whose tensors there are named model.0.model.0.w, model.0.model.0.bias",
    ):
        load_weights(BigNet(make_linear=Renamed), checkpoint_path)
