"""
Gradescope's autograder (https://gradescope-autograders.readthedocs.io/en/latest/specs/), made from
this checkout, and what it runs inside Gradescope's container:

    python -m grader gradescope autograder.zip [--hidden staff/hidden.json]     # staff: build it
    python -m grader gradescope autograder.zip --check homework --check s.zip   # ...and run it as Gradescope would

Gradescope unpacks the zip into /autograder/source and runs setup.sh there once, as root, when it
builds the autograder's image (Ubuntu 22.04): it installs this project's requirements and makes the
checkpoints and reference errors. For each submission it then
runs /autograder/run_autograder, which grades /autograder/submission into
/autograder/results/results.json. Both scripts take their paths from $AUTOGRADER_ROOT (default
/autograder), so that --check can lay the same folders out anywhere; with $AUTOGRADER_PYTHON set,
setup.sh installs nothing and both use that Python.

Inside, only root can read /autograder/source (the grader, the reference solution, the hidden cases
and the checkpoints) and /autograder/results; each part's process runs as a user of its own (launch.Uids).
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

from .grade import InvalidSubmission, grade_submission
from .launch import Uids, running_as_root, shared_launcher
from .parts import GraderError, mb
from .protocol import one_line
from .reference import precompute
from .release import REPO, files
from .report import error_results, gradescope, render, self_check_tests, staff_notes, write_json
from .results import Outcome, Report
from .submission import MAX_BYTES
from .suite import PUBLIC, load_suite

SOURCE = (
    "requirements.txt",
    "grader/*.py",
    "homework/*.py",
    "homework/checkpoint/*.py",
    "homework/optim/*.py",
)  # the grader and the reference solution (homework/optim/: the AdamW step the grader runs, trusted.adamw_step)
HIDDEN_NAME = "hidden.json"  # the hidden cases' name in the zip, beside setup.sh
FAILED = "The autograder failed (not your submission). Tell the course staff."  # what the student reads when the grader itself fails
# Gradescope's visibilities for a test, and when a student sees a test that has it.
VISIBILITIES = {
    "hidden": "never (staff see them)",
    "after_due_date": "after the due date",
    "after_published": "when grades are published",
    "visible": "below",
}

SETUP = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, in /autograder/source, when it builds the autograder's image.
set -euo pipefail
root="${AUTOGRADER_ROOT:-/autograder}"
python="${AUTOGRADER_PYTHON:-/opt/grader-python/bin/python}"
if [ -z "${AUTOGRADER_PYTHON:-}" ]; then  # a local check (--check) brings its own Python
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv /opt/grader-python  # outside /autograder/source, so that the parts' user can run it
    # PyTorch's own index for the CPU build: PyPI's Linux torch brings CUDA (gigabytes), and there is no GPU here.
    "$python" -m pip install -q {torch} --index-url https://download.pytorch.org/whl/cpu
    "$python" -m pip install -q -r "$root/source/requirements.txt"
fi
cd "$root/source"
"$python" -m grader.gradescope setup
"""

RUN = """\
#!/usr/bin/env bash
# Gradescope runs this as root for each submission (from /autograder/run_autograder, a copy of this file).
root="${{AUTOGRADER_ROOT:-/autograder}}"
python="${{AUTOGRADER_PYTHON:-/opt/grader-python/bin/python}}"
cd "$root/source" && "$python" -m grader.gradescope run --visibility {visibility}
if [ ! -s "$root/results/results.json" ]; then  # Python itself failed: the student still gets a line, and staff the log
    mkdir -p "$root/results"
    echo '{{"score": 0, "output": "The autograder itself failed (not your submission). Tell the course staff."}}' > "$root/results/results.json"
fi
"""


def build(
    out: str | Path, hidden: str | Path | None = None, visibility: str = "after_published", force: bool = False, repo: Path = REPO
) -> Path:
    """Write the autograder zip: setup.sh and run_autograder at its root, the grader and the reference solution under it."""
    out = Path(out)
    if out.exists() and not force:
        raise GraderError(f"{out} exists: give --force to replace it")
    if visibility not in VISIBILITIES:
        raise GraderError(f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}")
    if hidden:
        load_suite(hidden)  # refuse a broken configuration here, not in every student's results
    torch = re.search(r"^torch==\S+", (repo / "requirements.txt").read_text(), re.MULTILINE)
    if not torch:
        raise GraderError("requirements.txt must pin torch (torch==VERSION): setup.sh installs that CPU build")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        write(archive, "setup.sh", SETUP.replace("{torch}", torch[0]), executable=True)
        write(archive, "run_autograder", RUN.format(visibility=visibility), executable=True)
        for path in files(SOURCE, repo):
            write(archive, path.relative_to(repo).as_posix(), path.read_text())
        if hidden:
            write(archive, HIDDEN_NAME, Path(hidden).read_text())
    os.replace(temporary, out)
    return out


def write(archive: zipfile.ZipFile, name: str, text: str, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))  # fixed: the same checkout makes the same zip
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16  # Gradescope runs run_autograder directly
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, text)


def setup(root: Path) -> None:
    """setup.sh's grading steps: root-only source, and the checkpoints and reference errors made once."""
    source, hidden = root / "source", root / "source" / HIDDEN_NAME
    if running_as_root():
        source.chmod(0o700)
        if hidden.exists():
            hidden.chmod(0o600)
    precompute(PUBLIC)  # every upload's self-check: made in the image, or every submission's container makes it again
    if hidden.exists():
        precompute(load_suite(hidden))
    uids = Uids()
    uids.close()
    print(f"parts will run as: {uids.note}" if uids.separate else f"warning: {uids.note}")


def run(root: Path, visibility: str) -> dict:
    """run_autograder's work: grade root/submission into root/results/results.json, whatever happens."""
    started = time.monotonic()
    results_dir, hidden, name = root / "results", root / "source" / HIDDEN_NAME, upload_name(root / "submission")
    results_dir.mkdir(exist_ok=True)
    results_dir.chmod(0o700)
    try:
        with tempfile.TemporaryDirectory(prefix="grader-upload-") as tmp:
            submission = submission_zip(root / "submission", Path(tmp))
            results = grade_for_gradescope(submission, name, hidden if hidden.exists() else None, visibility)
    except InvalidSubmission as e:  # the student's upload: one line for them
        results = error_results(f"Not graded, 0 points: {e}", Outcome.INVALID_ZIP, name)
    except Exception:  # the grader's own failure, whose message may name this machine: staff get it (results/stdout), the student a line
        traceback.print_exc()
        results = error_results(FAILED, Outcome.GRADER_FAILED, name)
    results["execution_time"] = round(time.monotonic() - started, 1)  # the whole run: both gradings, and unpacking
    try:
        write_json(results, results_dir / "results.json")
    except ValueError:  # a figure that is not a number
        traceback.print_exc()
        write_json(error_results(FAILED, Outcome.GRADER_FAILED, name), results_dir / "results.json")
    return results


def grade_for_gradescope(submission: Path, name: str, hidden: Path | None, visibility: str) -> dict:
    """
    The points from the hidden cases (shown as `visibility` says); the public case's results shown at once, worth nothing.
    What the student reads names their upload as `name`; results/stdout, for staff only, has the -v report and the Sandbox line.
    """
    if not hidden:
        report = grade_submission(submission, name, for_credit=True)
        print_for_staff(report)
        return {**gradescope(report), "output": render(report)}
    with shared_launcher() as start:  # one template for both gradings: it never runs a submission
        report = grade_submission(submission, name, suite=load_suite(hidden), hidden=hidden, shared=start)
        public = grade_submission(submission, name, for_credit=True, shared=start)
    print_for_staff(report)
    results = gradescope(report, visibility)
    results["tests"] += self_check_tests(public)
    results["output"] = (
        f"{render(public)}\n\nThat is the public self-check, worth nothing. The points come from hidden cases, shown {VISIBILITIES[visibility]}."
    )
    return results


def print_for_staff(report: Report) -> None:
    """run_autograder's output, which Gradescope keeps in results/stdout for staff only."""
    print(f"{render(report, verbose=1)}\n{staff_notes(report)}")


def upload_name(folder: Path) -> str:
    """What the student uploaded, as they named it: their zip, or their folder; files uploaded one by one have no name."""
    uploaded = list(folder.iterdir()) if folder.is_dir() else []
    return one_line(uploaded[0].name, 100) if len(uploaded) == 1 else "the files uploaded"  # a student's name for it: shown escaped


def submission_zip(folder: Path, tmp: Path) -> Path:
    """
    What the student uploaded, as one zip for grade_submission: their zip if that is all they uploaded,
    else a zip of their loose files (only plain files, within the submission limits), so that an
    upload goes through the same checks whatever its form.
    """
    uploaded = sorted(Path(top, name) for top, folders, names in os.walk(folder) for name in folders + names)  # links not followed
    for path in uploaded:
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise InvalidSubmission(f"{path.relative_to(folder)} is not a plain file; upload only your zip, or plain files")
    plain = [path for path in uploaded if path.is_file()]
    if not plain:
        raise InvalidSubmission("nothing was uploaded: upload the zip that bundle.py makes")
    zips = [path for path in plain if path.suffix == ".zip"]
    if len(plain) == 1 and zips:
        return zips[0]
    if len(zips) > 1:
        raise InvalidSubmission(f"{len(zips)} zips were uploaded ({', '.join(z.name for z in zips)}); upload one")
    size = sum(path.stat().st_size for path in plain)
    if size > MAX_BYTES:
        raise InvalidSubmission(f"the files uploaded come to {mb(size, 1)}; the limit is {mb(MAX_BYTES, 1)}")
    package = package_folder(folder)
    packed = tmp / "upload.zip"
    with zipfile.ZipFile(packed, "w") as archive:
        for path in plain:
            archive.write(path, f"homework/{path.relative_to(package).as_posix()}" if package else path.relative_to(folder).as_posix())
    return packed


def package_folder(folder: Path) -> Path | None:
    """
    The folder whose files are the homework package, whatever its name: the upload itself (the package's
    files uploaded one by one) or the one folder uploaded. None: the upload holds a `homework` folder, or
    nothing grade_submission will find.
    """
    uploaded = list(folder.iterdir())
    candidates = [folder, *uploaded] if len(uploaded) == 1 else [folder]
    return next((path for path in candidates if (path / "__init__.py").is_file()), None)


def check(autograder: str | Path, submissions: list[str], root: str | Path | None = None) -> list[dict]:
    """
    Run the autograder as Gradescope does, under `root` (default: a new temporary folder) instead of
    /autograder: set it up once, then per submission run root/run_autograder on it, keeping the Nth's
    results folder as root/results-N. Returns each results.json.
    """
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="gradescope-"))
    env = set_up(Path(autograder), root)
    return [check_one(Path(submission), root, root / f"results-{n}", env) for n, submission in enumerate(submissions, 1)]


def set_up(autograder: Path, root: Path) -> dict:
    """Unpack the autograder into root/source and run setup.sh, as Gradescope does for its image; returns the scripts' environment."""
    if root.exists() and any(root.iterdir()):
        raise GraderError(f"{root} is not empty: --root needs a new or empty folder")
    with zipfile.ZipFile(autograder) as archive:
        archive.extractall(root / "source")
    for script in ("setup.sh", "run_autograder"):
        (root / "source" / script).chmod(0o755)  # zipfile does not restore modes; Gradescope's unzip does
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    setup_run = subprocess.run([root / "source" / "setup.sh"], env=env, stdout=sys.stderr)
    if setup_run.returncode:
        raise GraderError(f"setup.sh failed (exit code {setup_run.returncode}): see its output above")
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    return env


def check_one(submission: Path, root: Path, kept: Path, env: dict) -> dict:
    """Upload `submission` as a student would (a zip as it is, a folder as a folder), run run_autograder, and keep its results as `kept`."""
    shutil.rmtree(root / "submission", ignore_errors=True)
    if submission.is_dir():
        shutil.copytree(submission, root / "submission" / submission.resolve().name)
    else:
        (root / "submission").mkdir()
        shutil.copy(submission, root / "submission")
    (root / "results").mkdir()
    with open(root / "results" / "stdout", "w") as log:  # where Gradescope keeps run_autograder's output
        subprocess.run([root / "run_autograder"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    (root / "results").rename(kept)
    results = json.loads((kept / "results.json").read_text())
    status = results.get("extra_data", {}).get("status", "error")
    print(f"{submission}: {results['score']:g} points ({status}, {results['execution_time']:g} s); results.json and stdout in {kept}")
    if status != Outcome.GRADED.value:  # what the student reads, under the name the TA gave it
        print(f"    {results['output']}")
    return results


def main(argv: list[str]) -> int:
    """In the container: `setup` (from setup.sh) or `run --visibility V` (from run_autograder)."""
    root = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    if argv[:1] == ["setup"]:
        setup(root)
    elif argv[:2] == ["run", "--visibility"] and len(argv) == 3:
        run(root, argv[2])
    else:
        print(
            "usage: python -m grader.gradescope setup | run --visibility VISIBILITY   (run by setup.sh and run_autograder)", file=sys.stderr
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
