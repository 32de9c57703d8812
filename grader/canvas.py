"""
Canvas in and out, for batch mode.

In: the folder that Canvas's "Download Submissions" makes. Canvas renames each file it holds to
`{name}_{LATE_}{user id}_{file id}_{original name}`: the name is the student's sortable name
lowercased with everything but letters and digits dropped ("Doe, Jane" -> "doejane"), LATE marks a
late submission, and the original name gets `-1`, `-2`... when Canvas already held a file of that
name (a resubmission). Per student, the newest zip is graded: Canvas's file ids only grow. Text
entries and links (`{name}_{LATE_}{user id}_text.html`) and loose files are not graded: batch mode
lists the students who sent no zip.

Out: the gradebook CSV Canvas exports (Grades > Export): `Student, ID, SIS User ID, SIS Login ID,
Section` (the SIS columns only where the course has them), then one `Assignment name (id)` column per
assignment and read-only totals. Canvas imports a file of the same form, matching students by ID, and
takes any column it does not know for a new assignment; so what is written is the student columns and
the one assignment column, and the rows Canvas itself writes above the students (Points Possible).
"""

import csv
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .parts import GraderError

# A file: name_LATE_user_file_original; a text entry or a link: name_LATE_user_text.html or _link.html.
DOWNLOAD_NAME = re.compile(r"^(?P<name>.*?)(?P<late>_LATE)?_(?P<user>\d+)_(?:(?P<file>\d+)_(?P<original>.+)|text\.html|link\.html)$")
STUDENT_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Integration ID", "Root Account", "Section")
ID_COLUMNS = ("ID", "SIS User ID", "SIS Login ID")  # what a batch row's id may be: Canvas's user id, or the EID a zip is named after
ASSIGNMENT = re.compile(r"^(?P<title>.*) \((?P<id>\d+)\)$")
NOT_GRADED = {"grader failed"}  # results.Outcome.GRADER_FAILED: no score to give, rerun instead


@dataclass(frozen=True)
class Submission:
    """One student's file to grade: `id` names its feedback and its CSV row."""

    id: str
    path: Path
    name: str = ""  # the student's name, as Canvas wrote it
    late: bool = False


def submissions(folder: Path) -> list[Submission]:
    """Per student, the zip to grade, sorted by id: Canvas's download (the newest zip each) or plain ID.zip files."""
    newest: dict[str, tuple[int, Submission]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() != ".zip":
            continue
        match = DOWNLOAD_NAME.match(path.name)
        if match:
            order, found = int(match["file"]), Submission(match["user"], path, match["name"], bool(match["late"]))
        else:
            order, found = 0, Submission(path.stem, path)
        if found.id not in newest or order > newest[found.id][0]:
            newest[found.id] = (order, found)
    return [newest[key][1] for key in sorted(newest)]


def without_zip(folder: Path, graded: list[Submission]) -> list[str]:
    """The files of students who submitted on Canvas but no zip (code pasted as text, loose .py files): they are not graded."""
    ids = {s.id for s in graded}
    return sorted(path.name for path in folder.iterdir() if (m := DOWNLOAD_NAME.match(path.name)) and m["user"] not in ids)


def fill_gradebook(
    results: str | Path, gradebook: str | Path, assignment: str, out: str | Path, missing_zero: bool = False, force: bool = False
) -> dict:
    """
    Write `out`: `gradebook` (a Canvas export) with batch mode's scores in `assignment`'s column, for
    Canvas to import. Students without a submission keep what their cell holds (0 if empty, with
    `missing_zero`); a grade already there that differs is kept unless `force`. What did not fit
    goes to stderr. Returns the counts.
    """
    out = Path(out)
    if out.exists() and not force:
        raise GraderError(f"{out} exists: give --force to replace it")
    header, rows = read_csv(gradebook)
    if not header[:2] == ["Student", "ID"] or "Section" not in header:
        raise GraderError(f"{gradebook} is not a Canvas gradebook export: it should start with the columns Student, ID, ..., Section")
    column = assignment_column(header, assignment, gradebook)
    kept = [k for k, name in enumerate(header) if name in STUDENT_COLUMNS] + [column]
    students = [row for row in rows if is_student(row)]

    result_header, result_rows = read_csv(results)
    if not {"id", "status", "score"} <= set(result_header):
        raise GraderError(f"{results} is not a CSV from batch mode: it needs the columns id, status and score")
    owners: dict[str, set[int]] = {}  # an ID, SIS User ID or SIS Login ID (lowercased) -> the students who have it
    for k, student in enumerate(students):
        for c in (header.index(name) for name in ID_COLUMNS if name in header):
            owners.setdefault(student[c].lower(), set()).add(k)
    scores, unmatched = {}, []
    for row in result_rows:
        result = dict(zip(result_header, row))
        matches = sorted(owners.get(result["id"].lower(), ()))
        if len(matches) != 1:
            unmatched.append(
                f"{result['id']} ({'no student' if not matches else f'{len(matches)} students'} with that ID, SIS User ID or SIS Login ID)"
            )
        elif result["status"] in NOT_GRADED:
            unmatched.append(f"{result['id']} (not graded: {result['reason']}; fix and rerun batch mode with --force)")
        else:
            scores[matches[0]] = f"{float(result['score']):g}"

    kept_grades, missing = [], 0
    for k, student in enumerate(students):
        current = student[column].strip()
        if k not in scores:
            missing += 1
            if missing_zero and not current:
                student[column] = "0"
        elif current and current != scores[k] and not force:
            kept_grades.append(f"{student[0]} ({current}, graded {scores[k]})")
        else:
            student[column] = scores[k]

    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([header[k] for k in kept])
        writer.writerows([row[k] if k < len(row) else "" for k in kept] for row in rows)
    counts = {"filled": len(scores) - len(kept_grades), "missing": missing, "unmatched": len(unmatched), "kept": len(kept_grades)}
    print(
        f"{out}: grades written in {header[column]!r}: {counts['filled']}; students without a submission ({'given 0' if missing_zero else 'left as they were'}): {missing}",
        file=sys.stderr,
    )
    if unmatched:
        print(f"{len(unmatched)} results not written: " + "; ".join(unmatched), file=sys.stderr)
    if kept_grades:
        print(
            f"{len(kept_grades)} grades already in the gradebook differ and were kept (--force replaces them): " + "; ".join(kept_grades),
            file=sys.stderr,
        )
    return counts


def read_csv(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """A CSV's header and rows; Canvas may write a byte-order mark, and semicolons where commas are decimal points."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise GraderError(f"cannot read {path}: {e}") from None
    first = text.partition("\n")[0]
    # A file object, not splitlines(): a quoted field may hold a line break (a reason, a name).
    lines = list(csv.reader(io.StringIO(text, newline=""), delimiter=";" if first.count(";") > first.count(",") else ","))
    if not lines:
        raise GraderError(f"{path} is empty")
    return lines[0], lines[1:]


def assignment_column(header: list[str], wanted: str, gradebook) -> int:
    """The one assignment column whose Canvas id is `wanted`, or whose name contains it."""
    assignments = {k: match for k, name in enumerate(header) if (match := ASSIGNMENT.match(name))}
    found = [k for k, m in assignments.items() if wanted == m["id"] or wanted.lower() in m["title"].lower()]
    if len(found) != 1:
        names = ", ".join(repr(header[k]) for k in (found or assignments))
        raise GraderError(
            f"{'no' if not found else len(found)} assignments of {gradebook} match {wanted!r}: {names}; give its name or its id"
        )
    return found[0]


def is_student(row: list[str]) -> bool:
    """Not one of the rows Canvas writes above the students: Points Possible, and a blank-named posting-policy row."""
    return bool(row) and bool(row[0].strip()) and "Points Possible" not in row[0]
