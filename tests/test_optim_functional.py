"""The functional optimizers against torch.optim: BigNet-sized tensors, 50 steps, every option combination."""

import itertools

import pytest
import torch

from homework.optim import functional
from tests.helpers import bignet_sized_layer
from tests.helpers import run_optimizer as run


def assert_same(ours, theirs):
    # The arithmetic is torch's, operation for operation: the results are equal bit for bit.
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b), f"max abs difference {(a - b).abs().max().item():.3g}"


SGD_OPTIONS = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd)
    for m, d, n, wd in itertools.product([0.0, 0.9], [0.0, 0.1], [False, True], [0.0, 0.01])
    if not (n and (m == 0 or d != 0))  # Nesterov needs momentum and no dampening, in torch as here
]


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=str)
def test_sgd_equals_torch(options):
    assert_same(run(functional.SGD, lr=0.01, **options), run(torch.optim.SGD, lr=0.01, **options))


ADAM_OPTIONS = [
    dict(weight_decay=wd, amsgrad=a, betas=b) for wd, a, b in itertools.product([0.0, 0.1], [False, True], [(0.9, 0.999), (0.8, 0.9)])
]


@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=str)
@pytest.mark.parametrize(
    "ours, theirs", [(functional.Adam, torch.optim.Adam), (functional.AdamW, torch.optim.AdamW)], ids=["adam", "adamw"]
)
def test_adam_equals_torch(ours, theirs, options):
    assert_same(run(ours, lr=1e-3, **options), run(theirs, lr=1e-3, **options))


def test_adamw_default_weight_decay_is_torchs():
    assert_same(run(functional.AdamW, steps=5), run(torch.optim.AdamW, steps=5))


def test_a_wrong_step_would_be_caught():
    # The comparison above is sharp: a weight decay 1% off after 50 steps is not "the same".
    ours = run(functional.AdamW, lr=1e-3, weight_decay=0.1)
    theirs = run(torch.optim.AdamW, lr=1e-3, weight_decay=0.101)
    assert not all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_step_functions_are_pure():
    """Equal arguments, equal results: everything a step reads is in its arguments."""
    results = []
    for _ in range(2):
        param, grad = torch.ones(8), torch.linspace(-1, 1, 8)
        state = functional.adam_init(param)
        for _ in range(3):
            functional.adam_step(param, grad, state, functional.AdamSettings(lr=0.1, weight_decay=0.1, decoupled=True))
        results.append((param, state["exp_avg"], state["step"]))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1]) and results[0][2] == 3


def test_state_dict_round_trips():
    params = bignet_sized_layer()
    optimizer = functional.AdamW(params, lr=1e-3)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    restored = functional.AdamW(bignet_sized_layer(), lr=1e-3)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.state_dict()["state"][0]["step"] == 1
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_theoretical_state_is_two_moments():
    optimizer = functional.AdamW(bignet_sized_layer())
    assert optimizer.theoretical_state_bytes() == 2 * 4 * (1024 * 1024 + 1024)
    assert functional.SGD(bignet_sized_layer(), momentum=0.9).theoretical_state_bytes() == 4 * (1024 * 1024 + 1024)
