"""The command-line tools, run as a student runs them, and the functions behind them."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from homework.fit import fit, noise_classification
from homework.models import load_model
from homework.optim import OPTIMIZERS
from homework.stats import model_stats

REPO = Path(__file__).resolve().parent.parent


def run_tool(*args, cwd=None):
    """Run `python -m homework.<tool> ...` from another folder: no tool may depend on where it is started."""
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})


def test_stats_match_the_handout(checkpoint_path):
    columns = {name: model_stats(name, "cpu", checkpoint_path, batch_size=16) for name in ("bignet", "half_precision", "low_precision")}
    assert [columns[n]["Theoretical memory"] for n in columns] == ["72.11 MB", "36.07 MB", "11.36 MB"]
    assert [columns[n]["Actual memory"] for n in columns] == ["72.11 MB", "36.07 MB", "11.36 MB"]
    assert [columns[n]["Total params"] for n in columns] == ["18.90 M", "18.90 M", "10.65 M"]
    assert [columns[n]["Trainable params"] for n in columns] == ["18.90 M", "0.01 M", "0.03 M"]
    # A backward pass leaves a gradient for each trainable parameter: 72.11 MB of them for BigNet.
    assert 72.11 < float(columns["bignet"]["Backward memory"].split()[0]) < 80


def test_stats_cli(tmp_path, checkpoint_path):
    result = run_tool("homework.stats", "bignet", "lower_precision", "--device", "cpu", "--batch-size", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["bignet", "lower_precision"] and len(lines) == 8
    assert lines[4].split() == ["Theoretical", "memory", "72.11", "MB", "8.99", "MB"]
    assert lines[5].split() == ["Actual", "memory", "72.11", "MB", "8.99", "MB"]


def test_stats_says_when_there_is_nothing_to_train(checkpoint_path, monkeypatch):
    import homework.stats

    def frozen_model(*args):
        return load_model(*args).requires_grad_(False)

    monkeypatch.setattr(homework.stats, "load_model", frozen_model)
    assert model_stats("half_precision", "cpu", checkpoint_path, batch_size=4)["Backward memory"] == "nothing to train"


def test_on_mps_stats_measure_memory_on_the_cpu_and_say_so(checkpoint_path, monkeypatch, capsys):
    """Apple's MPS allocator reports nothing to the profiler: its figures would be wrong (simulated: MPS is not here)."""
    import homework.models
    import homework.stats

    monkeypatch.setattr(homework.models, "available_devices", lambda: ["cpu", "mps"])
    homework.stats.main("half_precision", device="mps", checkpoint=checkpoint_path, batch_size=4)
    note, *table = capsys.readouterr().out.splitlines()
    assert note == "memory measured on the CPU: the mps allocator does not report its allocations to PyTorch's profiler"
    assert table[5].split() == ["Actual", "memory", "36.07", "MB"]


def test_mps_needs_pytorch_2_6(monkeypatch):
    """uint8 shifts on MPS were silently wrong before PyTorch 2.6 (pytorch#144190): the 4-bit codes would unpack wrong."""
    from homework.cli import UsageError
    from homework.models import available_devices, pick_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    assert "mps" not in available_devices() and pick_device().type in ("cpu", "cuda")
    with pytest.raises(UsageError, match=r"MPS needs PyTorch 2.6 or newer, this is 2.5.1"):
        pick_device("mps")
    monkeypatch.setattr(torch, "__version__", "2.6.0")
    assert "mps" in available_devices()


def test_compare_cli(tmp_path, checkpoint_path):
    result = run_tool("homework.compare", "bignet", "half_precision", "low_precision", "--device", "cpu", "--n-inputs", "256", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, half, low = result.stdout.splitlines()
    assert header.split() == ["vs", "bignet", "max", "abs", "diff", "mean", "abs", "diff"]
    assert half.split()[0] == "half_precision" and float(half.split()[1]) < 0.002
    assert low.split()[0] == "low_precision" and 0.01 < float(low.split()[2]) < 0.03


def test_compare_runs_each_model_as_the_grader_does_and_says_when_it_computes_otherwise(checkpoint_path, monkeypatch):
    """A model whose load() keeps a scale computed from the weights in a plain attribute: the grader would not see it."""
    import homework.compare

    def scaled_model(name, checkpoint=None, device="cpu"):
        model = load_model(name, checkpoint, device)
        if name == "half_precision":
            first = model.model[0].model[0]
            model.scale = first.weight.float().sum().item()  # a Python number: never carried over
            forward = model.forward
            model.forward = lambda x: forward(x) * model.scale / first.weight.float().sum().item()
        return model

    monkeypatch.setattr(homework.compare, "load_model", scaled_model)
    differences = homework.compare.output_differences(["bignet", "half_precision", "low_precision"], n_inputs=16)
    assert differences["half_precision"][2] > 0.01 and differences["low_precision"][2] == 0.0


@pytest.mark.parametrize(
    "args, error, code",
    [
        (["homework.stats", "bignet", "fancy_net"], "error: unknown model 'fancy_net'; choose from: bignet, half_precision, lora, low_precision, qlora, lower_precision", 2),
        (["homework.compare", "bignet", "lora", "--device", "tpu"], "error: device 'tpu' is not available here; choose from: cpu", 2),
        (["homework.compare", "bignet"], "error: give at least two models: the first is the reference, e.g. bignet half_precision", 2),
        (["homework.fit", "lora", "--checkpoint", "missing.pth"], "error: no checkpoint at ", 1),
        (["homework.fit", "lora", "--checkpoint", "5"], "error: no checkpoint at ", 1),  # fire reads 5 as a number
        # Every numeric option: its name, and what would be valid.
        (["homework.stats", "bignet", "--batch-size", "0"], "error: --batch-size must be a whole number >= 1, not 0", 2),
        (["homework.stats", "bignet", "--batch-size", "abc"], "error: --batch-size must be a whole number >= 1, not 'abc'", 2),
        (["homework.compare", "bignet", "half_precision", "--n-inputs", "abc"], "error: --n-inputs must be a whole number >= 1, not 'abc'", 2),
        (["homework.compare", "bignet", "half_precision", "--seed", "-1"], "error: --seed must be a whole number >= 0, not -1", 2),
        (["homework.fit", "lora", "--steps", "-3"], "error: --steps must be a whole number >= 1, not -3", 2),
        (["homework.fit", "lora", "--steps", "2.5"], "error: --steps must be a whole number >= 1, not 2.5", 2),
        (["homework.fit", "lora", "--lr", "abc"], "error: --lr must be a number > 0, not 'abc'", 2),
        (["homework.fit", "lora", "--lr", "-0.1"], "error: --lr must be a number > 0, not -0.1", 2),
        (["homework.fit", "lora", "--seed", "True"], "error: --seed must be a whole number >= 0, not True", 2),
        (["homework.checkpoint", "create", "x.pth", "--seed", "abc"], "error: --seed must be a whole number >= 0, not 'abc'", 2),
        (["homework.checkpoint", "create", "x.pth", "--family", "odd"], "error: unknown weight family 'odd'; choose from: default, gaussian, heavy_tailed", 1),
        (["homework.fit", "lora", "--optimizer", "adagrad"], "error: unknown optimizer 'adagrad'; choose from: torch_adamw, adamw, adam, sgd, cautious_adamw, galore, fira, adamw8bit, lbfgs", 2),
        (["homework.fit", "lora", "--ema", "1.5"], "error: --ema must be a number between 0 and 1, not 1.5", 2),
        (["homework.fit", "lora", "--micro-batches", "0"], "error: --micro-batches must be a whole number >= 1, not 0", 2),
        (["homework.fit", "lora", "--step-in-backward", "--micro-batches", "2"], "error: stepping in backward updates after every backward pass: it cannot accumulate micro-batches", 2),
        (["homework.train_stats", "lora", "--optimizer", "adagrad"], "error: unknown optimizer 'adagrad'; choose from: ", 2),
        (["homework.checkpoint", "make"], "error: unknown command 'make'; choose from: create, fingerprint", 2),
    ],
)
def test_tools_report_mistakes_in_one_line(args, error, code, tmp_path):
    result = run_tool(*args, cwd=tmp_path)
    assert result.returncode == code and result.stdout == ""
    assert result.stderr.startswith(error) and result.stderr.count("\n") == 1, result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_fit_cli(tmp_path, checkpoint_path):
    result = run_tool("homework.fit", "qlora", "--steps", "2", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("step   1  loss ") and "qlora: best accuracy" in result.stdout


@pytest.mark.parametrize("name", ["lora", "qlora"])
def test_lora_variants_fit_the_noise_within_50_steps(name, checkpoint_path):
    torch.manual_seed(0)
    net = load_model(name, checkpoint_path)
    accuracies = []
    best = fit(net, *noise_classification(seed=0), steps=50, stop_at=0.8, log=accuracies.append)
    assert best >= 0.8
    assert len(accuracies) <= 20  # it gets there in about a dozen steps; 50 is the promise


def test_fit_is_deterministic(checkpoint_path):
    logs = []
    for _ in range(2):
        torch.manual_seed(0)
        log = []
        fit(load_model("lora", checkpoint_path), *noise_classification(n_samples=200, seed=0), steps=3, log=log.append)
        logs.append(log)
    assert logs[0] == logs[1] and len(logs[0]) == 3


def test_fit_refuses_a_model_with_nothing_to_train(checkpoint_path):
    from homework.cli import UsageError

    with pytest.raises(UsageError, match="no trainable parameters: there is nothing to train"):
        fit(load_model("half_precision", checkpoint_path).requires_grad_(False), *noise_classification(n_samples=10))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_fits(optimizer, checkpoint_path):
    torch.manual_seed(0)
    losses = []
    fit(load_model("lora", checkpoint_path), *noise_classification(n_samples=200, seed=0), steps=4, optimizer=optimizer, log=losses.append)
    first, last = (float(line.split("loss")[1].split()[0]) for line in (losses[0], losses[-1]))
    assert last < first


def test_fit_options_cli(tmp_path, checkpoint_path):
    result = run_tool("homework.fit", "lora", "--steps", "2", "--optimizer", "fira", "--micro-batches", "2", "--ema", "0.9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2].startswith("moving average of the weights: accuracy ")
    result = run_tool("homework.fit", "lora", "--steps", "2", "--optimizer", "adamw8bit", "--step-in-backward", cwd=tmp_path)
    assert result.returncode == 0 and "lora: best accuracy" in result.stdout, result.stderr
