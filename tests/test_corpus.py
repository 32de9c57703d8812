"""
The corpus of honest solutions (tests/corpus/honest): every style a student really writes scores full
marks on the public cases, graded end to end (but one: SHORT), and is warned where hidden cases
could go otherwise. benchmarks/honest_corpus.py grades the same styles on hidden draws and as the course's grader
does; benchmarks/hidden_draws.py measures how much hidden draws move each figure.
"""

import pytest

from grader.grade import grade
from grader.parts import PARTS
from grader.suite import PUBLIC, Suite
from tests.corpus import STYLES, honest_package, style_parts

POINTS = {part.name: part.max_score for part in PARTS}
# What the self-check warns each style about (every other style gets no warning).
WARNED = {
    "float16_compute": {"half_precision": "of its matrix products are in float16", "lora": "of its matrix products are in float16"},
    "simple_3bit": {
        "lower_precision": "output [checkpoint 3 heavy_tailed]: max abs diff 0.526 is within 30% of its limit 0.5, as much as hidden cases of this weight family vary: one may pass"
    },
}
# The one honest style short of full marks, and why: absmax 3-bit codes in groups of 32 miss the extra credit's
# max diff on the public heavy-tailed checkpoint by 5 %, and on 2 of 10 hidden draws (benchmarks/hidden_draws.py):
# warned that a hidden case may go either way.
SHORT = {"simple_3bit": {"lower_precision": (0, "output [checkpoint 3 heavy_tailed]")}}


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
    short = SHORT.get(style, {})
    assert {r.part.name: r.score for r in report.parts} == {name: short.get(name, (POINTS[name],))[0] for name in parts}, [
        r.reason for r in report.parts
    ]
    for result in report.parts:
        if result.part.name in short:
            (failed,) = [case.name for case in result.cases if case.score < case.max_score]
            assert failed.endswith(short[result.part.name][1]), failed
    warned = {r.part.name: " ".join(r.warnings) for r in report.parts if r.warnings}
    assert warned.keys() == WARNED.get(style, {}).keys(), warned
    for part, words in WARNED.get(style, {}).items():
        assert words in warned[part]
