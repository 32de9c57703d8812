"""
What the machine, or the container, grading runs in allows: how many cores (affinity, a CPU quota)
and how much memory (a cgroup's limit), so that parts run side by side only where they fit.

A container sees its own cgroup at /sys/fs/cgroup: cgroup v2 files directly there (cpu.max,
memory.max), v1's under one folder per controller (cpu/, memory/).
"""

import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
# Below this, one part's process at a time: the grading process, the template and one part take about 600 MB,
# and Gradescope's default container has 768 MB for everything.
ROOM_FOR_PARTS_SIDE_BY_SIDE = 2 * 2**30


def cpu_count() -> int:
    """
    The cores this process may use: a container may allow fewer than the machine has, by affinity or by
    a CPU quota. Gradescope's default is half a core: parts side by side there would share it, each
    slowed past its time limit, so they run one after another.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cores, int(quota))) if quota else cores


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """The container's CPU quota in cores, or None for none."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()  # v2: "50000 100000", or "max 100000"
    except (OSError, ValueError):
        try:
            quota, period = ((cgroup / "cpu" / f"cpu.cfs_{name}_us").read_text() for name in ("quota", "period"))  # v1: -1 for none
        except OSError:
            return None
    return None if quota.strip() in ("max", "-1") else int(quota) / int(period)


def memory_limit(cgroup: Path = CGROUP) -> int | None:
    """The container's memory limit in bytes, or None for none (v1 writes "none" as a number near 2^63)."""
    for file in (cgroup / "memory.max", cgroup / "memory" / "memory.limit_in_bytes"):
        try:
            text = file.read_text().strip()
        except OSError:
            continue
        return None if text == "max" or int(text) >= 2**60 else int(text)
    return None


def parts_side_by_side(parts: int) -> int:
    """How many parts the self-check grades side by side by default: one per core, and one in all where memory is short."""
    limit = memory_limit()
    return 1 if limit is not None and limit < ROOM_FOR_PARTS_SIDE_BY_SIDE else max(1, min(parts, cpu_count()))
