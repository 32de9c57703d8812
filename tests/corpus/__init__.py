"""
The corpus of honest solutions (honest/<style>/): each style is a few of the homework's part files
as a student in that style would write them; the parts it does not provide are the reference's.
tests/test_corpus.py grades each style end to end; benchmarks/hidden_draws.py measures them on hidden draws.
"""

import shutil
from pathlib import Path

from grader.release import strip_markers

HONEST = Path(__file__).resolve().parent / "honest"
REFERENCE = HONEST.parents[2] / "homework"
STYLES = tuple(sorted(path.name for path in HONEST.iterdir() if path.is_dir() and any(path.glob("*.py"))))


def style_parts(style: str) -> tuple[str, ...]:
    """The part files `style` provides, by module name."""
    return tuple(sorted(path.stem for path in (HONEST / style).glob("*.py")))


def reference_package(folder: Path) -> Path:
    """A homework package in `folder`: the reference with its solution markers taken out, as a student's would be."""
    package = folder / "homework"
    shutil.copytree(REFERENCE, package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in package.glob("*.py"):
        path.write_text(strip_markers(path.read_text()))
    return package


def honest_package(style: str, folder: Path) -> Path:
    """reference_package, with `style`'s files over it."""
    package = reference_package(folder)
    for path in (HONEST / style).glob("*.py"):
        shutil.copy(path, package / path.name)
    return package
