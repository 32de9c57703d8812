"""
The CPU time a self-check of the reference takes, every process counted, and the trusted side's share
of it (all but the parts' own counted time: the grading process, the template, starting and ending
the parts' processes), for checkouts side by side:

    git worktree add /tmp/before <commit> && python -m benchmarks.self_check_cpu /tmp/before . [--runs 3]

Each checkout grades its own homework/ with its own grader, on the public cases, as
`python -m grader homework` does; one run first makes its checkpoints, then the runs alternate
between checkouts, so that a busy moment weighs on each alike. Linux (the parts' CPU time is counted
from /proc); a process's CPU time reaches the figures when its parent waits for it.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

GRADE = """
import json
from grader.grade import grade

report = grade("homework")
print(json.dumps([sum(part.cpu_seconds for part in report.parts), report.total + report.extra_credit]))
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_check(checkout: Path) -> tuple[float, float, float]:
    """(CPU seconds of every process, the parts' own, the score) of one self-check in `checkout`."""
    before = children_cpu()
    run = subprocess.run([sys.executable, "-c", GRADE], cwd=checkout, capture_output=True, text=True, check=True)
    parts, score = json.loads(run.stdout.splitlines()[-1])
    return children_cpu() - before, parts, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    for checkout in options.checkouts:
        self_check(checkout)  # its checkpoints and cached outputs made, as after a student's first run
    runs = {checkout: [] for checkout in options.checkouts}
    for _ in range(options.runs):
        for checkout in options.checkouts:
            runs[checkout].append(self_check(checkout))
    first = statistics.median(total for total, _, _ in runs[options.checkouts[0]])
    print("| checkout | CPU time, all processes | the parts' own | the trusted side | its share | against the first |")
    print("|---|---|---|---|---|---|")
    for checkout, figures in runs.items():
        total = statistics.median(t for t, _, _ in figures)
        parts = statistics.median(p for _, p, _ in figures)
        scores = {s for _, _, s in figures}
        print(
            f"| {checkout} (score {', '.join(f'{s:g}' for s in scores)}) | {total:.1f} s | {parts:.1f} s | {total - parts:.1f} s"
            f" | {(total - parts) / total:.0%} | {total / first:.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
