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


def test_compare_gives_load_the_default_checkpoints_path_not_none(checkpoint_path, monkeypatch, capsys):
    """The course's style of load() loads no weights when given None: without --checkpoint it must still get BigNet's."""
    import torch

    import homework.compare
    import homework.half_precision

    def course_style_load(path):
        net = homework.half_precision.HalfBigNet()
        if path is not None:
            net.load_state_dict(torch.load(path))
        return net

    monkeypatch.setattr(homework.half_precision, "load", course_style_load)
    homework.compare.main("bignet", "half_precision", device="cpu", n_inputs=16)
    half = capsys.readouterr().out.splitlines()[1].split()
    assert half[0] == "half_precision" and float(half[1]) < 0.002


def test_compare_shows_a_row_per_model_and_says_which_are_not_written(checkpoint_path, monkeypatch, capsys):
    """A load() that returns None is the course's stub: its row says so, and the other models are still compared."""
    import pytest

    import homework.compare
    import homework.lora
    from homework.cli import NotAllWritten

    monkeypatch.setattr(homework.lora, "load", lambda path: None)
    with pytest.raises(NotAllWritten, match=r"^load\(\) returned None \(lora.py\): not implemented$"):
        homework.compare.main("bignet", "half_precision", "lora", "low_precision", device="cpu", n_inputs=16)
    header, half, lora, low = capsys.readouterr().out.splitlines()
    assert float(half.split()[1]) < 0.002 and 0.01 < float(low.split()[2]) < 0.03
    assert lora.split() == ["lora", "not", "implemented", "(lora.py)"]
