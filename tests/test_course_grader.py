"""
The course's own grader reaches the parts as attributes of the package and measures them its own way
(benchmarks/course_grader.py drives them as it does). A change that would break that grader fails here.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.parts import PARTS

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def course_folder(tmp_path_factory, checkpoint_path):
    """A copy of the package with the checkpoint beside it, as the course grader lays them out."""
    folder = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO / "homework", folder / "homework", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(checkpoint_path, folder / "bignet.pth")
    return folder


def drive(folder: Path, part: str) -> dict:
    """The part as the course grader sees it: a fresh interpreter in `folder`, `import homework`, nothing imported before."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.course_grader", "--drive", part, "bignet.pth"],
        cwd=folder, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("part", PARTS, ids=lambda part: part.name)
def test_the_course_grader_sees_every_part(course_folder, part):
    figures = drive(course_folder, part.name)
    assert figures["max_diff"] <= part.max_diff
    assert part.mean_diff is None or figures["mean_diff"] <= part.mean_diff
    # Its memory figure is the profiler's, around a deepcopy: the model's own tensors, nothing more.
    assert figures["memory"] <= part.memory_limit
    if "training" in part.points:  # a training loop over model.parameters(): the adapters learn
        before, after = figures["accuracy"]
        assert after >= max(0.8, before + 0.2)
