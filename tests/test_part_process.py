"""grader/part_process.py's own logic: a part's time budget, where its code was when stopped, and the /proc figures it reads."""

import os
import time
from pathlib import Path

from grader import part_process
from grader.part_process import CLOCK_TICKS, Budget, cpu_seconds, innermost_frame, resident_bytes

DUMP = """Thread 0x00007f0a1b2c3700 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 324 in wait

Current thread 0x00007f0a1d4e5b80 (most recent call first):
  File "/venv/lib/python3.11/site-packages/torch/nn/functional.py", line 2000 in linear
  File "/tmp/grader-x/code/homework/lora.py", line 31 in forward
  File "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1775 in _call_impl
  File "/tmp/grader-x/code/homework/bignet.py", line 58 in forward
  File "/tmp/grader-x/runtime/part_runtime.py", line 61 in forward
"""


def test_the_innermost_frame_in_the_submission_is_named():
    assert innermost_frame(DUMP, Path("/tmp/grader-x/code")) == ", in forward (homework/lora.py, line 31)"
    assert innermost_frame(DUMP, Path("/tmp/elsewhere")) == ""
    assert innermost_frame("", Path("/tmp/grader-x/code")) == ""


def test_cpu_time_is_the_kernels_count_of_a_process():
    before = cpu_seconds(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert 0.2 <= cpu_seconds(os.getpid()) - before <= 1.0
    assert cpu_seconds(2**22 + 1) is None  # no such process


def test_a_budget_counts_the_cpu_time_of_all_its_processes_and_the_wall_clock():
    budget = Budget(cpu_limit=1e6, wall_limit=1e6)
    budget.started(os.getpid())
    assert budget.over(os.getpid()) == "" and budget.used > 0
    budget.cpu_limit = budget.used / 2
    assert budget.over(os.getpid()).startswith("timed out: used")
    budget = Budget(cpu_limit=1e6, wall_limit=0.0)
    budget.started(os.getpid())
    assert "blocked or sleeping" in budget.over(os.getpid())


def test_a_process_time_counts_from_when_it_is_ready_for_the_submission():
    """What starting it took (this test process's whole life, here) is not the part's."""
    budget = Budget(cpu_limit=1e6, wall_limit=1e6)
    budget.started(os.getpid())
    budget.over(os.getpid())
    assert budget.used > 1  # importing torch, at least
    budget.ready(os.getpid())
    budget.over(os.getpid())
    assert budget.used < 0.5


def test_resident_memory_is_read_for_a_live_process_only():
    assert 10 * 2**20 < resident_bytes(os.getpid()) < 10 * 2**30
    assert resident_bytes(2**22 + 1) is None


# /proc/<pid>/stat of a process named "a) b" (a name may hold spaces and parentheses) that used 250 ticks of user and 50 of system time.
STAT = "4242 (a) b) R 1 4242 4242 0 -1 4194304 119 0 0 0 250 50 0 0 20 0 3 0 2148178 3133440 358\n"
STATUS = "Name:\tpython\nVmPeak:\t 9000 kB\nVmRSS:\t    1976 kB\nThreads:\t3\n"


def test_the_proc_figures_are_read_from_the_kernels_text(tmp_path, monkeypatch):
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(STAT)
    (tmp_path / "4242" / "status").write_text(STATUS)
    monkeypatch.setattr(part_process, "PROC", tmp_path)
    assert cpu_seconds(4242) == 300 / CLOCK_TICKS
    assert resident_bytes(4242) == 1976 * 1024
    assert cpu_seconds(4243) is None and resident_bytes(4243) is None


def test_without_proc_wall_clock_time_stands_in_for_cpu_time_and_says_so(tmp_path, monkeypatch):
    """macOS and Windows (no /proc): each process's time since it started counts, which is never less than its CPU time."""
    monkeypatch.setattr(part_process, "PROC", tmp_path / "none")
    budget = Budget(cpu_limit=0.2, wall_limit=1e6)
    budget.started(os.getpid())
    assert not budget.measured and budget.over(os.getpid()) == ""
    time.sleep(0.3)  # no CPU time at all, yet it counts
    assert budget.over(os.getpid()).startswith(
        "timed out: used 0 s of time (CPU time is counted on Linux only), over the part's limit of 0.2 s"
    )
