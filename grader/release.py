"""
The student starter, made from this reference solution:

    python -m grader.release OUT_DIR

The parts students write are marked in the sources, one region per marker pair:

    def forward(self, x):
        # BEGIN SOLUTION: a hint for what goes here
        ...the reference code...
        # END SOLUTION

Regions are in homework/*.py and README.md. In the starter, a region inside a function becomes
`raise NotImplementedError("<hint>")`; a region at module level, where raising would break every
import, becomes the comment `# TODO: <hint>`. Markdown uses `<!-- BEGIN SOLUTION: text -->` ... `<!-- END SOLUTION -->`, and the region becomes
the text (nothing, without one). Every other line is copied byte for byte.
"""

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What students get: the homework, the grader, the tools and the docs; not the project's own tests,
# CI or benchmarks, nor grader/STAFF.md (hidden cases, batch grading, Gradescope, the grader's design:
# grader/README.md is the students' page), and never a generated checkpoint or cache.
RELEASED = (
    "README.md",
    "requirements.txt",
    ".gitignore",
    "bundle.py",
    "checkpoints/README.md",
    "homework/*.py",
    "homework/checkpoint/*.py",
    "homework/optim/*.py",
    "grader/*.py",
    "grader/README.md",
)
MARKED = ("README.md", "homework/*.py")  # where the regions are; the rest is copied as it is
BEGIN = re.compile(
    r"^(?P<indent>[ \t]*)(?:# BEGIN SOLUTION(?:: (?P<hint>.+))?|(?P<markdown><!-- BEGIN SOLUTION(?:: (?P<text>.+?))? -->))[ \t]*$"
)
END = re.compile(r"^[ \t]*(?:# END SOLUTION|<!-- END SOLUTION -->)[ \t]*$")
MALFORMED = re.compile(r"^[ \t]*(?:#|<!--)[ \t]*(?:BEGIN|END)[ \t]*SOLUTION", re.IGNORECASE)  # a near miss


class MarkerError(ValueError):
    """A marker out of place: a region not closed, closed twice, nested, misspelled, or without its hint."""


def regions(text: str, name: str = "text") -> list[tuple[int, int, re.Match]]:
    """The marked regions of `text`: (line of BEGIN, line of END, BEGIN's match), lines counted from 0."""
    found, begin = [], None
    for number, line in enumerate(text.splitlines()):
        if match := BEGIN.match(line):
            if begin is not None:
                raise MarkerError(f"{name}, line {number + 1}: BEGIN SOLUTION inside the region opened on line {begin[0] + 1}")
            begin = (number, match)
        elif END.match(line):
            if begin is None:
                raise MarkerError(f"{name}, line {number + 1}: END SOLUTION without a BEGIN SOLUTION")
            found.append((begin[0], number, begin[1]))
            begin = None
        elif MALFORMED.match(line):
            raise MarkerError(f"{name}, line {number + 1}: a malformed marker: {line.strip()}")
    if begin is not None:
        raise MarkerError(f"{name}, line {begin[0] + 1}: BEGIN SOLUTION is never closed")
    return found


def starter_text(text: str, name: str = "text") -> str:
    """`text` with every marked region replaced by what the student gets instead (see the module docstring)."""
    lines = text.splitlines(keepends=True)
    for first, last, match in reversed(regions(text, name)):
        indent, hint = match["indent"], match["hint"]
        if match["markdown"]:
            replacement = [match["text"] + "\n"] if match["text"] else []
        elif not hint:
            raise MarkerError(f"{name}, line {first + 1}: a Python region needs a hint: # BEGIN SOLUTION: <hint>")
        elif indent:
            replacement = [f"{indent}raise NotImplementedError({json.dumps(hint, ensure_ascii=False)})\n"]
        else:
            replacement = [f"# TODO: {hint}\n"]
        lines[first : last + 1] = replacement
    return "".join(lines)


def strip_markers(text: str, name: str = "text") -> str:
    """`text` with the solution kept and only the marker lines taken out."""
    lines = text.splitlines(keepends=True)
    for first, last, _ in reversed(regions(text, name)):
        del lines[last], lines[first]
    return "".join(lines)


def files(patterns: tuple[str, ...], repo: Path = REPO) -> list[Path]:
    return sorted(path for pattern in patterns for path in repo.glob(pattern))


def release(out_dir: str | Path, repo: Path = REPO) -> list[Path]:
    """Write the starter to `out_dir` (new or empty); returns the files written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not an empty folder; the starter goes into a new one")
    contents = {path: path.read_bytes() for path in files(RELEASED, repo)}
    # Every file is checked before any is written, so that a bad marker leaves no half-made starter.
    for path in files(MARKED, repo):
        contents[path] = starter_text(contents[path].decode(), str(path.relative_to(repo))).encode()
    for source, content in contents.items():
        target = out_dir / source.relative_to(repo)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return [out_dir / source.relative_to(repo) for source in contents]


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0].startswith("-"):
        raise SystemExit("usage: python -m grader.release OUT_DIR   (writes the student starter into a new folder)")
    try:
        written = release(argv[0])
    except (FileExistsError, MarkerError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"Wrote the student starter, {len(written)} files, to {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
