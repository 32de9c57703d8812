"""GaLore and Fira: their state, their full-rank updates, and the published packages' numbers."""

import pytest
import torch

from homework.memory import AllocationTrace
from homework.optim.low_rank import FiraAdamW, GaLoreAdamW, divide_params, project, project_back, projection_side, subspace


def mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 96), torch.nn.ReLU(), torch.nn.Linear(96, 10))


def train(model, optimizer, steps=12, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(32, 64, generator=generator), torch.randint(0, 10, (32,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return [p.detach() for p in model.parameters()]


SETTINGS = dict(rank=8, update_proj_gap=5, alpha=1.0)  # the subspace is recomputed twice in 12 steps


def replay(model, optimizer, steps=12, seed=1):
    """The weights after `steps` steps on a fixed sequence of gradients, whatever the weights do."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
    return [p.detach() for p in model.parameters()]


def published_optimizer(module, package, model):
    published = getattr(pytest.importorskip(module, reason="fira and galore-torch are in benchmarks/requirements.txt"), package)
    groups = divide_params(model, ["0", "2", "4"], **SETTINGS)
    if module == "galore_torch":  # galore-torch names GaLore's alpha "scale"
        groups[1]["scale"] = groups[1].pop("alpha")
    # eps negligible: the packages add it before Adam's bias correction, torch (and we) after.
    return published(groups, lr=1e-2, eps=1e-16, no_deprecation_warning=True)


PACKAGES = [(FiraAdamW, "fira", "FiraAdamW"), (GaLoreAdamW, "galore_torch", "GaLoreAdamW")]


@pytest.mark.parametrize("ours, module, package", PACKAGES)
def test_same_updates_as_the_published_package(ours, module, package):
    # The same gradients in, the same weights out, through two subspace refreshes.
    theirs = replay(model := mlp(), published_optimizer(module, package, model))
    for a, b in zip(replay(model := mlp(), ours(divide_params(model, ["0", "2", "4"], **SETTINGS), lr=1e-2, eps=1e-16)), theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ours, module, package", PACKAGES)
def test_same_training_as_the_published_package_until_the_subspace_changes(ours, module, package):
    # In training, the weights (so the gradients) differ in the last float32 bit. That is harmless
    # until the subspace is recomputed: an SVD's singular vectors have arbitrary signs, which such a
    # difference can flip, and Adam's moments, kept from the old subspace, then meet the gradient
    # with the other sign. GaLore and Fira have that property themselves; so we compare up to it.
    theirs = train(model := mlp(), published_optimizer(module, package, model), steps=SETTINGS["update_proj_gap"])
    for a, b in zip(
        train(
            model := mlp(), ours(divide_params(model, ["0", "2", "4"], **SETTINGS), lr=1e-2, eps=1e-16), steps=SETTINGS["update_proj_gap"]
        ),
        theirs,
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_fira_differs_from_galore_by_the_residual():
    galore, fira = (train(model := mlp(), cls(divide_params(model, **SETTINGS), lr=1e-2)) for cls in (GaLoreAdamW, FiraAdamW))
    assert not torch.allclose(galore[2], fira[2], atol=1e-4)


def test_galore_updates_are_low_rank_and_firas_full_rank():
    # A batch of 32 gives a gradient of rank 32: GaLore's step keeps 8 of it, Fira's all of it.
    for cls, expected_rank in ((GaLoreAdamW, 8), (FiraAdamW, 32)):
        model = mlp()
        before = model[2].weight.detach().clone()
        train(model, cls(divide_params(model, **SETTINGS), lr=1e-2), steps=1)
        assert torch.linalg.matrix_rank(model[2].weight.detach() - before).item() == expected_rank


def test_projection_and_its_inverse():
    grad = torch.randn(96, 64)
    for side in ("right", "left"):
        basis = subspace(grad, 8, side)
        low_rank = project(grad, basis, side)
        assert low_rank.shape == ((96, 8) if side == "right" else (8, 64))
        # The part of grad inside the subspace survives a round trip: projecting it again changes nothing.
        inside = project_back(low_rank, basis, side)
        torch.testing.assert_close(project(inside, basis, side), low_rank, atol=1e-5, rtol=1e-5)
    assert projection_side((96, 64)) == "right" and projection_side((64, 96)) == "left"


def test_the_limiter_holds_the_residuals_growth_to_one_percent():
    weight = torch.nn.Parameter(torch.zeros(32, 32))
    optimizer = FiraAdamW([{"params": [weight], **SETTINGS, "update_proj_gap": 1000}], lr=1.0)
    generator = torch.Generator().manual_seed(0)
    norms = []
    for scale in (1.0, 10.0, 100.0):  # the gradient grows 10x each step
        weight.grad = torch.randn(32, 32, generator=generator) * scale
        optimizer.step()
        norms.append(optimizer.state[weight]["residual_norm"].item())
    assert norms[1] == pytest.approx(1.01 * norms[0]) and norms[2] == pytest.approx(1.01 * norms[1])


def bignet_full_fine_tune(checkpoint_path):
    from homework.bignet import load

    net = load(checkpoint_path)
    net(torch.randn(4, 1024)).mean().backward()
    return net


@pytest.mark.parametrize("cls", [GaLoreAdamW, FiraAdamW])
def test_state_at_rank_128_is_under_19_percent_of_adamws_measured(cls, checkpoint_path):
    net = bignet_full_fine_tune(checkpoint_path)
    optimizer = cls(divide_params(net, rank=128), lr=1e-4)
    assert len(optimizer.param_groups[1]["params"]) == 18  # all of BigNet's Linear weights are projected
    with AllocationTrace() as first_step:
        optimizer.step()  # state is made on the first step
    adamw_bytes = 2 * 4 * sum(p.numel() for p in net.parameters())
    assert first_step.net == pytest.approx(optimizer.theoretical_state_bytes(), rel=0.01)
    assert optimizer.theoretical_state_bytes() / adamw_bytes < 0.19
