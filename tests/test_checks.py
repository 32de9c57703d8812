"""grader/checks.py: what the grading process makes of what it received, tried on tensors and numbers made here."""

import pytest
import torch

from grader.checks import check_adapters, check_output, check_training, is_lossy, near_limit, time_warning
from grader.parts import PARTS
from grader.wire import Tensors, dump

LORA = next(part for part in PARTS if part.name == "lora")


def specs(tensors: dict) -> dict:
    """The tensors' dtypes and shapes, as the grading process reads them from a part's answer."""
    return Tensors.parse(dump(tensors)).specs


def test_adapters_are_counted_from_the_tensors_received():
    tensors = {"a": torch.zeros(18 * 32, 1024), "b": torch.zeros(1024, 18 * 32), "frozen": torch.zeros(1024, 1024, dtype=torch.float16)}
    passed, message = check_adapters(LORA, specs(tensors), ["a", "b"])
    assert passed and "trainable parameters 1.18 M < 2.00 M" in message
    passed, message = check_adapters(LORA, specs({**tensors, "a": tensors["a"].half()}), ["a", "b"])
    assert not passed and "trainable dtypes: float16, float32" in message
    assert not check_adapters(LORA, specs(tensors), [])[0]


def test_training_credit_runs_from_the_starting_accuracy_to_the_target():
    assert check_training(0.5, 0.93, 5, True)[0] == 1.0
    assert check_training(0.5, 0.65, 20, True)[0] == pytest.approx(0.5)
    assert check_training(0.6, 0.6, 20, True)[0] == 0.0  # luck at the start is not learning
    assert check_training(0.48, 0.5, 20, False)[0] == 0.0  # NaN outputs pick class 0: chance
    assert check_training(0.5, float("nan"), 20, True) == (0.0, "the accuracy is NaN")


def test_outputs_must_be_finite_floats_of_the_right_shape():
    reference_output = torch.zeros(4, 8)

    def check(y):
        return check_output(y, reference_output, 0.002, None)[:2]

    assert check(torch.full((4, 8), 0.001, dtype=torch.float16))[0]
    assert check(torch.full((4, 8), float("nan"))) == (False, "the output has NaN or inf values")
    assert check(torch.zeros(4, 7)) == (False, "the output is float32 (4, 7); expected float (4, 8)")
    assert check(torch.zeros(4, 8, dtype=torch.long))[0] is False


def test_an_output_as_close_to_its_limit_as_hidden_draws_vary_is_warned():
    assert near_limit({"max_diff": 0.3, "mean_diff": 0.01}, 0.5, 0.1) == ""
    said = near_limit({"max_diff": 0.4, "mean_diff": 0.01}, 0.5, 0.1)
    assert said == "max abs diff 0.4 is within 36% of its limit 0.5, as much as hidden cases of this weight family vary: one may fail"
    assert near_limit({"max_diff": 0.001, "mean_diff": 0.09}, 0.5, 0.1).startswith("mean abs diff 0.09 is within")
    assert near_limit({"max_diff": 0.0018, "mean_diff": 0.0}, 0.002, None).startswith("max abs diff")
    assert near_limit({"max_diff": 0.526, "mean_diff": 0.08}, 0.5, 0.1).endswith("one may pass")  # failed, but not by much
    assert near_limit({"max_diff": 1.23, "mean_diff": 0.2}, 0.3, 0.05) == ""  # far over: no hidden case passes either
    # a mean near its limit says nothing of a max 2.4 times over it: hidden cases fail too
    assert near_limit({"max_diff": 0.72, "mean_diff": 0.045}, 0.3, 0.05) == ""
    assert near_limit({"max_diff": 0.35, "mean_diff": 0.045}, 0.3, 0.05).startswith("max abs diff 0.35 is within")


def test_an_output_within_lossy_times_its_limits_is_a_lossy_bignet():
    assert is_lossy({"max_diff": 0.7048, "mean_diff": 0.1107}, 0.3, 0.05)  # 2-bit codes
    assert is_lossy({"max_diff": 0.5199, "mean_diff": 0.0813}, 0.3, 0.05)  # a block dropped
    assert not is_lossy({"max_diff": 1.048, "mean_diff": 0.195}, 0.3, 0.05)  # the inputs themselves: no weights
    assert not is_lossy({"max_diff": 0.19, "mean_diff": 0.04}, 0.002, None)  # half precision's limit is 0.002
    assert not is_lossy({}, 0.3, 0.05)  # NaN, or the wrong shape: no figures


def test_only_a_part_over_half_its_time_is_warned_and_told_where_the_time_goes():
    place = "homework/half_precision.py, line 24"
    assert time_warning({"float16": 9, "float32": 1}, 7.2, 300, place) == ""  # float16, as the handout says, and fast enough
    assert time_warning({"float32": 9, "bfloat16": 1}, 150, 300, place) == ""
    assert time_warning({"float16": 9, "float32": 1}, 160, 300, place) == (
        "it used 160 s of CPU time, over half its limit of 300 s, and hidden cases are several times larger;"
        " 90% of its matrix products are in float16 or bfloat16, which a CPU computes 15 to 20 times slower than float32;"
        " most of the time goes to the matrix products at homework/half_precision.py, line 24"
    )
    assert (
        time_warning({"float32": 1}, 151, 300, "")
        == "it used 151 s of CPU time, over half its limit of 300 s, and hidden cases are several times larger"
    )
