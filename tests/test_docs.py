"""
Each limit and each part's points have one home, grader/parts.py (and the zip's, grader/submission.py);
the documents state them for their readers, and these tests hold every such statement to the code.
"""

import re

import pytest

from grader.parts import MB, MEMORY_CAP, MIN_TRAINABLE, OUTPUT_CAP, PARTS, TIMEOUT, TRAINING, WALL_FACTOR, Kind
from grader.submission import MAX_BYTES
from tests.helpers import REPO

README, GRADER_README = (REPO / "README.md").read_text(), (REPO / "grader" / "README.md").read_text()


def number(value: float) -> str:
    return f"{value:g}"


@pytest.mark.parametrize("text", [README, GRADER_README], ids=["README.md", "grader/README.md"])
def test_the_limits_on_a_part_are_the_codes(text):
    assert f"CPU time ({TIMEOUT} s" in text or f"{TIMEOUT} s of CPU time" in text
    assert f"({number(MEMORY_CAP / 2**30)} GB)" in text or f"limit of {number(MEMORY_CAP / 2**30)} GB" in text
    assert f"more than {number(OUTPUT_CAP / MB)} MB" in text
    for stated in re.findall(r"(\d+) s of wall-clock time|wall-clock limit of twice that, (\d+) s", text):
        assert int(next(s for s in stated if s)) == TIMEOUT * WALL_FACTOR


def test_grader_readmes_table_of_points_and_thresholds_is_the_codes():
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in GRADER_README.splitlines()
        if re.match(r"\|[^|]*\| (output|memory|adapters|training) \| \d", line)
    ]
    table, title = {}, None
    for row in rows:
        title = row[0] or title
        table[title, row[1]] = (int(row[2]), row[3])
    assert len({title for title, _ in table}) == len(PARTS)
    for part in PARTS:
        title = next(t for t, _ in table if t.startswith(part.title.split(" (")[0]))
        assert {kind: table[title, kind.value][0] for kind in part.points} == {kind: points for kind, points in part.points.items()}
        assert f"model ≤ {number(part.memory_limit / MB)} MB" in table[title, Kind.MEMORY.value][1]
        output = table[title, Kind.OUTPUT.value][1]
        assert output.startswith("as ") or f"≤ {number(part.max_diff)}" in output
        if part.mean_diff is not None and not output.startswith("as "):
            assert f"mean abs diff ≤ {number(part.mean_diff)}" in output
        if part.max_trainable:
            assert f"fewer than {number(part.max_trainable / 1e6)} M" in table[title, Kind.ADAPTERS.value][1]
    assert f"at least {MIN_TRAINABLE:,}" in GRADER_README and f"of {TRAINING.steps} steps" in GRADER_README
    assert f"reaches {TRAINING.target:.0%}" in GRADER_README


def test_the_zip_limit_is_the_codes():
    assert f"over {number(MAX_BYTES / MB)} MB" in GRADER_README
