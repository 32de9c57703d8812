"""grader/reference.py: the thresholds of the public cases, and where a wrong model departs from BigNet."""

import pytest
import torch

from grader.parts import PUBLIC, PUBLIC_CASE, PUBLIC_SCALES, Inputs
from grader.reference import BIGNET_LINEARS, error_scales, first_departing_layer, reference_error, reference_model


@pytest.mark.parametrize("scheme, checkpoint", PUBLIC_SCALES, ids=lambda key: str(getattr(key, "family", key)))
def test_the_public_scales_are_what_the_reference_measures(scheme, checkpoint):
    (max_here, mean_here), (max_public, mean_public) = reference_error(scheme, checkpoint, Inputs()), reference_error(scheme, *PUBLIC_CASE)
    measured = max(1.0, max_here / max_public), max(1.0, mean_here / mean_public)
    assert PUBLIC_SCALES[scheme, checkpoint] == pytest.approx(measured, abs=0.005)
    assert error_scales(scheme, checkpoint, Inputs()) == PUBLIC_SCALES[scheme, checkpoint]
    assert error_scales(scheme, *PUBLIC_CASE) == (1.0, 1.0)


def layers_of(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """What the grader asks a part's process for (worker.Part.layers), computed here."""
    captured = {}
    modules = dict(model.named_modules())
    hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: captured.update({f"{name} in": i[0], f"{name} out": o})) for name in BIGNET_LINEARS]
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
