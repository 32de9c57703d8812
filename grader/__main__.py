"""
    python -m grader homework -v              # grade a homework package folder (-vv: also what each part printed)
    python -m grader 12345678.zip             # grade a submission zip, as made by bundle.py
    python -m grader homework --json results.json --hidden staff.json
    python -m grader batch submissions/ --out results.csv --jobs 4
    python -m grader hidden staff.json          # staff: secret hidden cases (random 64-bit seeds)
    python -m grader gradescope autograder.zip --hidden staff.json [--check homework ...]
    python -m grader canvas results.csv --gradebook export.csv --assignment "Homework 1" --out import.csv

Exit code 0 whenever grading ran, whatever the score; 1, with a one-line error, when it could not.
"""

import argparse
import math
import os
import sys

from .grade import InvalidSubmission, grade_submission
from .parts import PART_NAMES, TIMEOUT, WALL_FACTOR, GraderError
from .suite import HIDDEN_ENV, load_suite, make_hidden


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):  # any code page: what it cannot show (a path's é, a ✓ printed by a part) is escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        if argv[:1] == ["hidden"]:
            options = hidden_parser().parse_args(argv[1:])
            path = make_hidden(options.path, options.checkpoints, options.inputs, options.train, options.force)
            print(f"wrote {path} (readable by you only): give it to the grader with --hidden {path} or ${HIDDEN_ENV}")
        elif argv[:1] == ["batch"]:
            from .batch import batch

            options = batch_parser().parse_args(argv[1:])
            batch(options.folder, options.out, options.jobs, options.force, options.hidden, options.timeout)
        elif argv[:1] == ["gradescope"]:
            from .gradescope import build, check

            options = gradescope_parser().parse_args(argv[1:])
            if options.root and not options.check:
                raise GraderError("--root is where --check lays the autograder out: give --check SUBMISSION too")
            for submission in options.check or ():
                if not os.path.exists(submission):
                    raise GraderError(f"no such file or folder: {submission}")
            print(f"wrote {build(options.out, options.hidden, options.hidden_visibility, options.force)}", flush=True)
            if options.check:
                check(options.out, options.check, options.root)
        elif argv[:1] == ["canvas"]:
            from .canvas import fill_gradebook

            options = canvas_parser().parse_args(argv[1:])
            fill_gradebook(options.results, options.gradebook, options.assignment, options.out, options.missing_zero, options.force)
        else:
            grade_one(parser().parse_args(argv))
    except GraderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def grade_one(options: argparse.Namespace) -> None:
    from .protocol import one_line
    from .report import NAME_ENV, error_results, gradescope, render, staff_notes, write_json
    from .results import Outcome

    named = os.environ.get(NAME_ENV)  # batch mode grades a copy: the student's file goes by its own name
    named = named and one_line(named, 100)  # as Canvas saved it, which a student chose: shown escaped
    try:
        hidden = options.hidden or os.environ.get(HIDDEN_ENV)
        for_credit = bool(hidden) or options.for_credit
        report = grade_submission(
            options.submission,
            named,
            suite=load_suite(hidden),
            hidden=hidden,
            jobs=options.jobs,
            timeout=options.timeout,
            parts=tuple(options.part or ()),
            for_credit=for_credit,
        )
    except InvalidSubmission as e:  # graded, and worth 0: the grader itself ran fine
        print(f"invalid zip, 0 points: {e}")
        if options.json:  # Gradescope still needs a results.json to show the student why
            write_json(error_results(str(e), Outcome.INVALID_ZIP, named or options.submission), options.json)
        return
    except GraderError as e:
        if options.json:
            write_json(error_results(str(e), Outcome.GRADER_FAILED, named or options.submission), options.json)
        raise
    print(render(report, options.verbose, colour=colour(sys.stdout)), flush=True)
    if options.verbose:  # the machine's, not the submission's: on stderr, out of the report batch mode sends the student
        print(staff_notes(report, colour=colour(sys.stderr)), file=sys.stderr)
    if options.json:
        write_json(gradescope(report), options.json)


def colour(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):
        """A mistake on the command line: one line (argparse's own is the usage and then the error), exit code 2."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def whole_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m grader", description="Grade a homework submission (a zip, or a homework package folder).")
    p.add_argument("submission", help="a submission zip, or the homework package folder")
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v: every case; -vv: also what each part printed")
    p.add_argument("--json", metavar="PATH", help="also write Gradescope's results.json here")
    p.add_argument("--part", action="append", choices=PART_NAMES, help="grade only this part (repeatable)")
    p.add_argument(
        "--for-credit", action="store_true", help="refuse to grade where the parts could reach what is secret (implied by --hidden)"
    )
    p.add_argument(
        "--jobs", type=whole_number, default=None, help="parts side by side in the self-check (default: one per core; for credit: 1)"
    )
    add_common(p)
    return p


def batch_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m grader batch", description="Grade every zip in a folder (staff).")
    p.add_argument("folder", help="a folder of submission zips named ID.zip")
    p.add_argument("--out", default="results.csv", help="the CSV to write; feedback goes to a folder beside it")
    p.add_argument("--force", action="store_true", help="regrade submissions that already have results")
    p.add_argument("--jobs", type=whole_number, default=None, help="submissions graded side by side (default 1; give it one per core)")
    add_common(p)
    return p


def hidden_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m grader hidden", description="Write secret hidden cases for grading for credit (staff).")
    p.add_argument("path", help="the JSON file to write (keep it out of the starter, and out of students' reach)")
    p.add_argument(
        "--checkpoints", type=whole_number, default=3, help="hidden checkpoints, cycling through the weight families (default 3)"
    )
    p.add_argument("--inputs", type=whole_number, default=2, help="input batches, of 256 and 1024 inputs in turn (default 2)")
    p.add_argument("--train", type=whole_number, default=2, help="training runs (default 2)")
    p.add_argument("--force", action="store_true", help="replace the file if it exists")
    return p


def gradescope_parser() -> argparse.ArgumentParser:
    from .gradescope import VISIBILITIES

    p = ArgumentParser(
        prog="python -m grader gradescope",
        description="Write Gradescope's autograder zip (staff), and optionally run it here as Gradescope would.",
    )
    p.add_argument("out", help="the zip to write, e.g. autograder.zip")
    p.add_argument(
        "--hidden", metavar="CONFIG", help="the hidden cases to grade for credit (without: the public cases, which anyone can reproduce)"
    )
    p.add_argument(
        "--hidden-visibility",
        choices=VISIBILITIES,
        default="after_published",
        help="when students see the hidden cases' tests and their total (default after_published)",
    )
    p.add_argument(
        "--check", metavar="SUBMISSION", action="append", help="then grade this zip or homework folder as Gradescope would (repeatable)"
    )
    p.add_argument(
        "--root", metavar="DIR", help="with --check: the new or empty folder standing in for /autograder (default: a temporary one)"
    )
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    return p


def canvas_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m grader canvas",
        description="Fill a Canvas gradebook export with batch mode's scores, for Canvas's Grades > Import (staff).",
    )
    p.add_argument("results", help="the CSV batch mode wrote")
    p.add_argument("--gradebook", required=True, help="the gradebook CSV exported from Canvas (Grades > Export)")
    p.add_argument("--assignment", required=True, help="the assignment's column: its Canvas id, or part of its name")
    p.add_argument("--out", required=True, help="the CSV to write, for Canvas to import")
    p.add_argument("--missing-zero", action="store_true", help="give 0 to students with no submission (default: leave their cell as it is)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists, and grades the gradebook already holds that differ")
    return p


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hidden", metavar="CONFIG", help="the staff's hidden cases (JSON); default: $GRADER_HIDDEN, else the public cases")
    p.add_argument(
        "--timeout",
        type=seconds,
        default=TIMEOUT,
        help=f"CPU seconds per part (default {TIMEOUT}; and {WALL_FACTOR} times as many of wall-clock time)",
    )


if __name__ == "__main__":
    sys.exit(main())
