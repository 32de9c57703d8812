"""
The grader's command line (run as students and staff run it), its Gradescope JSON, batch mode and
hidden cases; and its scoring rules on their own.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from grader import reference
from grader.grade import cpu_count, cpu_quota, grade
from grader.parts import GUESSABLE, PARTS, PUBLIC, Checkpoint, GraderError, Inputs, Suite, load_suite
from grader.reference import output_limits
from grader.report import render
from test_grader import STUB
from test_submission import write_zip

REPO = Path(__file__).resolve().parent.parent
FOUR_BIT = next(part for part in PARTS if part.name == "low_precision")


def run_grader(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=REPO, capture_output=True, text=True)


def starter_zip(folder: Path, name: str) -> Path:
    """A zip of the reference with every part left unimplemented: the quickest submission to grade."""
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted((REPO / "homework").glob("*.py")):
            text = STUB if file.stem in {p.name for p in PARTS} else file.read_text()
            archive.writestr(f"homework/{file.name}", text)
    return path


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
        (["homework", "--timeout", "-1"], "error: argument --timeout: must be a number of seconds > 0, not '-1' (see python -m grader --help)"),
        (["homework", "--timeout", "abc"], "error: argument --timeout: must be a number of seconds > 0, not 'abc' (see python -m grader --help)"),
        (["homework", "--jobs", "0"], "error: argument --jobs: must be a whole number >= 1, not '0' (see python -m grader --help)"),
        (["batch", "submissions", "--jobs", "1.5"], "error: argument --jobs: must be a whole number >= 1, not '1.5' (see python -m grader batch --help)"),
        (["batch", "submissions", "--timeout", "0"], "error: argument --timeout: must be a number of seconds > 0, not '0' (see python -m grader batch --help)"),
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


def test_batch_grades_a_canvas_download_and_plain_zips_and_resumes(tmp_path):
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    (submissions / "doejane_LATE_123_500_hw1.zip").write_text("not a zip")  # a first try, replaced by the resubmission below
    starter_zip(submissions, "doejane_LATE_123_501_hw1-1")
    (submissions / "xyz789.zip").write_text("not a zip")
    out = tmp_path / "results.csv"
    first = run_grader("batch", str(submissions), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "1 late (Canvas's LATE): doejane (123)" in first.stderr
    rows = {row["id"]: row for row in csv.DictReader(out.open())}
    assert list(rows) == ["123", "xyz789"]
    assert (rows["123"]["name"], rows["123"]["late"], rows["123"]["file"]) == ("doejane", "late", "doejane_LATE_123_501_hw1-1.zip")
    assert rows["123"]["status"] == "graded" and rows["123"]["score"] == "0.0" and rows["123"]["lora"] == "0.0"
    assert rows["xyz789"]["status"] == "invalid zip" and "not a zip file" in rows["xyz789"]["reason"]
    # Each submission's feedback: the -v report (a file, so no colour) and Gradescope's results.json.
    feedback = tmp_path / "results-feedback"
    report = (feedback / "123.txt").read_text()
    assert "not implemented" in report and "0 / 100" in report and "\033[" not in report
    results = json.loads((feedback / "123.json").read_text())
    assert results["score"] == 0 and "leaderboard" not in results and results["execution_time"] > 0
    assert {test["output"] for test in results["tests"]} == {"not implemented"}
    assert sum(test["max_score"] for test in results["tests"]) == 105
    assert all(set(test) == {"name", "score", "max_score", "output", "visibility"} for test in results["tests"])
    assert json.loads((feedback / "xyz789.json").read_text())["extra_data"]["status"] == "invalid zip"

    again = run_grader("batch", str(submissions), "--out", str(out))
    assert "(2 already graded)" in again.stderr
    assert list(csv.DictReader(out.open())) == list(rows.values())
    # A new download with a newer file for a student: only that student is graded again.
    (submissions / "doejane_LATE_123_502_hw1-2.zip").write_text("not a zip")
    third = run_grader("batch", str(submissions), "--out", str(out))
    assert "(1 already graded)" in third.stderr
    assert {row["id"]: row["file"] for row in csv.DictReader(out.open())} == {"123": "doejane_LATE_123_502_hw1-2.zip", "xyz789": "xyz789.zip"}


def test_ctrl_c_stops_a_batch_at_once_and_the_rerun_grades_only_the_rest(tmp_path):
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for k in range(4):
        starter_zip(submissions, f"s{k}")
    command = [sys.executable, "-m", "grader", "batch", str(submissions), "--out", str(tmp_path / "r.csv"), "--jobs", "1"]
    # As on a terminal: its own process group, SIGINT not ignored (as a shell's background job would have it).
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    feedback, deadline = tmp_path / "r-feedback", time.monotonic() + 60
    while not (feedback / "s0.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    assert process.wait(timeout=10) == 130  # not after grading the rest
    graded = sorted(path.stem for path in feedback.glob("*.json"))
    assert graded == [f"s{k}" for k in range(len(graded))] and len(graded) < 4  # one at a time, in order: none after the stop
    again = run_grader("batch", str(submissions), "--out", str(tmp_path / "r.csv"), "--jobs", "1")
    assert f"4 submissions ({len(graded)} already graded)" in again.stderr
    assert {row["status"] for row in csv.DictReader((tmp_path / "r.csv").open())} == {"graded"}


SECRET = [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93]  # as `python -m grader hidden` draws them: 64 random-looking bits


def test_the_hidden_config_must_make_sense(tmp_path, monkeypatch):
    config = tmp_path / "hidden.json"
    complete = {"checkpoints": [{"seed": SECRET[0]}], "inputs": [{"seed": SECRET[1], "n": 64}], "train_seeds": [SECRET[2]]}
    config.write_text(json.dumps({**complete, "checkpoints": [{"seed": SECRET[0], "family": "spiky"}]}))
    with pytest.raises(GraderError, match="unknown weight family 'spiky'"):
        load_suite(config)
    config.write_text(json.dumps({**complete, "seeds": [1]}))
    with pytest.raises(GraderError, match="unknown keys"):
        load_suite(config)
    for guessable in (2, 2**32 + 5, GUESSABLE - 1):  # torch keeps a seed's low 32 bits
        config.write_text(json.dumps({**complete, "train_seeds": [guessable]}))
        with pytest.raises(GraderError, match=f"seed {guessable} is small enough for a submission to guess"):
            load_suite(config)
    assert load_suite() == PUBLIC
    config.write_text(json.dumps(complete))
    monkeypatch.setenv("GRADER_HIDDEN", str(config))
    assert load_suite().inputs == (Inputs(SECRET[1], 64),)


def test_staff_make_secret_hidden_cases_readable_by_them_only(tmp_path):
    path = tmp_path / "staff" / "hidden.json"
    result = run_grader("hidden", str(path))
    assert result.returncode == 0 and f"wrote {path}" in result.stdout
    assert path.stat().st_mode & 0o777 == 0o600
    suite = load_suite(path)
    assert [c.family for c in suite.checkpoints] == ["default", "gaussian", "heavy_tailed"] and len(suite.train_seeds) == 2
    assert len({c.seed for c in suite.checkpoints} | {i.seed for i in suite.inputs} | set(suite.train_seeds)) == 7
    assert run_grader("hidden", str(path)).returncode == 1  # never overwritten without --force


def test_hidden_cases_loosen_thresholds_where_the_reference_does_worse(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "HIDDEN_DIR", tmp_path)
    default, heavy, small = Checkpoint(SECRET[0], secret=True), Checkpoint(SECRET[1], "heavy_tailed", secret=True), Inputs(SECRET[2], 64)
    checkpoints = [{"seed": c.seed, "family": c.family} for c in (default, heavy)]
    hidden = write_json(tmp_path / "hidden.json", {"checkpoints": checkpoints, "inputs": [{"seed": SECRET[3]}, vars(small)], "train_seeds": [SECRET[2], SECRET[3]]})
    suite = load_suite(hidden)
    scheme, loaded = reference.trusted(FOUR_BIT.scheme), []
    monkeypatch.setattr(scheme, "load", lambda path, load=scheme.load: loaded.append(path) or load(path))
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


def test_secret_seeds_are_never_ones_the_suite_refuses(monkeypatch):
    import grader.parts

    draws = iter([5, 2**40 + 7, 2**40 + grader.parts.GUESSABLE])  # guessable low bits twice, then not
    monkeypatch.setattr(grader.parts.secrets, "randbits", lambda bits: next(draws))
    assert grader.parts.secret_seed() == 2**40 + grader.parts.GUESSABLE


@pytest.mark.parametrize(
    "files, quota",
    [
        ({"cpu.max": "50000 100000\n"}, 0.5),  # cgroup v2: Gradescope's default, half a core
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_a_containers_cpu_quota_is_read_from_its_cgroup(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == quota


def test_parts_run_one_at_a_time_on_less_than_a_core(monkeypatch):
    monkeypatch.setattr("grader.grade.cpu_quota", lambda: 0.5)
    assert cpu_count() == 1


def test_a_grader_failure_while_scoring_one_part_costs_that_part_alone(monkeypatch):
    """A full disk while copying a part's checkpoint (ENOSPC), say: that part scores 0, saying so, and the others are graded."""
    from grader.part_process import PartProcess

    copy = PartProcess.load

    def load(self, checkpoint, seed, send):
        if self.part == "half_precision" and send:
            raise OSError(28, "No space left on device")
        return copy(self, checkpoint, seed, send)

    monkeypatch.setattr(PartProcess, "load", load)
    report = grade(REPO / "homework", parts=("half_precision", "low_precision"), suite=Suite())
    half, low = report.parts
    assert half.score == 0 and half.reason == "the grader failed on this part (OSError: [Errno 28] No space left on device): tell the course staff"
    assert low.score == 20


def test_batch_names_no_student_and_no_hidden_file_on_a_command_line(tmp_path, monkeypatch):
    """Any process can read another's command line (/proc/PID/cmdline): a batch's graders are told in private."""
    import grader.batch
    from grader.canvas import Submission

    seen = {}

    def run(command, env, **options):
        seen.update(command=" ".join(command), env=env)
        raise subprocess.TimeoutExpired(command, 0)

    monkeypatch.setattr(grader.batch.subprocess, "run", run)
    zip_path = starter_zip(tmp_path, "doejane_123_hw1")
    hidden = tmp_path / "staff-hidden.json"
    failure = grader.batch.grade_in_process(Submission("123", zip_path, "doejane"), tmp_path, str(hidden), 10, 1)
    assert failure == "the grader did not finish in time"
    assert "doejane" not in seen["command"] and "123" not in seen["command"] and "staff-hidden" not in seen["command"] and "--for-credit" in seen["command"]
    assert seen["env"]["GRADER_HIDDEN"] == str(hidden.resolve())


def test_the_report_prints_in_any_code_page(tmp_path):
    """A console that cannot show é (Windows' default code pages): the report escapes it rather than crash."""
    package = tmp_path / "café" / "homework"
    package.parent.mkdir()
    starter_zip(tmp_path, "s")
    with zipfile.ZipFile(tmp_path / "s.zip") as archive:
        archive.extractall(package.parent)
    result = subprocess.run(
        [sys.executable, "-m", "grader", str(package), "--part", "half_precision"], cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONIOENCODING": "ascii"}
    )
    assert result.returncode == 0 and "caf\\xe9" in result.stdout and "0 / 20" in result.stdout, result.stderr


def test_grading_for_credit_needs_seccomp_and_landlock_or_users_of_their_own():
    from grader.grade import credit_lacks

    assert credit_lacks(seccomp=True, landlock=True, separate_users=False) == credit_lacks(True, False, True) == []
    assert credit_lacks(True, False, False) == ["Landlock"] and credit_lacks(False, True, True) == ["seccomp"]
