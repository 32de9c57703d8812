"""
Staff batch grading: every ID.zip in a folder, each in a fresh `python -m grader` process, several
side by side. Each submission gets a feedback folder entry beside the CSV (results-feedback/ID.txt,
the -v report, and ID.json, Gradescope's results.json); a submission that already has its JSON is
skipped unless --force, so an interrupted batch resumes where it stopped. One broken submission never
stops the batch: whatever happens to it becomes its CSV row's status.

CSV columns (one row per zip, sorted by ID): see grader/README.md.
"""

import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .grade import cpu_count
from .parts import PARTS, GraderError, load_suite
from .reference import HOMEWORK_DIR, checkpoint_path, output_limits

COLUMNS = ("id", "status", *(part.name for part in PARTS), "total", "extra_credit", "score", "reason")


def batch(folder: str | Path, out: str | Path, jobs: int | None, force: bool, hidden: str | None, timeout: float) -> None:
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise GraderError(f"no such folder: {folder}")
    zips = sorted(folder.glob("*.zip"))
    if not zips:
        raise GraderError(f"no .zip files in {folder}")
    feedback = out.with_name(f"{out.stem}-feedback")
    feedback.mkdir(parents=True, exist_ok=True)
    prepare(hidden)
    todo = [z for z in zips if force or not (feedback / f"{z.stem}.json").exists()]
    failures = {}  # ID -> the status of a grader process that wrote no results (timeout, crashed)
    jobs = jobs or 1
    parts_side_by_side = max(1, cpu_count() // jobs)  # in each grader: about one process per core in all
    with ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(grade_in_process, z, feedback, hidden, timeout, parts_side_by_side): z for z in todo}
        for done, future in enumerate(as_completed(futures), 1):
            status = future.result()
            if status:
                failures[futures[future].stem] = status
            progress(done, len(todo), futures[future].stem)
    rows = [row(z.stem, feedback / f"{z.stem}.json", failures.get(z.stem)) for z in zips]
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{len(rows)} submissions ({len(zips) - len(todo)} already graded) -> {out}; feedback in {feedback}/", file=sys.stderr)


def prepare(hidden: str | None) -> None:
    """Make the checkpoints and the reference errors once, before the graders that read them start side by side."""
    suite = load_suite(hidden)
    for checkpoint in suite.checkpoints:
        checkpoint_path(checkpoint)
    for part in PARTS:
        output_limits(part, suite)


def grade_in_process(zip_path: Path, feedback: Path, hidden: str | None, timeout: float, jobs: int) -> str | None:
    """Grade one zip in a fresh grader process; returns a status when that process itself failed."""
    command = [sys.executable, "-m", "grader", str(zip_path.resolve()), "-v", "--jobs", str(jobs), "--timeout", str(timeout)]
    command += ["--json", str((feedback / f"{zip_path.stem}.json").resolve())] + (["--hidden", str(Path(hidden).resolve())] if hidden else [])
    (feedback / f"{zip_path.stem}.json").unlink(missing_ok=True)
    with open(feedback / f"{zip_path.stem}.txt", "w") as log:
        try:
            # At worst the parts run one after another, each within `timeout`; the margin covers startup and references.
            subprocess.run(command, cwd=HOMEWORK_DIR.parent, stdout=log, stderr=subprocess.STDOUT, timeout=len(PARTS) * timeout + 300)
        except subprocess.TimeoutExpired:
            return "timeout"
    return None if (feedback / f"{zip_path.stem}.json").exists() else "crashed"


def row(submission_id: str, results_path: Path, failure: str | None) -> dict:
    if failure or not results_path.exists():
        return {"id": submission_id, "status": failure or "crashed", "total": 0, "extra_credit": 0, "score": 0, "reason": "the grader did not finish"}
    summary = json.loads(results_path.read_text())["extra_data"]
    if "parts" not in summary:  # not graded at all: an invalid zip
        return {"id": submission_id, "status": summary["status"], "total": 0, "extra_credit": 0, "score": 0, "reason": summary["reason"]}
    parts = summary["parts"]
    reasons = [f"{name}: {p['reason']}" for name, p in parts.items() if p["reason"]]
    return {
        "id": submission_id,
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
