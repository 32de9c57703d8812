"""
What every command-line tool here shares: a mistake in what was asked for gets a one-line error
that says what would be valid, not a traceback. Only the tools' main()s use this module: the
library code they call raises ordinary exceptions (ValueError, TypeError, CheckpointError), and a
main() turns those it expects into UsageErrors.
"""

import sys

import fire
import torch

from .checkpoint import CheckpointError
from .models import MODEL_NAMES, NotWritten, not_written, pick_device


class UsageError(Exception):
    """A wrong model name, device or option: exit code 2, as for any command-line mistake."""


class NotAllWritten(Exception):
    """Models asked for whose code is not written yet, a line each: the tool has printed what the others measured (exit code 1)."""


def show_written(results: dict, show) -> None:
    """
    show(results), {model name: its figures, or its NotWritten}, if any model was measured; then a
    NotAllWritten for the models not written yet, if any.
    """
    missing = [str(result) for result in results.values() if isinstance(result, NotWritten)]
    if len(missing) < len(results):
        show(results)
    if missing:
        raise NotAllWritten("\n".join(missing))


def check_choice(option: str, value, choices) -> str:
    """`value` as given for `option` (a name, say "optimizer"), if it is one of `choices`; else a UsageError listing them."""
    if str(value) not in choices:
        raise UsageError(f"unknown {option} {str(value)!r}; choose from: {', '.join(choices)}")
    return str(value)


def check_names(names) -> list[str]:
    """Model names from the command line, checked before any model is loaded."""
    return [check_choice("model", name, MODEL_NAMES) for name in names]


def check_device(device: str | None) -> torch.device:
    """The device asked for (None: the best one here), or a UsageError naming the ones there are."""
    try:
        return pick_device(device)
    except ValueError as e:
        raise UsageError(str(e)) from None


def check_int(option: str, value, minimum: int) -> int:
    """`value` as given for --option, if it is a whole number >= minimum; else a UsageError saying what is valid."""
    # fire passes on whatever the command line held: "abc" stays a string, 1.5 a float, True a bool.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"--{option.replace('_', '-')} must be a whole number >= {minimum}, not {value!r}")
    return value


def check_float(option: str, value, above: float) -> float:
    """`value` as given for --option, if it is a finite number > above; else a UsageError saying what is valid."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not above < value < float("inf"):
        raise UsageError(f"--{option.replace('_', '-')} must be a number > {above:g}, not {value!r}")
    return float(value)


def check_fraction(option: str, value) -> float:
    """`value` as given for --option, if it is a number strictly between 0 and 1; else a UsageError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise UsageError(f"--{option.replace('_', '-')} must be a number between 0 and 1, not {value!r}")
    return float(value)


def run(command) -> None:
    try:
        fire.Fire(command)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except CheckpointError as e:  # a missing or broken checkpoint: not a usage mistake, but one line all the same
        sys.exit(f"error: {e}")
    except NotAllWritten as e:
        sys.exit(str(e))
    except NotImplementedError as e:  # a model not written yet, in a tool that takes one: its line names the student's file
        sys.exit(str(not_written(e)))
