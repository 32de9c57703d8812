"""
The Gradescope autograder: the zip `python -m grader gradescope` writes, and that zip run as
Gradescope runs it (setup.sh, then run_autograder per submission) under a temporary root.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from grader.grade import InvalidSubmission
from grader.gradescope import build, submission_zip, upload_name
from grader.release import release
from tests.helpers import REPO, run_grader


@pytest.fixture(scope="module")
def hidden(tmp_path_factory):
    """Secret cases, as few as make a hidden suite: one checkpoint, one batch, one training run (the test's time)."""
    path = tmp_path_factory.mktemp("staff") / "hidden.json"
    result = run_grader("hidden", str(path), "--checkpoints", "1", "--inputs", "1", "--train", "1")
    assert result.returncode == 0, result.stderr
    return path


def test_the_zip_holds_the_scripts_at_its_root_and_the_grader_and_reference_under_them(tmp_path, hidden):
    zip_path = build(tmp_path / "autograder.zip", hidden, "after_due_date")
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        setup, run = archive.read("setup.sh").decode(), archive.read("run_autograder").decode()
        assert archive.read("hidden.json") == hidden.read_bytes()
    assert names[:2] == ["setup.sh", "run_autograder"] and {
        "requirements.txt",
        "grader/gradescope.py",
        "homework/qlora.py",
        "homework/data.py",
        "homework/checkpoint/__init__.py",
    } <= set(names)
    assert "homework/optim/functional.py" in names  # the AdamW step the grader runs (trusted.adamw_step)
    assert not [
        n for n in names if n.startswith(("tests/", "benchmarks/", "checkpoints/")) or "__pycache__" in n or n.endswith((".pth", ".pyc"))
    ]
    assert stat.S_IMODE(modes["setup.sh"]) == stat.S_IMODE(modes["run_autograder"]) == 0o755
    assert (
        "pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in setup
        and '-r "$root/source/requirements.txt"' in setup
    )
    assert "run --visibility after_due_date" in run
    assert build(tmp_path / "again.zip", hidden, "after_due_date").read_bytes() == zip_path.read_bytes()  # the same checkout, the same zip
    with pytest.raises(Exception, match="exists: give --force"):
        build(zip_path)


def test_the_autograder_run_as_gradescope_runs_it_scores_the_reference_starter_and_a_broken_one(tmp_path, hidden):
    release(tmp_path / "starter")
    shutil.copytree(tmp_path / "starter" / "homework", tmp_path / "my-solution")  # a package folder of any name
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        for file in sorted((REPO / "homework").rglob("*.py")):
            text = file.read_text() + ("\nclass Unfinished(\n" if file.name == "low_precision.py" else "")
            archive.writestr(f"homework/{file.relative_to(REPO / 'homework')}", text)
    notes = make_files(tmp_path / "notes", ["notes.txt"])
    root = tmp_path / "autograder"
    checks = [REPO / "homework", tmp_path / "my-solution", broken, notes]
    result = run_grader(
        "gradescope", str(tmp_path / "autograder.zip"), "--hidden", str(hidden), "--root", str(root), *(f"--check={c}" for c in checks)
    )
    assert result.returncode == 0, result.stderr
    # Set up once, then a line per check, naming it and its own results folder (and, when it was not graded, what the student reads).
    lines = [line for line in result.stdout.splitlines()[1:] if not line.startswith("    ")]
    assert [line.split(": ")[0] for line in lines] == [str(c) for c in checks]
    assert sum(line.startswith(("parts will run as", "warning: ")) for line in result.stderr.splitlines()) == 1, result.stderr  # setup.sh
    assert [line.split(": ")[1].split()[0] for line in lines] == ["105", "0", "55", "0"], result.stdout  # broken 4-bit: QLoRA too
    assert [line.split()[-1] for line in lines] == [str(root / f"results-{n}") for n in range(1, 5)]
    assert "\n    Not graded, 0 points: no homework package: expected homework/__init__.py" in result.stdout
    runs = [json.loads((root / f"results-{n}" / "results.json").read_text()) for n in range(1, 5)]
    assert [run["extra_data"]["submission"] for run in runs] == ["homework", "my-solution", "broken.zip", "notes"]

    # What a student reads names their upload, and nothing of this machine; staff have the Sandbox line.
    for n, run in enumerate(runs, 1):
        student = [run["output"], *(test["output"] for test in run["tests"])]
        assert not [text for text in student if tempfile.gettempdir() in text or "Sandbox" in text], student
        if n < 4:
            assert run["output"].startswith(f"Grading {run['extra_data']['submission']}\n") and run["extra_data"]["sandbox"]
            assert "\nSandbox: " in (root / f"results-{n}" / "stdout").read_text()

    # The broken one's results.json as Gradescope reads it, and the files only root may read.
    results = runs[2]
    assert results["score"] == 55 and results["execution_time"] > 0 and results["extra_data"]["parts"]["qlora"]["score"] == 0
    hidden_tests = [t for t in results["tests"] if "score" in t]
    self_checks = [t for t in results["tests"] if "score" not in t]
    assert sum(t["max_score"] for t in hidden_tests) == 105 and {t["visibility"] for t in hidden_tests} == {"after_published"}
    assert all(t["name"].startswith("Self-check (public case), ") and t["visibility"] == "visible" for t in self_checks)
    assert {t["status"] for t in self_checks if "QLoRA" in t["name"]} == {"failed"} and "public self-check" in results["output"]
    assert [entry["order"] for entry in results["leaderboard"]] == ["asc"] * 3
    if os.geteuid() == 0:
        assert (
            stat.S_IMODE((root / "source").stat().st_mode) == 0o700
            and stat.S_IMODE((root / "source" / "hidden.json").stat().st_mode) == 0o600
        )
    assert stat.S_IMODE((root / "results-3").stat().st_mode) == 0o700
    assert "Total" in (root / "results-3" / "stdout").read_text()  # staff's view: the -v report


def test_results_json_is_written_even_when_the_grader_cannot_start(tmp_path):
    build(tmp_path / "autograder.zip")
    with zipfile.ZipFile(tmp_path / "autograder.zip") as archive:
        archive.extract("run_autograder", tmp_path / "source")
    env = {**os.environ, "AUTOGRADER_ROOT": str(tmp_path), "AUTOGRADER_PYTHON": "/bin/false"}
    subprocess.run(["bash", str(tmp_path / "source" / "run_autograder")], env=env, check=True)
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["score"] == 0 and "The autograder itself failed (not your submission)" in results["output"]


def test_an_upload_that_cannot_be_graded_gets_its_reason_in_results_json(tmp_path):
    (tmp_path / "source").mkdir()
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "notes.txt").write_text("no code")
    env = {**os.environ, "AUTOGRADER_ROOT": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "grader.gradescope", "run", "--visibility", "after_published"], cwd=REPO, env=env, check=True)
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["score"] == 0 and results["extra_data"]["status"] == "invalid zip" and "no homework package" in results["output"]
    assert "execution_time" in results
    # It names the upload as the student named it, not the zip it was packed into in a temporary folder.
    assert results["extra_data"]["submission"] == "notes.txt" and tempfile.gettempdir() not in results["output"]


def make_files(folder: Path, names: list[str]) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x = 1\n")
    return folder


def packed(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return sorted(archive.namelist())


def test_an_upload_is_graded_whatever_its_form(tmp_path):
    # The bundle.py zip, as it is.
    upload = make_files(tmp_path / "one", ["abc123.zip"])
    assert submission_zip(upload, tmp_path) == upload / "abc123.zip"
    # The homework folder (or a zip Gradescope unpacked): packed, then checked as any zip is.
    upload = make_files(tmp_path / "folder", ["homework/__init__.py", "homework/lora.py"])
    assert packed(submission_zip(upload, tmp_path / "folder")) == ["homework/__init__.py", "homework/lora.py"]
    # The package's files uploaded one by one: they are the package.
    upload = make_files(tmp_path / "loose", ["__init__.py", "lora.py"])
    assert packed(submission_zip(upload, tmp_path / "loose")) == ["homework/__init__.py", "homework/lora.py"]
    # The package's folder, whatever its name.
    upload = make_files(tmp_path / "named", ["my-solution/__init__.py", "my-solution/lora.py"])
    assert packed(submission_zip(upload, tmp_path)) == ["homework/__init__.py", "homework/lora.py"]


@pytest.mark.parametrize(
    "names, name",
    [
        (["abc123.zip"], "abc123.zip"),
        (["homework/__init__.py"], "homework"),
        (["my-solution/__init__.py"], "my-solution"),
        (["__init__.py", "lora.py"], "the files uploaded"),
    ],
)
def test_what_the_student_reads_calls_their_upload_as_they_named_it(tmp_path, names, name):
    assert upload_name(make_files(tmp_path / "upload", names)) == name


@pytest.mark.parametrize(
    "names, link, error",
    [
        ([], False, "nothing was uploaded"),
        (["a.zip", "b.zip"], False, "2 zips were uploaded \\(a.zip, b.zip\\); upload one"),
        (["homework/__init__.py"], True, "homework/secret.py is not a plain file"),
    ],
)
def test_an_upload_that_is_not_one_zip_or_plain_files_is_refused(tmp_path, names, link, error):
    upload = make_files(tmp_path / "upload", names)
    upload.mkdir(exist_ok=True)
    if link:  # e.g. a link to /autograder/source/hidden.json, which root can read
        (tmp_path / "hidden.json").write_text("{}")
        (upload / "homework" / "secret.py").symlink_to(tmp_path / "hidden.json")
    with pytest.raises(InvalidSubmission, match=error):
        submission_zip(upload, tmp_path)


@pytest.mark.parametrize(
    "args, error",
    [
        (["--check", "no-such.zip"], "error: no such file or folder: no-such.zip"),
        (["--root", "somewhere"], "error: --root is where --check lays the autograder out"),
    ],
)
def test_a_check_that_cannot_run_is_one_line_and_writes_no_zip(tmp_path, args, error):
    result = run_grader("gradescope", str(tmp_path / "autograder.zip"), *args)
    assert result.returncode == 1 and result.stderr.startswith(error) and result.stderr.count("\n") == 1
    assert not (tmp_path / "autograder.zip").exists()
