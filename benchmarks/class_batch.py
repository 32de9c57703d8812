"""
A whole class through batch mode, measured: 40 students in a Canvas "Download Submissions" folder
(copies of the reference, of the starter and of broken ones, some late, some resubmitted), graded on
secret hidden cases with --jobs 2:

1. one uninterrupted batch: wall time, time per submission, peak memory of the whole batch;
2. the same batch killed (its whole process group, as Ctrl-C does) once half the students have
   results, then run again: how many the rerun grades, and whether every row equals run 1's;
3. one reference submission alone with one part at a time (what a Gradescope container with a
   fraction of a core runs): wall and CPU time, peak memory.

Memory is the proportional set size (PSS) of every process the command started, sampled every 0.2 s.

    python -m benchmarks.class_batch            # about 35 minutes on 2 cores; figures in grader/STAFF.md
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
import time
import zipfile
from pathlib import Path

from grader.parts import PARTS
from grader.release import REPO, release, strip_markers
from grader.suite import make_hidden

STUDENTS = 40
JOBS = 2


def zip_package(package: Path, path: Path, edit=None) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(package.rglob("*.py")):
            text = file.read_text()
            archive.writestr(f"homework/{file.relative_to(package)}", edit(file, text) if edit else text)


def make_class(folder: Path, tmp: Path) -> dict:
    """40 students, as Canvas names their files; returns {canvas user id: the score they should get}."""
    release(tmp / "starter")
    reference = lambda file, text: strip_markers(text)  # noqa: E731
    broken = lambda file, text: strip_markers(text) + ("\nclass Unfinished(\n" if file.name == "low_precision.py" else "")  # noqa: E731
    kinds = [
        ("reference", REPO / "homework", reference, 105.0),
        ("starter", tmp / "starter" / "homework", None, 0.0),
        ("broken", REPO / "homework", broken, 55.0),
    ]
    expected = {}
    for k in range(STUDENTS):
        name, package, edit, score = kinds[k % 3]
        user, late = str(20000 + k), "_LATE" if k % 7 == 0 else ""
        zip_package(package, folder / f"student{name}{k}{late}_{user}_{60000 + 2 * k}_hw1.zip", edit)
        if k % 5 == 0:  # a resubmission: the first try (the starter) is older, with a smaller file id
            zip_package(tmp / "starter" / "homework", folder / f"student{name}{k}{late}_{user}_{50000 + k}_hw1-1.zip")
        expected[user] = score
    return expected


def tree_memory(pid: int) -> int:
    """Proportional set size of `pid` and everything under it (from /proc): forked part processes share pages, counted once."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        try:
            children.setdefault(int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += next(int(line.split()[1]) * 1024 for line in open(f"/proc/{p}/smaps_rollup") if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
        todo += children.get(p, [])
    return total


def run(command: list[str], stop_when=None) -> dict:
    """Run `command` in its own process group; sample its memory; kill the group when `stop_when()` is true."""
    started, peak, killed = time.monotonic(), 0, False
    # SIGINT as on a terminal: a shell starts a background job with it ignored, and Python keeps it so.
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    while process.poll() is None:
        peak = max(peak, tree_memory(process.pid))
        if stop_when and not killed and stop_when():
            os.killpg(process.pid, signal.SIGINT)
            killed = True
        time.sleep(0.2)
    reader.join()
    return {"seconds": time.monotonic() - started, "peak": peak, "stderr": "".join(stderr), "returncode": process.returncode}


def rows(path: Path) -> dict:
    return {row["id"]: row for row in csv.DictReader(path.open())}


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="class-batch-"))
    try:
        folder = tmp / "canvas-download"
        folder.mkdir()
        expected = make_class(folder, tmp)
        hidden = make_hidden(tmp / "hidden.json")
        batch = [sys.executable, "-m", "grader", "batch", str(folder), "--jobs", str(JOBS), "--hidden", str(hidden)]
        print(
            f"{STUDENTS} students, {len(list(folder.iterdir()))} files; batch --jobs {JOBS} on {os.cpu_count()} cores, hidden cases: 3 checkpoints x 2 input batches, 2 training runs",
            flush=True,
        )

        whole = run(batch + ["--out", str(tmp / "whole.csv")])
        first = rows(tmp / "whole.csv")
        scores = {user: float(row["score"]) for user, row in first.items()}
        per_submission = sorted(json.loads(p.read_text())["execution_time"] for p in (tmp / "whole-feedback").glob("*.json"))
        print(
            f"1. uninterrupted: {whole['seconds']:.0f} s wall, {whole['seconds'] / STUDENTS:.1f} s per student; peak memory {whole['peak'] / 2**20:.0f} MB",
            flush=True,
        )
        print(
            f"   each grading's own time: median {per_submission[len(per_submission) // 2]:.0f} s, max {per_submission[-1]:.0f} s",
            flush=True,
        )
        print(f"   scores as expected: {scores == expected}; late reported: {whole['stderr'].strip().splitlines()[-1]}", flush=True)

        feedback = tmp / "resumed-feedback"
        half = lambda: feedback.is_dir() and len(list(feedback.glob("*.json"))) >= STUDENTS // 2  # noqa: E731
        stopped = run(batch + ["--out", str(tmp / "resumed.csv")], stop_when=half)
        done = len(list(feedback.glob("*.json")))
        resumed = run(batch + ["--out", str(tmp / "resumed.csv")])
        again = resumed["stderr"].strip().splitlines()
        print(
            f"2. interrupted (SIGINT) after {stopped['seconds']:.0f} s with {done} of {STUDENTS} graded (exit {stopped['returncode']}); rerun: {resumed['seconds']:.0f} s, '{next(line for line in again if 'already graded' in line).strip()}'",
            flush=True,
        )
        same = rows(tmp / "resumed.csv") == first
        print(f"   every row the same as the uninterrupted run's: {same}", flush=True)

        alone = tmp / "alone.zip"
        shutil.copy(next(folder.glob("studentreference0_*_60000_hw1.zip")), alone)
        before = os.times()
        one = run([sys.executable, "-m", "grader", str(alone), "--jobs", "1", "--hidden", str(hidden)])
        after = os.times()
        cpu = after.children_user + after.children_system - before.children_user - before.children_system
        print(
            f"3. one reference submission, one part at a time: {one['seconds']:.0f} s wall, {cpu:.0f} s CPU, peak memory {one['peak'] / 2**20:.0f} MB",
            flush=True,
        )
        print(f"   parts: {', '.join(p.name for p in PARTS)}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
