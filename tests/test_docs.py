"""
Each limit and each part's points have one home, grader/parts.py (and the zip's, grader/submission.py);
the documents state them for their readers, and these tests hold every such statement to the code.
Among the documents, each fact a student needs has one home too: grader/README.md, the students' page
on the grader, which README.md and grader/STAFF.md (the staff's page, not in the starter) refer to.
"""

import re
from pathlib import Path

import pytest

from grader.parts import DRAW_SPREAD, LOSSY, MB, MEMORY_CAP, MIN_TRAINABLE, OUTPUT_CAP, PARTS, TIMEOUT, TRAINING, WALL_FACTOR, Kind
from grader.release import starter_text
from grader.submission import MAX_BYTES
from grader.suite import PUBLIC, PUBLIC_SCALES
from tests.helpers import REPO

README, GRADER_README, STAFF = ((REPO / path).read_text() for path in ("README.md", "grader/README.md", "grader/STAFF.md"))
DOCUMENTS = {"README.md": README, "grader/README.md": GRADER_README, "grader/STAFF.md": STAFF}
# What a student reads: the starter's README (the reference's, less its solution regions) and the grader's.
STUDENT = {"README.md": starter_text(README, "README.md"), "grader/README.md": GRADER_README}


def number(value: float) -> str:
    return f"{value:g}"


def test_the_limits_on_a_part_are_the_codes():
    text = GRADER_README
    assert f"CPU time ({TIMEOUT} s" in text or f"{TIMEOUT} s of CPU time" in text
    assert f"({number(MEMORY_CAP / 2**30)} GB)" in text or f"limit of {number(MEMORY_CAP / 2**30)} GB" in text
    assert f"more than {number(OUTPUT_CAP / MB)} MB" in text
    stated = re.findall(r"(\d+) s of wall-clock time|wall-clock limit of twice that, (\d+) s", text)
    assert stated and all(int(next(s for s in each if s)) == TIMEOUT * WALL_FACTOR for each in stated)


# Each fact, as the documents state it: it is stated once, on the students' page on the grader, and referred to elsewhere.
FACTS = {
    "the CPU time limit": rf"(?<![\d.]){TIMEOUT} s\b",
    "the wall-clock limit": rf"(?<![\d.]){TIMEOUT * WALL_FACTOR} s\b",
    "the memory limit": rf"(?<![\d.]){number(MEMORY_CAP / 2**30)} GB\b",
    "the output limit": rf"more than {number(OUTPUT_CAP / MB)} MB|{number(OUTPUT_CAP / MB)} MB of output",
    "CPU time is the same on a busy machine": r"\bbusy\b",
    "macOS and Windows: no memory cap": r"memory is not capped",
    "macOS and Windows: no CPU time": r"Linux only",
}


@pytest.mark.parametrize("fact", FACTS)
def test_each_fact_has_one_home(fact):
    stated = {name: len(re.findall(FACTS[fact], " ".join(text.split()))) for name, text in DOCUMENTS.items()}
    assert stated == {"README.md": 0, "grader/README.md": 1, "grader/STAFF.md": 0}, stated


def test_the_other_documents_refer_to_the_home():
    assert "[grader/README.md](grader/README.md)" in STUDENT["README.md"]
    assert "[README.md](README.md)" in STAFF


def test_the_self_check_is_not_called_the_grade():
    for name, text in STUDENT.items():
        words = " ".join(text.replace("**", "").split())
        assert "exactly as it will be graded" not in words, name
        assert "self-check, not your grade" in words and "hidden cases of the same" in words, name


# The grader's design, for staff: a student's pages explain what they need in plain words, without these.
STAFF_WORDS = ("Landlock", "seccomp", "ABI", "PSS", "decoy", "nonce", "SHAKE-256")


@pytest.mark.parametrize("name", STUDENT)
def test_a_students_pages_need_no_staff_words(name):
    used = [word for word in STAFF_WORDS if re.search(rf"\b{word}\b", STUDENT[name], 0 if word.isupper() else re.IGNORECASE)]
    assert not used, f"{name} uses {used}"
    assert "(staff)" not in STUDENT[name]


def slug(heading: str) -> str:
    """A Markdown heading's anchor, as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(path: Path, root: Path) -> list[str]:
    """The relative links of the Markdown file `path` whose file, or heading, is not under `root`."""
    broken = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", path.read_text()):
        if target.startswith(("http:", "https:")):
            continue
        linked = (path.parent / target).resolve() if target else path
        if not linked.is_file() or root.resolve() not in linked.parents:
            broken.append(target)
        elif anchor and anchor not in {slug(line.lstrip("#")) for line in linked.read_text().splitlines() if line.startswith("#")}:
            broken.append(f"{target}#{anchor}")
    return broken


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_link_reaches_its_file_and_heading(name):
    assert not broken_links(REPO / name, REPO)


def test_the_warning_and_counting_rules_are_the_codes():
    assert re.search(rf"within {DRAW_SPREAD * 100:.0f} ?% of its limit", GRADER_README)
    assert f"within {LOSSY} times its limits" in GRADER_README
    # The extra credit's output limits grow as the handout's 4-bit scheme's error does on the other public checkpoints.
    (part,) = [part for part in PARTS if part.extra_credit]
    for checkpoint in PUBLIC.checkpoints[1:]:
        stated = f"{part.max_diff * PUBLIC_SCALES[part.scheme, checkpoint][0]:.3g} on the public {checkpoint.family.replace('_', '-')}"
        assert stated in " ".join(GRADER_README.split()), stated


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
    assert f"over {number(MAX_BYTES / MB)} MB" in " ".join(GRADER_README.split())
