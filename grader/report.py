"""
A grading report as text (a per-part table and each failed case; -v adds the passed ones, -vv what
each part printed) and as Gradescope's results.json
(https://gradescope-autograders.readthedocs.io/en/latest/specs/). What a student may receive names
their submission as they named it and nothing of the machine that graded it: the Sandbox line and
the notes are for staff alone (staff_notes, and extra_data).
"""

import json
from pathlib import Path

from .parts import MB
from .protocol import one_line
from .results import Outcome, PartResult, Report

COLOURS = {"full": "\033[32m", "partial": "\033[33m", "none": "\033[31m", "dim": "\033[2m"}
RESET = "\033[0m"
PRINTED_LINES = 40  # of each part's output, with -vv
# What a report calls the submission where the file graded is a copy of the student's (batch mode), from the
# environment: a command line, which any process can read, names no student.
NAME_ENV = "GRADER_SUBMISSION_NAME"


def render(report: Report, verbose: int = 0, colour: bool = False) -> str:
    """What a student may read: a line per part and under it each failed case (-v: every case; -vv: what the part printed)."""
    # One column for the scores, after the longest title or case name (hidden cases have long names).
    width = max(len(text) for p in report.parts for text in (p.part.title, *(f"    {case.name}" for case in p.cases))) + 2
    lines = [f"Grading {report.name}", ""]
    for result in report.parts:
        note = result.reason if result.stop else ""
        if verbose:
            cpu = "CPU time n/a (Linux only)" if result.cpu_seconds is None else f"{result.cpu_seconds:.0f} s of CPU time"
            note += f" ({result.seconds:.0f} s, {cpu})"
        lines.append(
            f"{result.part.title:<{width}}"
            + paint(f"{result.score:>6g} / {result.part.max_score:g}", level(result.score, result.part.max_score), colour)
            + f"  {note}".rstrip()
        )
        lines += [paint(f"    warning: {warning}", "partial", colour) for warning in result.warnings]
        if not result.stop:  # a part stopped as a whole has its one reason
            failed = [case for case in result.cases if case.score < case.max_score]
            for case in result.cases if verbose else failed:
                lines.append(
                    f"    {case.name:<{width - 4}}"
                    + paint(f"{case.score:>6.4g} / {case.max_score:.4g}", level(case.score, case.max_score), colour)
                    + f"  {case.message}"
                )
        if verbose > 1 and result.output.strip():
            printed = result.output.rstrip().splitlines()[-PRINTED_LINES:]
            lines += [paint(f"    | {line}", "dim", colour) for line in printed]
    max_total = sum(p.part.max_score for p in report.parts if not p.part.extra_credit)
    extra = [p for p in report.parts if p.part.extra_credit]
    lines.append("")
    total = f"{'Total':<{width}}" + paint(f"{report.total:>6g} / {max_total:g}", level(report.total, max_total), colour)
    if extra:
        total += f"  + {report.extra_credit:g} / {sum(p.part.max_score for p in extra):g} extra credit"
    lines.append(total + f"  ({report.seconds:.0f} s)")
    return "\n".join(lines)


def staff_notes(report: Report, colour: bool = False) -> str:
    """For staff only: what the grading machine's kernel enforced (the Sandbox line, which names where its Python is) and what went wrong on it."""
    lines = [paint(f"Note: {note}", "partial", colour) for note in report.notes]
    if report.sandbox:
        lines.insert(0, paint("Sandbox: " + "; ".join(f"{name}: {what}" for name, what in report.sandbox.items()), "dim", colour))
    return "\n".join(lines)


def paint(text: str, how: str, colour: bool) -> str:
    return f"{COLOURS[how]}{text}{RESET}" if colour else text


def level(score: float, max_score: float) -> str:
    return "full" if score >= max_score else "partial" if score > 0 else "none"


def gradescope(report: Report, visibility: str = "visible") -> dict:
    """results.json: one test per case (shown as `visibility` says), the total (extra credit included) as the score, and the leaderboard."""
    tests = [
        {
            "name": f"{result.part.title}: {case.name}",
            "score": case.score if case_counts(result) else 0.0,
            "max_score": case.max_score,
            "output": case.message,
            "visibility": visibility,
        }
        for result in report.parts
        for case in result.cases
    ]
    results = {
        "score": round(report.total + report.extra_credit, 2),
        "execution_time": round(report.seconds, 1),
        "tests": tests,
        "extra_data": summary(report),
    }
    extra = [p for p in report.parts if p.part.extra_credit and {"memory", "mean_diff", "max_diff"} <= p.figures.keys()]
    if extra:
        figures = extra[0].figures
        results["leaderboard"] = [
            {"name": "Extra credit: memory (MB)", "value": round(figures["memory"] / MB, 3), "order": "asc"},
            {"name": "Extra credit: mean abs diff", "value": round(figures["mean_diff"], 5), "order": "asc"},
            {"name": "Extra credit: max abs diff", "value": round(figures["max_diff"], 5), "order": "asc"},
        ]
    return results


def self_check_tests(report: Report) -> list[dict]:
    """The public case's results as tests worth nothing, shown at once: proof that the upload runs, while the points stay on the hidden cases."""
    return [
        {
            "name": f"Self-check (public case), {result.part.title}: {case.name}",
            "status": "passed" if case_counts(result) and case.score >= case.max_score else "failed",
            "output": f"{case.score if case_counts(result) else 0:g} / {case.max_score:g} on the public case: {case.message}",
            "visibility": "visible",
        }
        for result in report.parts
        for case in result.cases
    ]


def summary(report: Report) -> dict:
    """What batch mode reads back: per-part points and status, the total and the extra credit."""
    parts = {r.part.name: {"score": r.score, "stop": r.stop.value if r.stop else "", "reason": one_line(r.reason)} for r in report.parts}
    return {
        "status": Outcome.GRADED.value,
        "submission": report.name,
        "parts": parts,
        "total": report.total,
        "extra_credit": report.extra_credit,
        "notes": report.notes,
        "sandbox": report.sandbox,
    }


def case_counts(result: PartResult) -> bool:
    """An all-or-nothing part's cases count only when the whole part passes."""
    return result.score > 0 or not result.part.extra_credit


def write_json(results: dict, path: str | Path) -> None:
    """results.json, always valid JSON: a number that is not one (NaN, inf) is refused here, not by Gradescope."""
    Path(path).write_text(json.dumps(results, indent=2, allow_nan=False))


def error_results(message: str, outcome: Outcome, submission: str | Path) -> dict:
    """results.json for a submission that could not be graded at all."""
    message = one_line(message, 1000)
    return {
        "score": 0.0,
        "output": message,
        "tests": [],
        "extra_data": {"status": outcome.value, "submission": Path(submission).name, "reason": message},
    }
