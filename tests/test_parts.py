"""grader/parts.py: one table of the parts, and what it promises the handout."""

from grader.parts import PART_NAMES, PARTS, Kind, mb
from homework.models import MODEL_NAMES


def test_every_part_is_a_homework_model_and_every_model_but_bignet_is_graded():
    assert set(PART_NAMES) == set(MODEL_NAMES) - {"bignet"}
    assert all(part.scheme in PART_NAMES for part in PARTS)


def test_the_handouts_points_100_and_5_of_extra_credit():
    assert sum(part.max_score for part in PARTS if not part.extra_credit) == 100
    assert sum(part.max_score for part in PARTS if part.extra_credit) == 5


def test_every_part_checks_its_output_and_its_memory_and_only_adapters_train():
    for part in PARTS:
        assert all(isinstance(kind, Kind) for kind in part.points) and {Kind.OUTPUT, Kind.MEMORY} <= part.points.keys()
        assert (Kind.TRAINING in part.points) == (Kind.ADAPTERS in part.points) == (part.max_trainable is not None)


def test_sizes_are_in_the_handouts_mb():
    assert mb(36.07 * 2**20) == "36.07 MB" and mb(20 * 2**20, 1) == "20.0 MB"
