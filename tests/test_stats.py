"""homework/stats.py: the handout's figures, measured, and the command line."""

from homework.models import load_model
from homework.stats import model_stats
from tests.helpers import run_tool


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


def test_stats_shows_every_model_it_can_and_names_the_file_of_the_others(checkpoint_path, monkeypatch, capsys):
    import pytest

    import homework.qlora
    import homework.stats
    from homework.cli import NotAllWritten

    def unwritten(path):
        raise NotImplementedError("a BigNet whose Linear layers are QLoRALinear")

    monkeypatch.setattr(homework.qlora, "load", unwritten)
    with pytest.raises(NotAllWritten, match=r"^not implemented \(qlora.py\): a BigNet whose Linear layers are QLoRALinear$"):
        homework.stats.main("half_precision", "qlora", device="cpu", batch_size=4)
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["half_precision", "qlora"] and len(rows) == 7
    assert rows[3].split() == ["Theoretical", "memory", "36.07", "MB", "not", "implemented", "(qlora.py)"]
