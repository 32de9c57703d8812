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
    start = {"submission": str(tmp_path), "written": ["lora.py"], "memory_cap": 2 * 2**30, "output_cap": 4 * 2**20}
    (tmp_path / "homework").mkdir()
    assert (
        runtime.describe(raised("x = 1\nraise ValueError('bad rank\\nmore')\n", tmp_path / "homework" / "lora.py"), start)
        == "ValueError: bad rank (homework/lora.py, line 2)"
    )
    assert runtime.describe(NotImplementedError(), start) == "not implemented"  # raised outside the package: nowhere to name
    assert runtime.describe(SystemExit(3), start) == "called sys.exit(3)"
    assert runtime.describe(MemoryError(), start) == "ran out of memory (the limit is 2 GB)"


def test_a_failure_in_a_given_helper_is_told_where_the_students_file_called_it(runtime, tmp_path):
    start = {"submission": str(tmp_path), "written": ["half_precision.py"], "memory_cap": 2**30, "output_cap": 2**20}
    package = tmp_path / "homework"
    package.mkdir()
    (package / "frozen_linear.py").write_text("def freeze(layer, dtype):\n    return layer.to(dtype=dtype)\n")
    student = "from frozen_linear import freeze\n\n\ndef load(path):\n    return freeze(object(), 'float16')\n"
    sys.path.insert(0, str(package))
    try:
        error = raised(student + "load(None)\n", package / "half_precision.py")
    finally:
        sys.path.remove(str(package))
        sys.modules.pop("frozen_linear", None)
    assert runtime.describe(error, start) == "AttributeError: 'object' object has no attribute 'to' (homework/half_precision.py, line 5)"
    missing = NotImplementedError('Module [HalfLinear] is missing the required "forward" function')  # torch's, not the starter's
    try:
        exec(compile("def forward():\n    raise missing\n\n\nforward()\n", str(package / "frozen_linear.py"), "exec"), {"missing": missing})
    except NotImplementedError as raised_there:
        error = raised_there
    assert (
        runtime.describe(error, start)
        == 'NotImplementedError: Module [HalfLinear] is missing the required "forward" function (homework/frozen_linear.py, line 2)'
    )


def test_not_implemented_says_which_function_to_write_and_where(runtime, tmp_path):
    start = {"submission": str(tmp_path), "written": ["lora.py"], "memory_cap": 2**30, "output_cap": 2**20}
    (tmp_path / "homework").mkdir()
    stub = "class LoRALinear:\n    def __init__(self):\n        raise NotImplementedError('adapters in float32')\n\n\nLoRALinear()\n"
    assert (
        runtime.describe(raised(stub, tmp_path / "homework" / "lora.py"), start)
        == "not implemented: write LoRALinear.__init__ (homework/lora.py, line 3): adapters in float32"
    )


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
    with runtime.MatrixProducts({"submission": "/elsewhere", "written": []}) as products:
        torch.nn.functional.linear(x, weight)
        x.half() @ weight.half().T
    assert products.counts == {"float32": 8 * 16 * 4, "float16": 8 * 16 * 4}
    assert products.slowest() == ""  # none of it asked for by a student's file


def test_the_slowest_matrix_products_are_named_by_the_students_file_and_line(runtime, tmp_path):
    package = tmp_path / "homework"
    package.mkdir()
    student = "import torch\n\ndef forward(x, w):\n    y = x @ w.T\n    return y.half() @ w.half().T\n"
    (package / "half_precision.py").write_text(student)
    namespace = {}
    exec(compile(student, str(package / "half_precision.py"), "exec"), namespace)
    x, weight = torch.randn(8, 16), torch.randn(16, 16)
    with runtime.MatrixProducts({"submission": str(tmp_path), "written": ["half_precision.py"]}) as products:
        namespace["forward"](x, weight)
    assert products.slowest() == "homework/half_precision.py, line 5"  # as many products as line 4's, each 15 times as slow


def test_an_output_is_answered_only_if_the_grader_can_take_it(runtime):
    x = torch.zeros(4, 8)
    assert runtime.answerable(torch.ones(4, 8), x).shape == (4, 8)
    assert runtime.answerable(torch.ones(4, 2), x).shape == (4, 2)  # the wrong shape: its output case says so
    with pytest.raises(TypeError, match="returned a tuple, not a tensor"):
        runtime.answerable((x,), x)
    with pytest.raises(ValueError, match=r"returned a tensor of shape \(4, 16\) for inputs of shape \(4, 8\)"):
        runtime.answerable(torch.ones(4, 16), x)  # more than it was asked for
