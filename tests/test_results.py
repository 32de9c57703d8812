"""grader/results.py: a part's score from its cases, and a submission's total apart from its extra credit."""

from grader.parts import PARTS, Kind
from grader.results import Case, PartResult, Report

BY_NAME = {part.name: part for part in PARTS}


def test_extra_credit_is_all_or_nothing_and_counted_apart():
    half = PartResult(BY_NAME["half_precision"], [Case("output", Kind.OUTPUT, 10, 10), Case("memory", Kind.MEMORY, 10, 0)])
    partial = PartResult(BY_NAME["lower_precision"], [Case("output", Kind.OUTPUT, 2, 2), Case("memory", Kind.MEMORY, 3, 0)])
    full = PartResult(BY_NAME["lower_precision"], [Case("output", Kind.OUTPUT, 2, 2), Case("memory", Kind.MEMORY, 3, 3)])
    assert half.score == 10 and partial.score == 0 and full.score == 5
    assert (Report("s", [half, partial]).total, Report("s", [half, full]).extra_credit) == (10, 5)
