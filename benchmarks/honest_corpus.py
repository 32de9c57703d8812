"""
The corpus of honest solutions (tests/corpus/honest), graded three ways, part by part: this grader on
the public cases and on a hidden suite of the size staff make (`python -m grader hidden`: 3
checkpoints, 2 input batches, 2 training runs), and the course's own grader's rules
(tests/course_grader.py). With each, the CPU seconds the part's processes used.
Then the float16-compute style once more on the hidden suite, with a CPU burner on every core (two per core).
A benchmark, not a test: about 12 minutes on 2 cores.

    python -m benchmarks.honest_corpus                    # every style
    python -m benchmarks.honest_corpus rank_8 simple_3bit  # some
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fire

from grader.grade import grade
from grader.parts import PARTS
from grader.suite import load_suite, make_hidden
from homework.bignet import default_checkpoint
from tests.corpus import STYLES, honest_package, style_parts
from tests.course_grader import drive_in_fresh_interpreter, refusals

BY_NAME = {part.name: part for part in PARTS}


def course_grader(package: Path, name: str) -> str:
    """The course's grader's verdict on one part: full marks, or what it refuses."""
    folder = package.parent
    shutil.copy(default_checkpoint(), folder / "bignet.pth")
    why = refusals(BY_NAME[name], drive_in_fresh_interpreter(folder, name))
    return f"{BY_NAME[name].max_score:g}" if not why else f"0 ({'; '.join(why)})"


def busy(command):
    """Run `command()` with two CPU burners per core, each in a session of its own as separate programs are (the
    kernel's autogroups share the CPU between sessions: burners in the caller's session would load it less)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True) for _ in range(2 * os.cpu_count())]
    try:
        return command()
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def main(*styles: str) -> None:
    """Every style, or those named."""
    styles = styles or STYLES
    with tempfile.TemporaryDirectory() as tmp:
        hidden = make_hidden(Path(tmp) / "hidden.json")
        suite = load_suite(hidden)
        print("| style | part | public (CPU s) | hidden (CPU s) | course's grader | warnings |")
        print("|---|---|---|---|---|---|")
        for style in styles:
            package = honest_package(style, Path(tmp) / style)
            parts = style_parts(style)
            public = {r.part.name: r for r in grade(package, parts=parts).parts}
            secret = {r.part.name: r for r in grade(package, suite=suite, hidden=hidden, parts=parts).parts}
            for name in parts:
                p, s = public[name], secret[name]
                print(
                    f"| {style} | {name} | {p.score:g} ({p.cpu_seconds:.0f}) | {s.score:g} ({s.cpu_seconds:.0f}) | {course_grader(package, name)} | {'; '.join(p.warnings)} |",
                    flush=True,
                )
        package = honest_package("float16_compute", Path(tmp) / "busy")
        results = busy(lambda: grade(package, suite=suite, hidden=hidden, parts=style_parts("float16_compute")))
        for r in results.parts:
            print(
                f"float16_compute {r.part.name}, hidden suite, every core busy: {r.score:g} / {r.part.max_score:g}, {r.seconds:.0f} s wall, {r.cpu_seconds:.0f} s CPU {r.reason}"
            )


if __name__ == "__main__":
    fire.Fire(main)
