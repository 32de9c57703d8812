"""grader/reference.py: secret weights and decoys, BigNet's outputs kept, the training task, the thresholds of the public cases, and where a wrong model departs from BigNet."""

import json
import math
import os
from pathlib import Path

import pytest
import torch

from grader import reference, trusted
from grader.grade import grade
from grader.parts import PARTS
from grader.reference import (
    BIGNET_LINEARS,
    SecretDraws,
    checkpoint_path,
    error_scales,
    first_departing_layer,
    output_limits,
    reference_error,
    reference_model,
    training_data,
    write_decoy,
)  # fmt: skip
from grader.report import render
from grader.suite import PUBLIC, PUBLIC_CASE, PUBLIC_SCALES, Checkpoint, Inputs, Suite, load_suite
from tests.helpers import REPO, SECRET

FOUR_BIT = next(part for part in PARTS if part.name == "low_precision")


def test_secret_draws_follow_from_their_key_alone_and_have_the_right_distribution():
    a, b = SecretDraws(b"key"), SecretDraws(b"key")
    assert torch.equal(a.uniform((1000,)), b.uniform((1000,))) and torch.equal(a.normal((3, 4)), b.normal((3, 4)))
    assert not torch.equal(SecretDraws(b"other").uniform((1000,)), SecretDraws(b"key").uniform((1000,)))
    assert not torch.equal(a.uniform((1000,)), SecretDraws(b"key").uniform((1000,)))  # each draw its own stretch of the stream
    uniform, normal = SecretDraws(b"k").uniform((100_000,)), SecretDraws(b"k").normal((100_000,))
    assert 0 < uniform.min() and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.01
    assert abs(normal.mean()) < 0.02 and abs(normal.std() - 1) < 0.02 and torch.isfinite(normal).all()


def test_a_hidden_checkpoint_is_not_torchs_draw_for_its_seed_and_its_file_names_nothing():
    seed = 2**40 + 12345
    secret, public = Checkpoint(seed, "gaussian", secret=True), Checkpoint(seed, "gaussian")
    path = checkpoint_path(secret)
    assert str(seed) not in path.name and "gaussian" not in path.name
    weights, public_weights = (torch.load(checkpoint_path(c), weights_only=True)["model.0.model.0.weight"] for c in (secret, public))
    assert not torch.equal(weights, public_weights)
    assert abs(weights.std().item() - 1 / math.sqrt(3 * 1024)) < 1e-3  # the family's spread, as the public draw's


def test_a_decoy_has_bignets_names_and_shapes_and_new_values_each_time(tmp_path):
    write_decoy(tmp_path / "a.pth")
    write_decoy(tmp_path / "b.pth")
    a, b = (torch.load(tmp_path / name, weights_only=True) for name in ("a.pth", "b.pth"))
    bignet = trusted.bignet().state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in bignet.items()}
    assert not torch.equal(a["model.0.model.0.weight"], b["model.0.model.0.weight"])


def test_the_training_labels_do_not_follow_from_the_inputs_generator():
    x, labels, head = training_data(128, 7)
    assert labels.sum() == 64 and not head.weight.requires_grad
    same_x, other_labels, _ = training_data(128, 8)
    assert not torch.equal(x, same_x)
    # Labels are not by position: the first half of the inputs is not all of one class.
    assert 0 < labels[:64].sum() < 64


@pytest.mark.parametrize("scheme, checkpoint", PUBLIC_SCALES, ids=lambda key: str(getattr(key, "family", key)))
def test_the_public_scales_are_what_the_reference_measures(scheme, checkpoint):
    (max_here, mean_here), (max_public, mean_public) = reference_error(scheme, checkpoint, Inputs()), reference_error(scheme, *PUBLIC_CASE)
    measured = max(1.0, max_here / max_public), max(1.0, mean_here / mean_public)
    assert PUBLIC_SCALES[scheme, checkpoint] == pytest.approx(measured, abs=0.005)
    assert error_scales(scheme, checkpoint, Inputs()) == PUBLIC_SCALES[scheme, checkpoint]
    assert error_scales(scheme, *PUBLIC_CASE) == (1.0, 1.0)


def layers_of(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """What the grader asks a part's process for (part_runtime.Session.layers), computed here."""
    captured = {}
    modules = dict(model.named_modules())
    hooks = [
        modules[name].register_forward_hook(lambda m, i, o, name=name: captured.update({f"{name} in": i[0], f"{name} out": o}))
        for name in BIGNET_LINEARS
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return captured


def test_the_first_layer_that_departs_from_bignet_is_named():
    checkpoint, x = PUBLIC.checkpoints[0], torch.randn(16, 1024, generator=torch.Generator().manual_seed(0))
    model = reference_model("half_precision", checkpoint)
    assert "each Linear layer matches BigNet's" in first_departing_layer(layers_of(model, x), "half_precision", checkpoint)
    layers = layers_of(model, x)
    layers["model.2.model.2 out"] = layers["model.2.model.2 out"] + 0.1  # block 2, its second layer
    said = first_departing_layer(layers, "half_precision", checkpoint)
    assert "block 2, layer 2 (model.2.model.2): max abs diff 0.1" in said, said
    layers["model.0.model.0 out"] = torch.full((16, 1024), float("nan"))
    assert "block 1, layer 1" in first_departing_layer(layers, "half_precision", checkpoint)
    del layers["model.0.model.0 in"]  # a model whose layers are not BigNet's: nothing to say
    assert first_departing_layer(layers, "half_precision", checkpoint) == ""


def test_a_skipped_layer_or_a_near_miss_is_named_too():
    checkpoint, x = PUBLIC.checkpoints[0], torch.randn(16, 1024, generator=torch.Generator().manual_seed(0))
    layers = layers_of(reference_model("low_precision", checkpoint), x)
    assert first_departing_layer(layers, "low_precision", checkpoint, near=True) == ""  # the reference's own: nothing to say
    layers["model.0.model.0 out"] = layers["model.0.model.0 out"] + 0.03  # within 4-bit's error of BigNet's, not of 4-bit's
    assert first_departing_layer(layers, "low_precision", checkpoint).startswith("; each Linear layer matches")
    said = first_departing_layer(layers, "low_precision", checkpoint, near=True)
    assert said.startswith("; the first layer to depart from the reference solution's layer (low_precision.py) is block 1, layer 1"), said
    for end in ("in", "out"):
        del layers[f"model.10.model.0 {end}"]
    assert "block 6, layer 1 (model.10.model.0) was not called, though the layers before it were" in first_departing_layer(
        layers, "low_precision", checkpoint
    )


def test_hidden_cases_loosen_thresholds_where_the_reference_does_worse(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "HIDDEN_DIR", tmp_path)
    default, heavy, small = Checkpoint(SECRET[0], secret=True), Checkpoint(SECRET[1], "heavy_tailed", secret=True), Inputs(SECRET[2], 64)
    checkpoints = [{"seed": c.seed, "family": c.family} for c in (default, heavy)]
    hidden = write_json(
        tmp_path / "hidden.json",
        {"checkpoints": checkpoints, "inputs": [{"seed": SECRET[3]}, vars(small)], "train_seeds": [SECRET[2], SECRET[3]]},
    )
    suite = load_suite(hidden)
    loaded = []
    monkeypatch.setattr(
        reference.trusted,
        "load_reference",
        lambda scheme, path, load=reference.trusted.load_reference: loaded.append(path) or load(scheme, path),
    )
    reference.reference_model.cache_clear()
    limits = output_limits(FOUR_BIT, suite)
    assert len(loaded) == 3  # once per checkpoint (the public one for the scale), not once per case
    assert all(max_diff >= FOUR_BIT.max_diff and mean_diff >= FOUR_BIT.mean_diff for max_diff, mean_diff in limits.values())
    assert limits[heavy, Inputs(SECRET[3])][1] > FOUR_BIT.mean_diff  # outliers stretch absmax scales: the reference's own error grows

    report = grade(REPO / "homework", suite=suite, parts=("qlora",), hidden=hidden)
    (qlora,) = report.parts
    assert qlora.score == 30 and all(case.score == case.max_score for case in qlora.cases)
    names = [case.name for case in qlora.cases]
    assert names == [
        "output [checkpoint 1 default, inputs 1: 256]",
        "output [checkpoint 1 default, inputs 2: 64]",
        "output [checkpoint 2 heavy_tailed, inputs 1: 256]",
        "output [checkpoint 2 heavy_tailed, inputs 2: 64]",
        "memory",
        "adapters",
        "training [1]",
        "training [2]",
    ]
    assert not any(str(seed) in name for seed in SECRET for name in names)  # students see the names: the seeds stay secret
    lines = [line for line in render(report, 1).splitlines() if line.startswith("    ")]
    assert len(lines) == len(names) and len({line.index(" / ") for line in lines}) == 1, lines  # long names keep the scores in one column


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_bignets_outputs_are_computed_once_and_kept_under_what_they_come_from(monkeypatch):
    checkpoint, inputs = Checkpoint(1, "gaussian"), Inputs(seed=7, n=8)
    kept = reference.output_file(checkpoint, inputs)
    kept.unlink(missing_ok=True)
    suite = Suite((checkpoint,), (inputs,))
    computed = reference.reference_outputs(suite)[checkpoint, inputs]
    assert kept.exists() and computed.shape == (8, 1024)
    monkeypatch.setattr(reference, "mapped_bignet", lambda checkpoint: 1 / 0)  # read back, not computed again
    assert torch.equal(reference.reference_outputs(suite)[checkpoint, inputs], computed)
    file = checkpoint_path(checkpoint)
    made = file.stat()
    try:
        os.utime(file, ns=(made.st_atime_ns, made.st_mtime_ns + 1))  # the checkpoint made again: its outputs too
        assert reference.output_file(checkpoint, inputs) != kept
    finally:
        os.utime(file, ns=(made.st_atime_ns, made.st_mtime_ns))
        kept.unlink()
