import os
from pathlib import Path

import pytest
import torch

import grader.grade
from grader import launch, part_process
from homework import bignet
from homework.data import random_inputs


@pytest.fixture(scope="session")
def checkpoint_path():
    """The default checkpoint, created on first use like the tools do."""
    return bignet.default_checkpoint()


@pytest.fixture(scope="session")
def inputs():
    return random_inputs(1024, seed=0)


@pytest.fixture(scope="session")
def reference_output(checkpoint_path, inputs):
    with torch.no_grad():
        return bignet.load(checkpoint_path)(inputs)


@pytest.fixture
def as_elsewhere(monkeypatch):
    """macOS's and Windows' way, on Linux: an interpreter per part's process (requests on its standard input, answers on its standard output), and no /proc."""
    monkeypatch.setattr(grader.grade, "launcher", launch.Interpreters)
    monkeypatch.setattr(part_process, "PROC", Path("/nonexistent"))


@pytest.fixture(scope="session")
def shared_launcher():
    """One template for every grading run of the corpora (grade's `shared`): its start, 2 s of CPU time, once."""
    with launch.shared_launcher() as start:
        yield start


@pytest.fixture
def corpus_launcher(request):
    """
    What the corpora are graded with (grade's `shared`): the Linux way, one template for them all; or, with
    GRADE_AS_ELSEWHERE=1 in the environment, as_elsewhere, each run starting its own interpreters (None).
    """
    if os.environ.get("GRADE_AS_ELSEWHERE") == "1":
        request.getfixturevalue("as_elsewhere")
        return None
    return request.getfixturevalue("shared_launcher")
