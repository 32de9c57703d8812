"""
What every command-line tool here shares: a mistake in what was asked for gets a one-line error
that says what would be valid, not a traceback.
"""

import sys

import fire


class UsageError(Exception):
    """A wrong model name, device or option."""


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable or does not fit the model."""


def run(command) -> None:
    try:
        fire.Fire(command)
    except (UsageError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    except NotImplementedError as e:
        sys.exit(f"not implemented: {e}" if str(e) else "not implemented")
