"""The grader's command line (grader/__main__.py), run as students and staff run it."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from grader.suite import load_suite
from tests.helpers import REPO, run_grader, starter_zip, write_zip


def test_a_bad_path_is_a_one_line_error():
    result = run_grader("no-such-folder")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: no such file or folder: no-such-folder"]


def test_a_folder_without_a_package_is_a_one_line_error(tmp_path):
    result = run_grader(str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: {tmp_path} is not a homework package folder (no __init__.py)"]


@pytest.mark.parametrize(
    "args, error",
    [
        (
            ["homework", "--timeout", "-1"],
            "error: argument --timeout: must be a number of seconds > 0, not '-1' (see python -m grader --help)",
        ),
        (
            ["homework", "--timeout", "abc"],
            "error: argument --timeout: must be a number of seconds > 0, not 'abc' (see python -m grader --help)",
        ),
        (["homework", "--jobs", "0"], "error: argument --jobs: must be a whole number >= 1, not '0' (see python -m grader --help)"),
        (
            ["batch", "submissions", "--jobs", "1.5"],
            "error: argument --jobs: must be a whole number >= 1, not '1.5' (see python -m grader batch --help)",
        ),
        (
            ["batch", "submissions", "--timeout", "0"],
            "error: argument --timeout: must be a number of seconds > 0, not '0' (see python -m grader batch --help)",
        ),
        (["homework", "--verbose", "--part", "lorra"], "error: argument --part: invalid choice: 'lorra'"),
    ],
)
def test_options_are_checked_before_anything_is_graded(args, error):
    """A typo costs one line and exit code 2, never a run that gives every part 0."""
    result = run_grader(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(error) and result.stderr.count("\n") == 1, result.stderr


INIT = {"homework/__init__.py": ""}


BAD_ZIPS = {  # name -> (entries, how they are stored, what the one line says); tests/test_submission.py has the rest
    "zip_slip": ({**INIT, "homework/../../escaped.py": "x = 1"}, zipfile.ZIP_DEFLATED, "could escape the folder"),
    "zip_bomb": ({**INIT, "homework/data.py": bytes(5 * 2**20)}, zipfile.ZIP_DEFLATED, "looks like a zip bomb"),
    "oversized": ({**INIT, "homework/data.py": bytes(21 * 2**20)}, zipfile.ZIP_STORED, "the limit is 20.0 MB"),
    "no_package": ({"hw/__init__.py": ""}, zipfile.ZIP_DEFLATED, "homework"),
}


@pytest.mark.parametrize("name", [*BAD_ZIPS, "not_a_zip"])
def test_an_invalid_zip_scores_0_in_one_line_with_results_json(tmp_path, name):
    if name == "not_a_zip":
        submission, says = tmp_path / "abc123.zip", "not a zip file"
        submission.write_text("not a zip")
    else:
        entries, method, says = BAD_ZIPS[name]
        submission = write_zip(tmp_path / "abc123.zip", entries, method)
    result = run_grader(str(submission), "--json", str(tmp_path / "results.json"))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("invalid zip, 0 points: ") and says in result.stdout
    assert len(result.stdout.splitlines()) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["score"] == 0 and results["extra_data"]["status"] == "invalid zip" and says in results["output"]
    assert not (tmp_path.parent / "escaped.py").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["abc123.zip", "results.json"]


def test_a_zip_s_report_names_the_zip_and_leaves_what_concerns_this_machine_to_stderr(tmp_path):
    """The report may be sent to the student: it names their zip, not where it lies here, and -v's Sandbox line is on stderr."""
    result = run_grader(str(starter_zip(tmp_path, "abc123")), "--part", "half_precision", "-v")
    assert result.returncode == 0 and result.stdout.startswith("Grading abc123.zip\n") and "0 / 20" in result.stdout
    assert str(tmp_path) not in result.stdout and "Sandbox" not in result.stdout
    assert result.stderr.startswith("Sandbox: separate users: "), result.stderr


def test_staff_make_secret_hidden_cases_readable_by_them_only(tmp_path):
    path = tmp_path / "staff" / "hidden.json"
    result = run_grader("hidden", str(path))
    assert result.returncode == 0 and f"wrote {path}" in result.stdout
    assert path.stat().st_mode & 0o777 == 0o600
    suite = load_suite(path)
    assert [c.family for c in suite.checkpoints] == ["default", "gaussian", "heavy_tailed"] and len(suite.train_seeds) == 2
    assert len({c.seed for c in suite.checkpoints} | {i.seed for i in suite.inputs} | set(suite.train_seeds)) == 7
    assert run_grader("hidden", str(path)).returncode == 1  # never overwritten without --force


def test_the_report_prints_in_any_code_page(tmp_path):
    """A console that cannot show é (Windows' default code pages): the report escapes it rather than crash."""
    starter_zip(tmp_path, "s")
    with zipfile.ZipFile(tmp_path / "s.zip") as archive:
        archive.extractall(tmp_path)
    package = (tmp_path / "homework").rename(tmp_path / "café")  # a package folder of any name: the report names it
    result = subprocess.run(
        [sys.executable, "-m", "grader", str(package), "--part", "half_precision"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert result.returncode == 0 and "caf\\xe9" in result.stdout and "0 / 20" in result.stdout, result.stderr
