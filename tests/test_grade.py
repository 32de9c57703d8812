"""grader/grade.py's own logic: how many parts run side by side, what one part's failure costs, what grading for credit needs."""

import pytest

from grader.grade import cpu_count, cpu_quota, grade
from grader.suite import Suite
from tests.helpers import REPO


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
