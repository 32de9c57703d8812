"""Chains of transforms against torch.optim and torchzero, on the same steps."""

import pytest
import torch

from homework.optim import chain
from homework.optim.chain import Chain, cautious, clip_norm, lr, momentum, scale_by_adam, weight_decay
from tests.helpers import bignet_sized_layer
from tests.helpers import run_optimizer as run

# A chain rounds differently from torch's fused in-place arithmetic (it forms the update, then
# scales it): after 50 steps the weights agree to within a few float32 ulps of their size.
TOLERANCE = dict(rtol=1e-5, atol=1e-6)


def assert_close(ours, theirs, **tolerance):
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **(tolerance or TOLERANCE))


def chain_of(*transforms):
    return lambda params: Chain(params, *transforms)


def test_adam_weight_decay_lr_is_torchs_adamw():
    assert_close(run(chain_of(scale_by_adam(), weight_decay(0.1), lr(1e-3))), run(torch.optim.AdamW, lr=1e-3, weight_decay=0.1))


def test_fully_decoupled_weight_decay_is_adamw_at_a_constant_rate():
    # chain(adam, lr, weight_decay): the decay is not scaled by lr, so torch's AdamW(lr, wd) is wd' = lr * wd.
    assert_close(run(chain_of(scale_by_adam(), lr(1e-3), weight_decay(1e-4))), run(torch.optim.AdamW, lr=1e-3, weight_decay=0.1))


@pytest.mark.parametrize("nesterov", [False, True])
def test_weight_decay_momentum_lr_is_torchs_sgd(nesterov):
    ours = run(chain_of(weight_decay(0.01), momentum(0.9, nesterov), lr(0.01)))
    assert_close(ours, run(torch.optim.SGD, lr=0.01, momentum=0.9, nesterov=nesterov, weight_decay=0.01))


def test_a_wrong_chain_is_caught():
    with pytest.raises(AssertionError):
        assert_close(run(chain_of(scale_by_adam(), lr(1e-3), weight_decay(0.1))), run(torch.optim.AdamW, lr=1e-3, weight_decay=0.1))


def test_cautious_never_moves_against_the_gradient():
    param = torch.nn.Parameter(torch.zeros(6))
    optimizer = Chain([param], momentum(0.9), cautious(), lr(1.0))
    param.grad = torch.full((6,), 10.0)
    optimizer.step()  # the momentum now points firmly along +1 everywhere: 0.9 * 10 outweighs a gradient of -1
    param.grad = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    before = param.detach().clone()
    optimizer.step()
    moved = before - param.detach()
    assert torch.equal(moved[1::2], torch.zeros(3)) and (moved[0::2] > 0).all()


def test_cautious_adam_equals_torchzeros():
    tz = pytest.importorskip("torchzero", reason="torchzero is in benchmarks/requirements.txt")
    # torchzero's Adam adds eps before its bias correction, torch's (and ours) after: with an eps
    # too small to matter, both are Adam, and the comparison is Cautious against Cautious.
    ours = run(chain_of(scale_by_adam(eps=1e-12), cautious(), lr(1e-3)))
    theirs = run(lambda params, **s: tz.Optimizer(params, tz.m.Adam(eps=1e-12), tz.m.Cautious(), tz.m.LR(1e-3)))
    assert_close(ours, theirs)
    plain = run(chain_of(scale_by_adam(eps=1e-12), lr(1e-3)))
    assert not all(torch.allclose(a, b, **TOLERANCE) for a, b in zip(plain, theirs))  # the mask mattered


def test_clip_norm_bounds_each_update():
    param = torch.nn.Parameter(torch.zeros(100))
    optimizer = Chain([param], clip_norm(0.5), lr(1.0))
    param.grad = torch.ones(100)
    optimizer.step()
    assert torch.linalg.vector_norm(param.detach()).item() == pytest.approx(0.5)


def test_groups_override_settings_and_schedules_scale_the_rate():
    fast, slow = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    optimizer = Chain(
        [{"params": [fast], "lr": 1.0}, {"params": [slow]}], lr(0.1, schedule=chain.warmup_cosine(total_steps=10, warmup_steps=2))
    )
    for p in (fast, slow):
        p.grad = torch.ones(3)
    optimizer.step()  # warm-up step 1 of 2: half the rate
    assert fast.detach().tolist() == [-0.5] * 3 and slow.detach().tolist() == pytest.approx([-0.05] * 3)


def test_torch_schedulers_drive_the_chains_rate():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = Chain([param], lr(1.0))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(3):
        param.grad = torch.ones(1)
        optimizer.step()
        scheduler.step()
    assert param.item() == pytest.approx(-(1 + 0.5 + 0.25))


def test_conflicting_settings_are_refused():
    with pytest.raises(ValueError, match="two transforms in the chain set 'lr' differently"):
        Chain(bignet_sized_layer(), lr(1e-3), lr(1e-2))


def test_chain_state_dict_round_trips():
    params = bignet_sized_layer()
    optimizer = Chain(params, scale_by_adam(), lr(1e-3))
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    copy = Chain(bignet_sized_layer(), scale_by_adam(), lr(1e-3))
    copy.load_state_dict(optimizer.state_dict())
    assert copy.state[copy.param_groups[0]["params"][0]]["links"][0]["step"] == 1
    assert optimizer.theoretical_state_bytes() == 2 * 4 * (1024 * 1024 + 1024)


def test_the_chain_takes_a_torchzero_closure():
    param = torch.nn.Parameter(torch.tensor([3.0]))
    optimizer = Chain([param], scale_by_adam(), lr(0.1))
    calls = []

    def closure(backward=True):
        calls.append(backward)
        loss = (param**2).sum()
        if backward:
            optimizer.zero_grad()
            loss.backward()
        return loss

    assert optimizer.step(closure).item() == 9.0 and calls == [True]
    assert param.item() == pytest.approx(2.9)  # Adam's first step: lr times the gradient's sign
