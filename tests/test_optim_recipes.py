"""The cookbook's recipes: EMA, gradient accumulation, parameter groups, and the step inside backward."""

import pytest
import torch

from homework.bignet import LayerNorm
from homework.data import noise_classification
from homework.memory import AllocationTrace
from homework.models import load_model
from homework.optim import recipes
from homework.optim.functional import AdamW
from homework.optim.recipes import EMA, accumulate_gradients, parameter_groups


def loss_on(model, head):
    return lambda x, y: torch.nn.functional.cross_entropy(head(model(x)), y)


def test_ema_averages_and_evaluates_with_the_average():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update()
    expected = start + 1.0  # halfway from the start to the new weights
    torch.testing.assert_close(ema.averages[0], expected)
    x = torch.ones(1, 2)
    with ema.applied():
        torch.testing.assert_close(model.weight.detach(), expected)
        averaged_output = model(x)
    torch.testing.assert_close(model.weight.detach(), start + 2.0)  # its own weights are back
    assert not torch.equal(averaged_output, model(x))


def test_accumulated_gradients_equal_the_full_batchs(checkpoint_path):
    x, labels, head = noise_classification(n_samples=256)
    grads = []
    for micro_batches in (1, 4):
        torch.manual_seed(0)
        model = load_model("lora", checkpoint_path)
        accumulate_gradients(loss_on(model, head), x, labels, micro_batches)
        grads.append([p.grad for p in model.parameters() if p.requires_grad])
    for full, accumulated in zip(*grads):
        torch.testing.assert_close(accumulated, full, rtol=1e-5, atol=1e-7)


def test_accumulation_divides_the_activation_memory(checkpoint_path):
    x, labels, head = noise_classification(n_samples=256)
    torch.manual_seed(0)
    model = load_model("lora", checkpoint_path)
    accumulate_gradients(loss_on(model, head), x, labels, 1)  # the gradients exist from now on: not counted below
    peaks = {}
    for micro_batches in (1, 2, 4):
        with AllocationTrace() as trace:
            accumulate_gradients(loss_on(model, head), x, labels, micro_batches)
        peaks[micro_batches] = trace.peak
    # peak = fixed + activations / micro_batches; the fixed part is one layer's float32 weight (4 MB),
    # made for each matmul from the half-precision base.
    activations = (peaks[1] - peaks[4]) * 4 / 3
    fixed = peaks[1] - activations
    assert peaks[2] == pytest.approx(fixed + activations / 2, rel=0.05)
    assert 3.5 * 2**20 < fixed < 5 * 2**20 and activations > 20 * 2**20


def test_parameter_groups_give_layernorms_their_own_rate_and_leave_the_rest_out(checkpoint_path):
    torch.manual_seed(0)
    model = load_model("lora", checkpoint_path)
    groups = parameter_groups(model, {LayerNorm: {"lr": 1e-2}, "lora_": {"lr": 1e-3}})
    assert [g["lr"] for g in groups] == [1e-2, 1e-3]
    assert len(groups[0]["params"]) == 10 and len(groups[1]["params"]) == 36  # 5 LayerNorms x 2; 18 layers x 2 adapters


def test_lora_only_updates_do_not_rely_on_requires_grad(checkpoint_path):
    model = load_model("bignet", checkpoint_path)  # every weight requires a gradient ...
    adapters = torch.nn.Linear(1024, 1024)  # ... and here is a stand-in adapter beside them
    net = torch.nn.ModuleDict({"base": model, "lora_extra": adapters})
    optimizer = AdamW(parameter_groups(net, {"lora_": {}}), lr=1e-2)
    x = torch.randn(8, 1024)
    (model(x) + adapters(x)).mean().backward()
    before = model.model[0].model[0].weight.detach().clone()
    optimizer.step()
    assert torch.equal(model.model[0].model[0].weight.detach(), before)  # the base has a gradient, yet stays
    assert adapters.weight.grad is not None and len(optimizer.param_groups[0]["params"]) == 2


def train_steps(model, head, x, labels, step_in_backward, steps=3):
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    if step_in_backward:
        recipes.step_in_backward(optimizer)
    for _ in range(steps):
        loss_on(model, head)(x, labels).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def test_stepping_in_backward_is_the_same_training(checkpoint_path):
    x, labels, head = noise_classification(n_samples=32)
    after = [train_steps(load_model("bignet", checkpoint_path), head, x, labels, step_in_backward) for step_in_backward in (False, True)]
    for a, b in zip(*(m.parameters() for m in after)):
        assert torch.equal(a, b)
    assert all(p.grad is None for p in after[1].parameters())  # every gradient was freed as it was used


def test_stepping_in_backward_never_holds_all_the_gradients(checkpoint_path):
    x, labels, head = noise_classification(n_samples=32)
    peaks = {}
    for step_in_backward in (False, True):
        model = load_model("bignet", checkpoint_path)
        train_steps(model, head, x, labels, step_in_backward, steps=1)  # the state exists from now on (and the hooks stay)
        with AllocationTrace() as trace:
            loss_on(model, head)(x, labels).backward()
        peaks[step_in_backward] = trace.peak
    # Without: all 72 MB of gradients at once. With: the gradients of one layer or two, and the step's temporaries.
    assert peaks[False] > 72 * 2**20 and peaks[True] < 0.25 * peaks[False]


def test_stepping_in_backward_needs_a_parameterwise_optimizer():
    with pytest.raises(TypeError, match="one parameter at a time, not AdamW"):
        recipes.step_in_backward(torch.optim.AdamW(torch.nn.Linear(2, 2).parameters()))
