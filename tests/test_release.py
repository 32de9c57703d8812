"""
grader/release.py: the solution markers, and the student starter made from them, tried as a student
would use it.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.parts import PART_NAMES as PARTS
from grader.release import MARKED, RELEASED, MarkerError, files, regions, release, starter_text, strip_markers
from tests.test_docs import broken_links

REPO = Path(__file__).resolve().parent.parent
REGIONS = {"half_precision.py": 3, "lora.py": 3, "low_precision.py": 4, "qlora.py": 3, "lower_precision.py": 2, "README.md": 2}


@pytest.fixture(scope="module")
def starter(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "starter"
    release(out)
    return out


def run(starter: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *command], cwd=starter, capture_output=True, text=True, timeout=300)


def test_the_reference_marks_what_students_write():
    counts = {path.name: len(regions(path.read_text(), path.name)) for path in files(MARKED)}
    assert {name: count for name, count in counts.items() if count} == REGIONS
    for path in files(("homework/*.py",)):
        for first, _, match in regions(path.read_text()):
            assert match["hint"], f"{path.name}, line {first + 1}: a region without a hint"


def test_a_region_becomes_a_raise_in_a_function_and_a_comment_at_module_level():
    text = 'import torch\n# BEGIN SOLUTION: the layer\nclass A:\n    pass\n# END SOLUTION\n\n\ndef f():\n    # BEGIN SOLUTION: say "hi"\n    return 1\n    # END SOLUTION\n'
    assert starter_text(text) == 'import torch\n# TODO: the layer\n\n\ndef f():\n    raise NotImplementedError("say \\"hi\\"")\n'
    assert strip_markers(text) == "import torch\nclass A:\n    pass\n\n\ndef f():\n    return 1\n"
    markdown = "a\n<!-- BEGIN SOLUTION: for students -->\nfor staff\n<!-- END SOLUTION -->\n<!-- BEGIN SOLUTION -->\nstaff only\n<!-- END SOLUTION -->\nb\r\n"
    assert starter_text(markdown) == "a\nfor students\nb\r\n"


@pytest.mark.parametrize(
    "text, error",
    [
        ("# BEGIN SOLUTION: a\nx = 1\n", "line 1: BEGIN SOLUTION is never closed"),
        ("x = 1\n# END SOLUTION\n", "line 2: END SOLUTION without a BEGIN SOLUTION"),
        (
            "# BEGIN SOLUTION: a\n# BEGIN SOLUTION: b\n# END SOLUTION\n# END SOLUTION\n",
            "line 2: BEGIN SOLUTION inside the region opened on line 1",
        ),
        ("def f():\n    #BEGIN SOLUTION a\n    return 1\n", "line 2: a malformed marker"),
        ("def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n", "line 2: a Python region needs a hint"),
    ],
)
def test_a_badly_marked_file_is_refused_with_its_line(text, error):
    with pytest.raises(MarkerError, match=error):
        starter_text(text, "x.py")


def test_the_solution_with_markers_stripped_is_the_same_program():
    # tests/test_grader.py grades the stripped files: this says they are the reference, comments aside.
    for path in files(("homework/*.py",)):
        text = path.read_text()
        assert ast.dump(ast.parse(strip_markers(text))) == ast.dump(ast.parse(text)), path.name


def test_release_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not an empty folder"):
        release(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_starter_is_the_reference_less_the_solution(starter):
    written = sorted(p.relative_to(starter) for p in starter.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(REPO) for p in files(RELEASED))
    assert not any(part in ("tests", ".git", "__pycache__", "benchmarks") for path in written for part in path.parts)
    marked = set(files(MARKED))
    for source in files(RELEASED):
        if source not in marked or not regions(source.read_text()):
            assert (starter / source.relative_to(REPO)).read_bytes() == source.read_bytes(), source
    # Not one line of a solution region (code or comment) is left anywhere in the starter.
    outside, inside = set(), set()
    for source in files(RELEASED):
        lines = source.read_text().splitlines()
        spans = [range(first + 1, last) for first, last, _ in regions(source.read_text())] if source in marked else []
        for number, line in enumerate(lines):
            (inside if any(number in span for span in spans) else outside).add(line.strip())
    secret = {line for line in inside - outside if len(line) > 12}
    assert len(secret) > 50
    for path in starter.rglob("*"):
        if path.is_file():
            leaked = [line for line in path.read_text().splitlines() if line.strip() in secret]
            assert not leaked, f"{path.name} still has {leaked}"


def test_the_starter_ships_the_students_page_on_the_grader_not_the_staffs(starter):
    """grader/README.md is the students' page; grader/STAFF.md (hidden cases, batch mode, Gradescope, the design) stays here."""
    assert (REPO / "grader" / "STAFF.md").is_file() and not (starter / "grader" / "STAFF.md").exists()
    assert sorted(path.name for path in (starter / "grader").glob("*.md")) == ["README.md"]
    page = (starter / "grader" / "README.md").read_text()
    assert page == (REPO / "grader" / "README.md").read_text()
    headings = [line for line in page.splitlines() if line.startswith("#")]
    assert not [h for h in headings if any(word in h for word in ("Hidden", "Batch", "Canvas", "Gradescope", "trust", "Tests"))], headings
    for document in starter.rglob("*.md"):  # what a student reads links only to what the starter has
        assert not broken_links(document, starter), document


def test_the_starter_imports_and_every_tool_says_not_implemented(starter):
    imported = run(starter, "-c", "import homework." + ", homework.".join(PARTS))
    assert imported.returncode == 0, imported.stderr
    for command in (("homework.compare", "bignet", "qlora"), ("homework.fit", "lora")):  # the first makes the checkpoint, and says so
        result = run(starter, "-m", *command, "--device", "cpu")
        part = command[-1]
        assert result.returncode == 1 and result.stderr.splitlines()[-1].startswith(f"not implemented ({part}.py): "), result.stderr
    for part in PARTS:
        result = run(starter, "-m", "homework.stats", part, "--device", "cpu")
        assert (
            result.returncode == 1 and result.stderr.startswith(f"not implemented ({part}.py): ") and len(result.stderr.splitlines()) == 1
        )
    # The optimizers are not a part: they ship complete, and train the given float32 BigNet.
    trained = run(starter, "-m", "homework.fit", "bignet", "--steps", "1", "--optimizer", "fira", "--step-in-backward", "--device", "cpu")
    assert trained.returncode == 0 and "bignet: best accuracy" in trained.stdout, trained.stderr


def test_the_tools_show_what_they_can_and_name_the_file_that_is_not_written(starter, tmp_path, checkpoint_path):
    """A student who wrote lora.py, but not yet half_precision.py, whose HalfLinear LoRA builds on: lora's column names that file."""
    student = tmp_path / "student"
    shutil.copytree(starter / "homework", student / "homework")
    shutil.copy(REPO / "homework" / "lora.py", student / "homework" / "lora.py")
    options = ("--device", "cpu", "--checkpoint", str(checkpoint_path))
    result = run(student, "-m", "homework.stats", "bignet", "half_precision", "lora", "--batch-size", "8", *options)
    header, *rows = result.stdout.splitlines()
    assert result.returncode == 1 and header.split() == ["bignet", "half_precision", "lora"] and len(rows) == 7
    assert rows[3].split() == ["Theoretical", "memory", "72.11", "MB", *["not", "implemented", "(half_precision.py)"] * 2]
    assert result.stderr.splitlines() == [
        "not implemented (half_precision.py): a BigNet whose Linear layers are HalfLinear",
        "not implemented (half_precision.py): a torch.nn.Linear with its weight and bias in float16, frozen",
    ]


def test_the_starter_grades_0_and_bundles(starter):
    graded = run(starter, "-m", "grader", "homework", "-v")
    assert graded.returncode == 0, graded.stderr
    assert graded.stdout.count("not implemented") == len(PARTS) and "0 / 100  + 0 / 5 extra credit" in graded.stdout
    bundled = run(starter, "bundle.py", "homework", "abc123")
    assert bundled.returncode == 0 and (starter / "abc123.zip").is_file(), bundled.stderr
