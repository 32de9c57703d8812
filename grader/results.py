"""
What grading a submission comes to: each case's points and why, each part's, and the submission's
outcome. Plain data, made by grade.py and shown by report.py.
"""

import enum
from dataclasses import dataclass, field
from pathlib import PurePath

from .parts import Kind, Part
from .protocol import Stop


class Outcome(enum.Enum):
    """What became of a submission as a whole."""

    GRADED = "graded"  # every part has its score (a part whose process stopped scores 0, and says why)
    INVALID_ZIP = "invalid zip"  # the student's upload cannot be graded: 0 points
    GRADER_FAILED = "grader failed"  # the grader itself could not run: no score to give, rerun instead


@dataclass
class Case:
    name: str
    kind: Kind
    max_score: float
    score: float = 0.0
    message: str = "not run"


@dataclass
class PartResult:
    part: Part
    cases: list[Case]
    stop: Stop | None = None  # why its processes stopped early, if they did
    reason: str = ""
    output: str = ""  # what the part printed (its tail)
    seconds: float = 0.0
    cpu_seconds: float | None = (
        0.0  # what its processes used, as the kernel counts it: what the time limit is about (None: not counted here)
    )
    warnings: list[str] = field(default_factory=list)  # what may cost points elsewhere, though it cost none here
    figures: dict = field(default_factory=dict)  # counted here, for the leaderboard: memory, mean_diff, max_diff
    protections: dict = field(default_factory=dict)  # what the kernel enforced on its processes (part_runtime.confine)

    @property
    def score(self) -> float:
        total = sum(case.score for case in self.cases)
        if self.part.extra_credit and total < self.part.max_score:
            return 0.0
        return round(total, 2)


@dataclass
class Report:
    submission: str  # what was graded: its path, or the name the student gave it
    parts: list[PartResult]
    seconds: float = 0.0
    sandbox: dict = field(default_factory=dict)  # protection -> what it achieved, or why it is unavailable
    notes: list[str] = field(default_factory=list)  # for the staff: what went wrong on the grading machine, and what to do

    @property
    def name(self) -> str:
        """The submission as the student named it (their zip, their folder), never where this machine put it."""
        return PurePath(self.submission).name

    @property
    def total(self) -> float:
        return round(sum(p.score for p in self.parts if not p.part.extra_credit), 2)

    @property
    def extra_credit(self) -> float:
        return round(sum(p.score for p in self.parts if p.part.extra_credit), 2)
