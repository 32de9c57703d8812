"""grader/container.py: what a container allows, read from its cgroup, and how many parts run side by side there."""

import pytest

from grader.container import cpu_count, cpu_quota, memory_limit, parts_side_by_side


def cgroup(folder, files: dict):
    """A cgroup's files as a container sees them, in `folder`."""
    for name, text in files.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text)
    return folder


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
    assert cpu_quota(cgroup(tmp_path, files)) == quota


def test_parts_run_one_at_a_time_on_less_than_a_core(monkeypatch):
    monkeypatch.setattr("grader.container.cpu_quota", lambda: 0.5)
    assert cpu_count() == 1


@pytest.mark.parametrize(
    "files, limit",
    [
        ({"memory.max": "805306368\n"}, 768 * 2**20),  # cgroup v2: Gradescope's default
        ({"memory.max": "max\n"}, None),
        ({"memory/memory.limit_in_bytes": "805306368\n"}, 768 * 2**20),  # cgroup v1
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1's "no limit"
        ({}, None),
    ],
)
def test_a_containers_memory_limit_is_read_from_its_cgroup(tmp_path, files, limit):
    assert memory_limit(cgroup(tmp_path, files)) == limit


def test_parts_run_one_at_a_time_where_memory_is_under_2_gb(monkeypatch):
    monkeypatch.setattr("grader.container.cpu_count", lambda: 4)
    monkeypatch.setattr("grader.container.memory_limit", lambda: 768 * 2**20)
    assert parts_side_by_side(5) == 1
    monkeypatch.setattr("grader.container.memory_limit", lambda: 4 * 2**30)
    assert parts_side_by_side(5) == 4 and parts_side_by_side(2) == 2
