"""grader/grade.py's own logic: what one part's failure costs, what grading for credit needs."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.grade import grade
from grader.report import render, staff_notes
from grader.suite import Suite
from tests.helpers import REPO


def test_a_grader_failure_while_scoring_one_part_costs_that_part_alone(monkeypatch):
    """A full disk while copying a part's checkpoint (ENOSPC), say: that part scores 0, saying so, and the others are graded."""
    from grader.part_process import PartProcess

    copy = PartProcess.load

    def load(self, checkpoint, send):
        if self.part == "half_precision" and send:
            raise OSError(28, "No space left on device")
        return copy(self, checkpoint, send)

    monkeypatch.setattr(PartProcess, "load", load)
    report = grade(REPO / "homework", parts=("half_precision", "low_precision"), suite=Suite())
    half, low = report.parts
    assert (
        half.score == 0
        and half.reason == "the grader failed on this part (OSError: [Errno 28] No space left on device): tell the course staff"
    )
    assert low.score == 20


def test_grading_for_credit_needs_seccomp_and_landlock_or_users_of_their_own():
    from grader.grade import credit_lacks

    assert credit_lacks(seccomp=True, landlock=True, separate_users=False) == credit_lacks(True, False, True) == []
    assert credit_lacks(True, False, False) == ["Landlock"] and credit_lacks(False, True, True) == ["seccomp"]


def killed_by_the_system(monkeypatch, times: int) -> list:
    """The first `times` loading processes of half precision die as the kernel kills one when memory runs out (SIGKILL, not the grader's)."""
    import os
    import signal

    from grader.part_process import PartProcess

    copy, killed = PartProcess.load, []

    def load(self, checkpoint, send):
        if self.part == "half_precision" and send and len(killed) < times:
            killed.append(self.pid)
            os.kill(self.pid, signal.SIGKILL)
        return copy(self, checkpoint, send)

    monkeypatch.setattr(PartProcess, "load", load)
    return killed


def test_a_part_the_system_killed_is_graded_again_alone(monkeypatch):
    killed = killed_by_the_system(monkeypatch, 1)
    report = grade(REPO / "homework", parts=("half_precision", "low_precision"), suite=Suite(), jobs=2)
    assert len(killed) == 1
    assert [part.score for part in report.parts] == [20, 20] and report.notes == []


def test_a_part_the_system_killed_twice_is_not_graded_and_the_staff_are_told_why(monkeypatch):
    killed = killed_by_the_system(monkeypatch, 2)
    report = grade(REPO / "homework", parts=("half_precision", "low_precision"), suite=Suite())
    half, low = report.parts
    assert len(killed) == 2 and low.score == 20
    assert half.score == 0 and half.reason.startswith("not graded: the system killed this part's process twice")
    assert "says nothing of your code" in half.cases[0].message
    (note,) = report.notes
    assert "memory ran out while grading Half precision, twice" in note and note in staff_notes(report)
    assert note not in render(report, verbose=2)  # for the staff: the student's line says what it means for them


CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")  # cgroup v1's memory controller, where this machine has it
IN_A_CONTAINER = """
import sys
from grader.grade import grade
from grader.report import render, staff_notes
from grader.suite import Suite

report = grade(sys.argv[1], suite=Suite(), parts=("half_precision", "low_precision"))
print(render(report, verbose=1))
print(staff_notes(report))
"""


@pytest.mark.skipif(
    not (hasattr(os, "geteuid") and os.geteuid() == 0 and os.access(CGROUP_MEMORY, os.W_OK) and shutil.which("unshare")),
    reason="needs root, a writable cgroup v1 memory controller and unshare, to make a container",
)
def test_in_a_container_whose_memory_runs_out_the_kernel_kills_the_part_never_the_grader(tmp_path):
    """
    A container of 900 MB, as Gradescope's are (a cgroup, seen where a container sees its own), and a part whose
    load() takes 1.2 GB: within the grader's own limit of 2 GB, more than the container has. The kernel kills
    the part's process, twice, and not the grading process, which grades the other part and says what happened.
    """
    package = tmp_path / "homework"
    shutil.copytree(REPO / "homework", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "half_precision.py").write_text("import torch\n\n\ndef load(path=None):\n    return torch.ones(300 * 2**20)\n")
    group = CGROUP_MEMORY / f"grader-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(900 * 2**20))
        if (group / "memory.memsw.limit_in_bytes").exists():  # swap counted too, where there is swap
            (group / "memory.memsw.limit_in_bytes").write_text(str(900 * 2**20))
        shell = f'echo $$ > {group}/tasks && mount --bind {group} {CGROUP_MEMORY} && exec {sys.executable} -c "$0" {package}'
        run = subprocess.run(["unshare", "-m", "sh", "-c", shell, IN_A_CONTAINER], cwd=REPO, capture_output=True, text=True, timeout=600)
        kills = int(dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines())["oom_kill"])
    finally:
        while (group / "tasks").read_text().strip():
            time.sleep(0.1)
        group.rmdir()
    assert run.returncode == 0, run.stderr
    assert kills == 2, run.stdout
    assert re.search(r"\nHalf precision +0 / 20  not graded: the system killed this part's process twice", run.stdout), run.stdout
    assert re.search(r"\n4-bit +20 / 20", run.stdout), run.stdout
    assert (
        "Note: the container's memory (900 MB) ran out while grading Half precision, twice: give the autograder more memory" in run.stdout
    )
