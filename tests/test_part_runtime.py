"""grader/part_runtime.py's own logic, in this process: what a part is told, what it hands over, what its products cost."""

import importlib
import sys

import pytest
import torch

from tests.helpers import REPO


@pytest.fixture(scope="module")
def runtime():
    sys.path.insert(0, str(REPO / "grader"))  # as a part's process finds it; it takes the entry out itself
    return importlib.import_module("part_runtime")


def raised(code: str, path) -> BaseException:
    path.write_text(code)
    try:
        exec(compile(code, str(path), "exec"), {})
    except BaseException as error:  # noqa: BLE001 - the test wants whatever it raises
        return error
    raise AssertionError("raised nothing")


def test_a_failure_is_one_line_that_names_the_students_file_and_line(runtime, tmp_path):
    start = {"submission": str(tmp_path), "memory_cap": 2 * 2**30, "output_cap": 4 * 2**20}
    (tmp_path / "homework").mkdir()
    assert (
        runtime.describe(raised("x = 1\nraise ValueError('bad rank\\nmore')\n", tmp_path / "homework" / "lora.py"), start)
        == "ValueError: bad rank (homework/lora.py, line 2)"
    )
    assert runtime.describe(raised("raise NotImplementedError()\n", tmp_path / "a.py"), start) == "not implemented"
    assert runtime.describe(SystemExit(3), start) == "called sys.exit(3)"
    assert runtime.describe(MemoryError(), start) == "ran out of memory (the limit is 2 GB)"


def test_every_parameter_and_buffer_is_handed_over_under_each_of_its_names(runtime):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[1].weight = model[0].weight  # shared
    model[0].register_buffer("scale", torch.ones(1))
    names = [name for name, _, _ in runtime.registered_tensors(model)]
    assert names == ["0.weight", "0.bias", "0.scale", "1.weight", "1.bias"]
    name, table, attribute = next(runtime.registered_tensors(model))
    assert table[attribute] is model[0].weight


def test_matrix_products_are_counted_by_dtype(runtime):
    x, weight = torch.randn(8, 16), torch.randn(4, 16)
    with runtime.MatrixProducts() as products:
        torch.nn.functional.linear(x, weight)
        x.half() @ weight.half().T
    assert products.counts == {"float32": 8 * 16 * 4, "float16": 8 * 16 * 4}


def test_an_output_is_answered_only_if_the_grader_can_take_it(runtime):
    x = torch.zeros(4, 8)
    assert runtime.answerable(torch.ones(4, 8), x).shape == (4, 8)
    assert runtime.answerable(torch.ones(4, 2), x).shape == (4, 2)  # the wrong shape: its output case says so
    with pytest.raises(TypeError, match="returned a tuple, not a tensor"):
        runtime.answerable((x,), x)
    with pytest.raises(ValueError, match=r"returned a tensor of shape \(4, 16\) for inputs of shape \(4, 8\)"):
        runtime.answerable(torch.ones(4, 16), x)  # more than it was asked for
