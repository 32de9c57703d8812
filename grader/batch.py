"""
Staff batch grading: a folder of ID.zip files, or the folder Canvas's "Download Submissions" makes
(canvas.submissions: the newest zip per student), each graded in a fresh `python -m grader` process,
several side by side. Each submission gets a feedback folder entry beside the CSV (results-feedback/ID.txt,
the -v report, and ID.json, Gradescope's results.json), and one for staff alone (results-staff/ID.txt: the
grading machine's Sandbox line, notes, a traceback); a submission whose JSON is there, for the same
file, is skipped unless --force, so an interrupted batch resumes where it stopped and a new download
regrades only the students who submitted again. One broken submission never stops the batch: whatever
happens to it becomes its CSV row's status.

CSV columns (one row per zip, sorted by ID): see grader/STAFF.md (the staff's page, not in the starter).
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .canvas import Submission, submissions, without_zip
from .parts import PARTS, WALL_FACTOR, GraderError
from .protocol import one_line
from .reference import precompute
from .report import NAME_ENV
from .results import Outcome
from .suite import HIDDEN_ENV, load_suite
from .trusted import HOMEWORK_DIR

# Ctrl-C reaches the graders running then (the terminal signals the whole process group), not one a worker starts a
# moment later: graders start, and the stop is marked, under one lock, and a grader that started in between is stopped too.
STARTING = threading.Lock()
RUNNING: set = set()
STOPPED = threading.Event()

COLUMNS = ("id", "name", "late", "file", "status", *(part.name for part in PARTS), "total", "extra_credit", "score", "reason")


def batch(folder: str | Path, out: str | Path, jobs: int | None, force: bool, hidden: str | None, timeout: float) -> None:
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise GraderError(f"no such folder: {folder}")
    found = submissions(folder)
    if not found:
        raise GraderError(f"no .zip files in {folder}")
    feedback, staff = out.with_name(f"{out.stem}-feedback"), out.with_name(f"{out.stem}-staff")
    for folder in (feedback, staff):
        folder.mkdir(parents=True, exist_ok=True)
    precompute(load_suite(hidden))
    todo = [s for s in found if force or graded_file(feedback / f"{s.id}.json") != s.path.name]
    for s in todo:
        (feedback / f"{s.id}.json").unlink(missing_ok=True)
    failures = {}  # ID -> why a grader process wrote no results (it timed out, it crashed)
    STOPPED.clear()
    with ThreadPoolExecutor(jobs or 1) as pool:  # each grader, for credit, runs one part's process at a time
        futures = {pool.submit(grade_in_process, s, feedback, staff, hidden, timeout): s for s in todo}
        try:
            for done, future in enumerate(as_completed(futures), 1):
                failure = future.result()
                if failure:
                    failures[futures[future].id] = failure
                progress(done, len(todo), futures[future].id)
        except KeyboardInterrupt:  # Ctrl-C stops the graders running (one process group); start no more
            with STARTING:
                STOPPED.set()
                for process in RUNNING:
                    process.send_signal(signal.SIGINT)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    rows = [row(s, feedback / f"{s.id}.json", failures.get(s.id)) for s in found]
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(
        f"\n{len(rows)} submissions ({len(found) - len(todo)} already graded) -> {out}; feedback in {feedback}/, staff's notes in {staff}/",
        file=sys.stderr,
    )
    ungraded = without_zip(folder, found)
    if ungraded:
        print(f"not graded, no zip: {', '.join(ungraded)}", file=sys.stderr)
    late = [f"{s.name} ({s.id})" for s in found if s.late]
    if late:
        print(f"{len(late)} late (Canvas's LATE): {', '.join(late)}", file=sys.stderr)


def graded_file(results_path: Path) -> str | None:
    """The name of the file a results.json was made from, if there is one."""
    try:
        return json.loads(results_path.read_text())["extra_data"].get("submission")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def grade_in_process(submission: Submission, feedback: Path, staff: Path, hidden: str | None, timeout: float) -> str | None:
    """
    Grade one zip in a fresh grader process, for credit; returns why, when that process itself failed. Its
    report goes to `feedback` (the student's), what concerns this machine to `staff` (the Sandbox line,
    notes, a traceback). It
    grades a copy named submission.zip in a folder only root can enter, and learns of the hidden cases and
    of the zip's own name (which its report gives) from its environment: no command line, which any process
    can read, names a student or the hidden cases.
    """
    with tempfile.TemporaryDirectory(prefix="grader-batch-") as private:
        copy, results, errors = Path(private) / "submission.zip", Path(private) / "results.json", staff / f"{submission.id}.txt"
        shutil.copyfile(submission.path, copy)
        command = [
            sys.executable,
            "-m",
            "grader",
            str(copy),
            "-v",
            "--for-credit",
            "--timeout",
            str(timeout),
            "--json",
            str(results),
        ]
        environment = {k: v for k, v in os.environ.items() if k != HIDDEN_ENV}
        environment[NAME_ENV] = submission.path.name
        if hidden:
            environment[HIDDEN_ENV] = str(Path(hidden).resolve())
        with open(feedback / f"{submission.id}.txt", "w") as log, open(errors, "w") as notes:
            with STARTING:
                if STOPPED.is_set():
                    return "interrupted"
                process = subprocess.Popen(command, cwd=HOMEWORK_DIR.parent, env=environment, stdout=log, stderr=notes)
                RUNNING.add(process)
            try:
                # At worst the parts run one after another, each within its wall-clock limit; the margin covers startup and references.
                process.wait(timeout=len(PARTS) * WALL_FACTOR * timeout + 300)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return "the grader did not finish in time"
            finally:
                with STARTING:
                    RUNNING.discard(process)
        if not results.exists():  # the CSV gets the traceback's last line
            printed = errors.read_text(errors="replace").strip().splitlines()
            return "the grader did not finish (it crashed)" + (f": {one_line(printed[-1])}" if printed else "")
        shutil.copyfile(results, feedback / f"{submission.id}.json")  # it names the student's file: what a later batch compares, to skip it
    return None


def row(submission: Submission, results_path: Path, failure: str | None) -> dict:
    who = {"id": submission.id, "name": submission.name, "late": "late" if submission.late else "", "file": submission.path.name}
    if failure or not results_path.exists():
        return {
            **who,
            "status": Outcome.GRADER_FAILED.value,
            "total": 0,
            "extra_credit": 0,
            "score": 0,
            "reason": failure or "the grader did not finish",
        }
    summary = json.loads(results_path.read_text())["extra_data"]
    if "parts" not in summary:  # not graded at all: an invalid zip, or the grader failed
        return {**who, "status": summary["status"], "total": 0, "extra_credit": 0, "score": 0, "reason": summary["reason"]}
    parts = summary["parts"]
    reasons = [f"{name}: {p['reason']}" for name, p in parts.items() if p["reason"]]
    return {
        **who,
        "status": summary["status"],
        **{name: p["score"] for name, p in parts.items()},
        "total": summary["total"],
        "extra_credit": summary["extra_credit"],
        "score": round(summary["total"] + summary["extra_credit"], 2),
        "reason": "; ".join(reasons),
    }


def progress(done: int, total: int, last: str) -> None:
    bar = "#" * (30 * done // total)
    end = "\n" if done == total or not sys.stderr.isatty() else ""
    print(f"\r[{bar:<30}] {done}/{total}  {last}", end=end, file=sys.stderr, flush=True)
