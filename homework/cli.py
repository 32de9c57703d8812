"""
What every command-line tool here shares: a mistake in what was asked for gets a one-line error
that says what would be valid, not a traceback.
"""

import sys

import fire


class ToolError(Exception):
    """A problem the user can fix (a missing checkpoint, say), reported in one line: exit code 1."""


class UsageError(ToolError):
    """A wrong model name, device or option: exit code 2, as for any command-line mistake."""


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
    except ToolError as e:
        sys.exit(f"error: {e}")
    except NotImplementedError as e:
        sys.exit(f"not implemented: {e}" if str(e) else "not implemented")
