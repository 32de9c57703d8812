"""homework/optim/__init__.py: every optimizer the tools name, built over the trainable parameters, and its state's size."""

import pytest
import torch

from homework.optim import OPTIMIZERS, NothingToTrain, make_optimizer, theoretical_state_bytes


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_named_optimizer_holds_the_trainable_parameters_only(name):
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 2))
    model[1].requires_grad_(False)
    optimizer = make_optimizer(name, model)
    held = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(held) == 2 and all(any(p is q for q in model[0].parameters()) for p in held)


def test_what_cannot_be_made_says_why():
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'; choose from: torch_adamw, "):
        make_optimizer("adagrad", torch.nn.Linear(2, 2))
    with pytest.raises(NothingToTrain, match="Linear has no trainable parameters"):
        make_optimizer("adamw", torch.nn.Linear(2, 2).requires_grad_(False))


def test_the_state_of_ours_from_its_definition_of_torchs_from_its_tensors():
    layer = torch.nn.Linear(64, 64)
    ours, theirs = make_optimizer("adamw", layer), make_optimizer("torch_adamw", layer)
    assert theoretical_state_bytes(ours) == 2 * (64 * 64 + 64) * 4  # two moments, before any step
    layer(torch.randn(2, 64)).sum().backward()
    theirs.step()
    assert theoretical_state_bytes(theirs) == 2 * (64 * 64 + 64) * 4 + 2 * 4  # and a float32 step count per parameter
