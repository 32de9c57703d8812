"""The training-memory view: measured figures against theoretical ones, and what each optimizer saves."""

import pytest

from homework.train_stats import training_stats
from tests.helpers import run_tool


@pytest.fixture(scope="module")
def bignet_adamw(checkpoint_path):
    return training_stats("bignet", "torch_adamw", checkpoint=checkpoint_path)


def test_full_fine_tuning_with_adamw_holds_weights_gradients_and_two_moments(bignet_adamw):
    weights, gradients, state = (bignet_adamw[row][0] for row in ("Weights", "Gradients", "Optimizer state"))
    assert weights == gradients == 18_903_040 * 4 and state == 2 * weights + 46 * 4  # and torch's 46 step counters
    for row in ("Weights", "Gradients", "Optimizer state"):
        assert bignet_adamw[row][0] == bignet_adamw[row][1]
    measured, theoretical = bignet_adamw["Activations"]
    assert measured == pytest.approx(theoretical, rel=0.01)


def test_fira_state_is_under_19_percent_of_adamws(bignet_adamw, checkpoint_path):
    fira = training_stats("bignet", "fira", checkpoint=checkpoint_path)
    measured, theoretical = fira["Optimizer state"]
    assert measured == pytest.approx(theoretical, rel=0.01) and measured / bignet_adamw["Optimizer state"][0] < 0.19


@pytest.mark.parametrize("optimizer", ["fira", "adamw8bit"])
def test_full_rank_fine_tuning_in_under_half_of_adamws_peak(optimizer, bignet_adamw, checkpoint_path):
    stats = training_stats("bignet", optimizer, checkpoint=checkpoint_path, step_in_backward=True)
    assert stats["Gradients"] == (0, 0)
    assert stats["Peak"][0] < 0.5 * bignet_adamw["Peak"][0]


def test_train_stats_cli(tmp_path, checkpoint_path):
    result = run_tool(
        "homework.train_stats", "lora", "qlora", "--optimizer", "adamw8bit", "--device", "cpu", "--batch-size", "8", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "one training step with adamw8bit, batch of 8" and lines[1].split() == ["lora", "qlora"]
    assert lines[2].split()[:4] == ["Weights", "40.57", "/", "40.57"] and lines[-1] == "(measured / theoretical)"
    state, adamw_state = float(lines[4].split()[2]), 2 * float(lines[3].split()[1])  # AdamW: two moments per gradient
    assert 0.25 < state / adamw_state < 0.26  # 8 bits and a float32 scale per 256 values, for each moment


def test_an_optimizer_that_evaluates_several_times_a_step(checkpoint_path):
    stats = training_stats("lora", "lbfgs", checkpoint=checkpoint_path)
    measured, theoretical = stats["Optimizer state"]
    adapters = stats["Gradients"][0]
    # Up to 10 remembered steps and gradient changes, the last gradient and the last move: each a copy of the trainable values.
    assert measured == theoretical and 19 * adapters < measured < 23 * adapters


def test_train_stats_shows_every_model_it_can_and_names_the_file_of_the_others(checkpoint_path, monkeypatch, capsys):
    import homework.lora
    import homework.train_stats
    from homework.cli import NotAllWritten

    monkeypatch.setattr(homework.lora, "load", lambda path: None)
    with pytest.raises(NotAllWritten, match=r"^load\(\) returned None \(lora.py\): not implemented$"):
        homework.train_stats.main("half_precision", "lora", device="cpu", batch_size=4)
    _, header, weights, *_ = capsys.readouterr().out.splitlines()
    assert header.split() == ["half_precision", "lora"]
    assert weights.split() == ["Weights", "36.07", "/", "36.07", "MB", "not", "implemented", "(lora.py)"]
