"""homework/compare.py: outputs side by side, and each model as the grader runs it."""

from homework.models import load_model
from tests.helpers import run_tool


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


def test_compare_refuses_a_model_whose_load_builds_other_dtypes_for_other_weights(checkpoint_path, monkeypatch):
    """As the grader does: every load must make the same names, dtypes and trainable flags, whatever the weights."""
    import pytest
    import torch

    import homework.compare

    def switching_model(name, checkpoint=None, device="cpu"):
        model = load_model(name, checkpoint, device)
        if checkpoint == checkpoint_path:  # the weights compared, not the other ones
            first = model.model[0].model[0]
            first.weight = torch.nn.Parameter(first.weight.float(), requires_grad=False)
        return model

    monkeypatch.setattr(homework.compare, "load_model", switching_model)
    with pytest.raises(
        homework.compare.BuildsAnotherModel,
        match="builds model.0.model.0.weight as a float32 tensor from these weights and as a float16 tensor from others",
    ):
        homework.compare.output_differences(["bignet", "half_precision"], checkpoint=checkpoint_path, n_inputs=16)
