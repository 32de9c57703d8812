"""grader/batch.py: a class's submissions graded side by side, each in a grader of its own, resumed where it stopped."""

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import grader.batch
from grader.canvas import Submission
from tests.helpers import REPO, run_grader, starter_zip


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
    # Each submission's feedback: the -v report (a file, so no colour) and Gradescope's results.json. What the student
    # reads names their zip, never the copy graded in a temporary folder, nor anything of this machine (its Sandbox line).
    feedback = tmp_path / "results-feedback"
    report = (feedback / "123.txt").read_text()
    assert "not implemented" in report and "0 / 100" in report and "\033[" not in report
    assert report.startswith("Grading doejane_LATE_123_501_hw1-1.zip\n") and "Sandbox" not in report
    assert (tmp_path / "results-staff" / "123.txt").read_text().startswith("Sandbox: ")  # the staff's, beside the student's
    invalid = (feedback / "xyz789.txt").read_text()
    assert invalid == "invalid zip, 0 points: not a zip file (or it is truncated or corrupt)\n"
    assert tempfile.gettempdir() not in json.loads((feedback / "xyz789.json").read_text())["output"]
    results = json.loads((feedback / "123.json").read_text())
    assert results["extra_data"]["sandbox"]["seccomp"]  # for staff: Gradescope shows extra_data to no student
    assert results["score"] == 0 and "leaderboard" not in results and results["execution_time"] > 0
    assert all(test["output"].startswith("not implemented") for test in results["tests"])
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
    assert {row["id"]: row["file"] for row in csv.DictReader(out.open())} == {
        "123": "doejane_LATE_123_502_hw1-2.zip",
        "xyz789": "xyz789.zip",
    }


def test_ctrl_c_stops_a_batch_at_once_and_the_rerun_grades_only_the_rest(tmp_path):
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for k in range(4):
        starter_zip(submissions, f"s{k}")
    command = [sys.executable, "-m", "grader", "batch", str(submissions), "--out", str(tmp_path / "r.csv"), "--jobs", "1"]
    # As on a terminal: its own process group, SIGINT not ignored (as a shell's background job would have it).
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
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


def test_batch_names_no_student_and_no_hidden_file_on_a_command_line(tmp_path, monkeypatch):
    """Any process can read another's command line (/proc/PID/cmdline): a batch's graders are told in private."""
    seen = {}

    class Grader:  # never finishes
        def __init__(self, command, env, **options):
            seen.update(command=" ".join(command), env=env)

        def wait(self, timeout=None):
            if timeout is not None:
                raise subprocess.TimeoutExpired("grader", timeout)

        def kill(self):
            pass

    monkeypatch.setattr(grader.batch.subprocess, "Popen", Grader)
    zip_path = starter_zip(tmp_path, "doejane_123_hw1")
    hidden = tmp_path / "staff-hidden.json"
    (tmp_path / "staff").mkdir()
    failure = grader.batch.grade_in_process(Submission("123", zip_path, "doejane"), tmp_path, tmp_path / "staff", str(hidden), 10)
    assert failure == "the grader did not finish in time"
    assert (
        "doejane" not in seen["command"]
        and "123" not in seen["command"]
        and "staff-hidden" not in seen["command"]
        and "--for-credit" in seen["command"]
    )
    assert seen["env"]["GRADER_HIDDEN"] == str(hidden.resolve())
