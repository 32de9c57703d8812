"""
The corpus of honest solutions (tests/corpus/honest): every style a student really writes scores full
marks on the public cases, graded end to end, with no warning. benchmarks/honest_corpus.py grades the same styles on hidden draws and as the course's grader
does; benchmarks/hidden_draws.py measures how much hidden draws move each figure.
"""

import pytest

from grader.grade import grade
from grader.parts import PARTS
from grader.suite import PUBLIC, Suite
from tests.corpus import STYLES, honest_package, style_parts

POINTS = {part.name: part.max_score for part in PARTS}
# Where each style's matrix products cost the most, by part, as the part's process names it (for a time warning,
# which no style gets: each takes far less than half its CPU time).
SLOWEST = {"float16_compute": {"half_precision": "homework/half_precision.py, line 24", "lora": "homework/half_precision.py, line 24"}}


# Four styles differ from linear_adapters_named only in their adapters' rank and initialization: they are
# graded by benchmarks.honest_corpus (with every other style, on hidden suites too), not here, to keep CI short.
BENCHMARK_ONLY = ("a_zero_b_random", "kaiming_normal_init", "odd_rank_13", "rank_8")


@pytest.mark.parametrize("style", [style for style in STYLES if style not in BENCHMARK_ONLY])
def test_an_honest_style_gets_full_marks(style, tmp_path, corpus_launcher):
    parts = style_parts(style)
    # A style of adapters alone computes its base's output at load: the default checkpoint is enough for it,
    # which keeps CI within minutes (benchmarks.honest_corpus grades every style on hidden suites too).
    suite = PUBLIC if set(parts) - {"lora", "qlora"} else Suite()
    report = grade(honest_package(style, tmp_path), suite=suite, parts=parts, shared=corpus_launcher)
    assert {r.part.name: r.score for r in report.parts} == {name: POINTS[name] for name in parts}, [r.reason for r in report.parts]
    assert not [r.warnings for r in report.parts if r.warnings]
    for result in report.parts:
        if result.part.name in SLOWEST.get(style, {}):
            assert result.figures["slowest"] == SLOWEST[style][result.part.name]
