"""
    python -m grader homework -v              # grade a homework package folder (-vv: also what each part printed)
    python -m grader 12345678.zip             # grade a submission zip, as made by bundle.py
    python -m grader homework --json results.json --hidden staff.json
    python -m grader batch submissions/ --out results.csv --jobs 4
    python -m grader hidden staff.json          # staff: secret hidden cases (random 64-bit seeds)

Exit code 0 whenever grading ran, whatever the score; 1, with a one-line error, when it could not.
"""

import argparse
import math
import os
import sys

from .grade import InvalidSubmission, grade_submission
from .parts import HIDDEN_ENV, PART_NAMES, TIMEOUT, GraderError, load_suite, make_hidden


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if os.name == "nt":  # process groups, resource limits and fd passing are POSIX
            raise GraderError("the grader runs on Linux and macOS; on Windows, run it in WSL")
        if argv[:1] == ["hidden"]:
            options = hidden_parser().parse_args(argv[1:])
            path = make_hidden(options.path, options.checkpoints, options.inputs, options.train, options.force)
            print(f"wrote {path} (readable by you only): give it to the grader with --hidden {path} or ${HIDDEN_ENV}")
        elif argv[:1] == ["batch"]:
            from .batch import batch

            options = batch_parser().parse_args(argv[1:])
            batch(options.folder, options.out, options.jobs, options.force, options.hidden, options.timeout)
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
    from .report import render, write_error_json, write_json

    try:
        hidden = options.hidden or os.environ.get(HIDDEN_ENV)
        report = grade_submission(options.submission, suite=load_suite(hidden), hidden=hidden, jobs=options.jobs, timeout=options.timeout, parts=tuple(options.part or ()))
    except InvalidSubmission as e:  # graded, and worth 0: the grader itself ran fine
        print(f"invalid zip, 0 points: {e}")
        if options.json:  # Gradescope still needs a results.json to show the student why
            write_error_json(options.json, str(e), "invalid zip")
        return
    except GraderError as e:
        if options.json:
            write_error_json(options.json, str(e), "error")
        raise
    print(render(report, options.verbose, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ))
    if options.json:
        write_json(report, options.json)


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
    add_common(p)
    return p


def batch_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m grader batch", description="Grade every zip in a folder (staff).")
    p.add_argument("folder", help="a folder of submission zips named ID.zip")
    p.add_argument("--out", default="results.csv", help="the CSV to write; feedback goes to a folder beside it")
    p.add_argument("--force", action="store_true", help="regrade submissions that already have results")
    add_common(p)
    return p


def hidden_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m grader hidden", description="Write secret hidden cases for grading for credit (staff).")
    p.add_argument("path", help="the JSON file to write (keep it out of the starter, and out of students' reach)")
    p.add_argument("--checkpoints", type=whole_number, default=3, help="hidden checkpoints, cycling through the weight families (default 3)")
    p.add_argument("--inputs", type=whole_number, default=2, help="input batches, of 256 and 1024 inputs in turn (default 2)")
    p.add_argument("--train", type=whole_number, default=2, help="training runs (default 2)")
    p.add_argument("--force", action="store_true", help="replace the file if it exists")
    return p


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hidden", metavar="CONFIG", help="the staff's hidden cases (JSON); default: $GRADER_HIDDEN, else the public cases")
    p.add_argument("--jobs", type=whole_number, default=None, help="processes side by side (default: one per core)")
    p.add_argument("--timeout", type=seconds, default=TIMEOUT, help=f"seconds per part (default {TIMEOUT})")


if __name__ == "__main__":
    sys.exit(main())
