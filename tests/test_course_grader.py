"""
The course's own grader reaches the parts as attributes of the package and measures them its own way
(tests/course_grader.py drives them as it does). A change that would break that grader fails here.
"""

import shutil

import pytest

from grader.parts import PARTS
from tests.course_grader import drive_in_fresh_interpreter, refusals
from tests.helpers import REPO


@pytest.fixture(scope="module")
def course_folder(tmp_path_factory, checkpoint_path):
    """A copy of the package with the checkpoint beside it, as the course grader lays them out."""
    folder = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO / "homework", folder / "homework", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(checkpoint_path, folder / "bignet.pth")
    return folder


@pytest.mark.parametrize("part", PARTS, ids=lambda part: part.name)
def test_the_course_grader_sees_every_part(course_folder, part):
    figures = drive_in_fresh_interpreter(course_folder, part.name)
    # Its memory figure is the profiler's, around a deepcopy: the model's own tensors, nothing more.
    assert refusals(part, figures) == []
