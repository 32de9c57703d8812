"""
Gradescope's default container, simulated: the autograder (python -m grader gradescope) grades the
reference with hidden cases inside a cgroup with Gradescope's default CPU quota and memory limit, bound
where a container sees its own cgroup (so grader/container.py reads the quota and the limit), as root, as Gradescope runs it.

    sudo python -m benchmarks.gradescope_container [--python /opt/grader-python/bin/python] [--limits 0.5:768,0.5:600,0.5:4096] [--style float16_compute]

Prints, for each container: run_autograder's wall time, the score, the cgroup's peak memory (page cache
included, which the kernel reclaims before it kills anything), the peak of what it cannot reclaim
(anonymous memory and mapped files, sampled) and whether the kernel killed anything;
and, sampled every 0.2 s, the peak of the tree's proportional set size (PSS: a page shared by the
template and its forks counts once in all), split by what each process is.

Needs root and a writable cgroup v1 hierarchy (cpu and memory controllers), and `unshare`. What the
kernel killed, and how large it was, is in `dmesg` ("Memory cgroup out of memory").
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader.gradescope import build, check
from grader.suite import make_hidden
from tests.corpus import honest_package

CGROUP = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def pss_by_role(pids: list[int]) -> dict[str, int]:
    """Bytes of PSS per kind of process: the grading process, the template, the parts' processes (the template's forks among them)."""
    processes = {}
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            pss = next(
                int(line.split()[1]) * 1024
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                if line.startswith("Pss:")
            )
        except (OSError, StopIteration, IndexError):
            continue  # ended meanwhile
        processes[pid] = command, parent, pss
    roles: dict[str, int] = {}
    for pid, (command, parent, pss) in processes.items():
        if b"--template" in command:
            role = "part processes" if parent in processes and b"--template" in processes[parent][0] else "template"
        else:
            role = "part processes" if b"--stdio" in command else "grading process" if b"grader" in command else "other"
        roles[role] = roles.get(role, 0) + pss
    return roles


def run_in_container(root: Path, python: str, cpus: float, memory_mb: int) -> dict:
    name = f"gradescope-bench-{os.getpid()}"
    cpu, memory = CGROUP / "cpu" / name, CGROUP / "memory" / name
    for group in (cpu, memory):
        group.mkdir()
    (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
    (cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * PERIOD_US)))
    (memory / "memory.limit_in_bytes").write_text(str(memory_mb * 2**20))
    shell = (
        f"echo $$ > {cpu}/tasks && echo $$ > {memory}/tasks && "
        f"mount --bind {cpu} {CGROUP}/cpu && mount --bind {memory} {CGROUP}/memory && exec {root}/run_autograder"
    )
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": python}
    peaks: dict[str, int] = {}
    peak_total = peak_resident = 0
    started = time.monotonic()
    (root / "results" / "results.json").unlink(missing_ok=True)  # run_autograder writes its own when Python itself dies
    # As in a fresh container, whose files are read for the first time: torch's libraries and the checkpoints are paged in,
    # and charged, by the container's own processes (else pages cached earlier are charged to whoever read them first).
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3")
    with open(root / "results" / "stdout", "w") as log:
        process = subprocess.Popen(["unshare", "-m", "sh", "-c", shell], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            pids = [int(p) for p in (memory / "cgroup.procs").read_text().split()]
            roles = pss_by_role(pids)
            peak_total = max(peak_total, sum(roles.values()))
            peak_resident = max(peak_resident, resident(memory))
            for role, pss in roles.items():
                peaks[role] = max(peaks.get(role, 0), pss)
            time.sleep(0.2)
    seconds = time.monotonic() - started
    figures = {
        "peak": int((memory / "memory.max_usage_in_bytes").read_text()),
        "killed": "oom_kill 0" not in (memory / "memory.oom_control").read_text(),
    }
    while (memory / "tasks").read_text().strip():  # what was killed last is still leaving
        time.sleep(0.1)
    for group in (cpu, memory):
        group.rmdir()
    results = json.loads((root / "results" / "results.json").read_text())
    failed = [t["name"] for t in results.get("tests", []) if t.get("status") == "failed" or t.get("score", 0) < t.get("max_score", 0)]
    return {
        "seconds": seconds,
        "score": results.get("score"),
        "failed": failed,
        "peak_pss": peak_total,
        "peak_resident": peak_resident,
        "peaks": peaks,
        **figures,
    }


def resident(memory: Path) -> int:
    """What the cgroup holds that the kernel cannot take back without killing or thrashing: anonymous memory and mapped files (torch's libraries)."""
    stat = dict(line.split() for line in (memory / "memory.stat").read_text().splitlines())
    return int(stat["total_rss"]) + int(stat["total_mapped_file"]) + int(stat["total_shmem"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the Python that run_autograder uses (readable by other users: the parts run as users of their own)",
    )
    parser.add_argument("--style", help="grade this honest style of tests/corpus/honest instead of the reference")
    parser.add_argument(
        "--limits",
        default="0.5:768,0.5:600,0.5:4096",
        help="CPUS:MEGABYTES,... (default: Gradescope's default container, then 600 MB and 4 GB)",
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gradescope-bench-") as tmp:
        tmp = Path(tmp)
        hidden = make_hidden(tmp / "hidden.json", 3, 2, 2, force=False)
        autograder = build(tmp / "autograder.zip", hidden)
        root = tmp / "autograder"
        check(autograder, [], root)  # setup.sh's steps: checkpoints and reference errors made once, as in the image
        (root / "submission").mkdir()
        if options.style:
            honest_package(options.style, root / "submission")
        else:
            subprocess.run(["cp", "-r", "homework", str(root / "submission")], check=True)
        (root / "results").mkdir()
        print(
            "| container | run_autograder | score | cgroup peak (page cache included) | cgroup peak resident (anonymous and mapped) | peak PSS of the tree | grading process | template | part processes |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for limit in options.limits.split(","):
            cpus, megabytes = float(limit.split(":")[0]), int(limit.split(":")[1])
            r = run_in_container(root, options.python, cpus, megabytes)
            mb = lambda n: f"{n / 2**20:,.0f} MB"  # noqa: E731
            outcome = f"{r['seconds']:.0f} s" + (", a process killed: out of memory" if r["killed"] else "")
            score = f"{r['score']}" + (f" ({len(r['failed'])} tests failed: {'; '.join(r['failed'])[:200]})" if r["failed"] else "")
            print(
                f"| {cpus:g} CPU, {megabytes} MB | {outcome} | {score} | {mb(r['peak'])} | {mb(r['peak_resident'])} | {mb(r['peak_pss'])} | "
                f"{mb(r['peaks'].get('grading process', 0))} | {mb(r['peaks'].get('template', 0))} | {mb(r['peaks'].get('part processes', 0))} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
