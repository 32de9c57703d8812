"""homework/fit.py: the noise task fitted, by every optimizer, and the command line."""

import pytest
import torch

from homework.data import noise_classification
from homework.fit import fit
from homework.models import load_model
from homework.optim import DEFAULT_OPTIMIZER, OPTIMIZERS, NothingToTrain, make_optimizer
from tests.helpers import run_tool


def test_fit_cli(tmp_path, checkpoint_path):
    result = run_tool("homework.fit", "qlora", "--steps", "2", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("step   1  loss ") and "qlora: best accuracy" in result.stdout


@pytest.mark.parametrize("name", ["lora", "qlora"])
def test_lora_variants_fit_the_noise_within_50_steps(name, checkpoint_path):
    torch.manual_seed(0)
    net = load_model(name, checkpoint_path)
    accuracies = []
    best = fit(net, make_optimizer(DEFAULT_OPTIMIZER, net), *noise_classification(seed=0), steps=50, stop_at=0.8, log=accuracies.append)
    assert best >= 0.8
    assert len(accuracies) <= 20  # it gets there in about a dozen steps; 50 is the promise


def test_fit_is_deterministic(checkpoint_path):
    logs = []
    for _ in range(2):
        torch.manual_seed(0)
        log = []
        net = load_model("lora", checkpoint_path)
        fit(net, make_optimizer(DEFAULT_OPTIMIZER, net), *noise_classification(n_samples=200, seed=0), steps=3, log=log.append)
        logs.append(log)
    assert logs[0] == logs[1] and len(logs[0]) == 3


def test_there_is_no_optimizer_for_a_model_with_nothing_to_train(checkpoint_path):
    with pytest.raises(NothingToTrain, match="no trainable parameters: there is nothing to train"):
        make_optimizer(DEFAULT_OPTIMIZER, load_model("half_precision", checkpoint_path).requires_grad_(False))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_fits(optimizer, checkpoint_path):
    torch.manual_seed(0)
    losses = []
    net = load_model("lora", checkpoint_path)
    fit(net, make_optimizer(optimizer, net), *noise_classification(n_samples=200, seed=0), steps=4, log=losses.append)
    first, last = (float(line.split("loss")[1].split()[0]) for line in (losses[0], losses[-1]))
    assert last < first


def test_fit_options_cli(tmp_path, checkpoint_path):
    result = run_tool("homework.fit", "lora", "--steps", "2", "--optimizer", "fira", "--micro-batches", "2", "--ema", "0.9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2].startswith("moving average of the weights: accuracy ")
    result = run_tool("homework.fit", "lora", "--steps", "2", "--optimizer", "adamw8bit", "--step-in-backward", cwd=tmp_path)
    assert result.returncode == 0 and "lora: best accuracy" in result.stdout, result.stderr
